"""Exact evaluation and sampling of any LanguageModel through the protocol's two item-level methods.

The NLL is over every predicted token of the whole split (makemore.py scores a few random
batches), weighted by item weights, in nats per predicted character, the end token included:
the count models' convention, so neural and count rows of one leaderboard compare.
"""
from __future__ import annotations

import torch

from harness.data.corpus import BOUNDARY, Corpus, Vocab
from harness.models.protocol import LanguageModel


def item_nll(model: LanguageModel, corpus: Corpus) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-item summed NLL (U,) float64 nats and predicted tokens (U,) int64 (length + 1), one copy each."""
    log_probs = model.token_log_probs(corpus)
    predictions = (corpus.lengths + 1).to(log_probs.device)
    item = torch.repeat_interleave(torch.arange(corpus.num_unique, device=log_probs.device), predictions)
    nll = torch.zeros(corpus.num_unique, dtype=torch.float64, device=log_probs.device).index_add_(0, item, -log_probs)
    return nll, predictions


def corpus_nll(model: LanguageModel, corpus: Corpus) -> float:
    """Weighted mean NLL over every predicted token of `corpus` (a weight w counts as w copies)."""
    nll, predictions = item_nll(model, corpus)
    weights = corpus.item_weights().to(nll.device, torch.float64)
    return float((nll * weights).sum() / (predictions.double() * weights).sum())


def sample_names(model: LanguageModel, vocab: Vocab, num: int, generator: torch.Generator,
                 max_len: int = 64) -> list[str]:
    """`num` names drawn together, one multinomial per position for the whole batch.

    Works for any LanguageModel: each step asks `prefix_next_probs` for the batch's prefixes so
    far (finished names keep asking, so the draws and their order depend on `num` and the seed
    only). A name ends at the boundary token or after `max_len` characters.
    """
    device = generator.device
    prefix = torch.zeros((num, 0), dtype=torch.int64, device=device)
    alive = torch.ones(num, dtype=torch.bool, device=device)
    for _ in range(max_len):
        probs = model.prefix_next_probs(prefix).to(device)
        nxt = torch.multinomial(probs, num_samples=1, replacement=True, generator=generator).squeeze(1)
        nxt = torch.where(alive, nxt, BOUNDARY)
        prefix = torch.cat([prefix, nxt.unsqueeze(1)], dim=1)
        alive &= nxt != BOUNDARY
        if not bool(alive.any()):
            break
    rows = prefix.tolist()
    return [vocab.decode(row[: row.index(BOUNDARY)] if BOUNDARY in row else row) for row in rows]
