"""Train/dev/test splits by unique item, seeded and deterministic."""
from __future__ import annotations

import torch

from harness.corpus import Corpus
from harness.errors import HarnessError

SPLIT_NAMES = ("train", "dev", "test")
RATIOS = (0.8, 0.1, 0.1)


def split_corpus(corpus: Corpus, seed: int, ratios=RATIOS) -> dict[str, Corpus]:
    """Shuffle the unique items with a seeded generator and cut 80/10/10.

    A name is one unique item carrying all its copies (weights), so it never sits in two
    splits. The permutation comes from torch.randperm on the CPU so it is the same on every
    device.
    """
    n = corpus.num_unique
    if n < 3:
        raise HarnessError(f"corpus {corpus.name!r} has {n} unique items; a train/dev/test split needs at least 3 (or use --split none)")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_train = max(1, int(round(ratios[0] * n)))
    n_dev = max(1, int(round(ratios[1] * n)))
    n_train = min(n_train, n - 2)
    parts = {
        "train": perm[:n_train],
        "dev": perm[n_train:n_train + n_dev],
        "test": perm[n_train + n_dev:],
    }
    return {name: corpus.subset(idx.sort().values) for name, idx in parts.items()}
