"""Sampling names from a model with a seeded torch.Generator, through the model protocol.

A sampler asks for next-token probabilities after the prefix drawn so far
(`prefix_next_probs`); a model with a dense `probs_table()` is read row by row instead, the
same numbers without recomputing them at every step.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from harness.core.errors import HarnessError
from harness.data.corpus import BOUNDARY, Vocab
from harness.models.protocol import context_ids


def next_probs_of(model, device):
    """prefix (B, t) int64 -> (B, V) float32 next-token probabilities: rows of the model's dense
    probs_table() where it has one (computed once), else `model.prefix_next_probs`."""
    table = model.probs_table()
    if table is None:
        return model.prefix_next_probs
    table = table.to(device)
    return lambda prefix: table[context_ids(prefix, model.order, model.vocab_size)]


@dataclass(frozen=True)
class SamplingControls:
    """How names are drawn: the model's own distribution by default (then draws are the plain sampler's).

    temperature: probabilities raised to 1/T and renormalised (T < 1 sharper, T > 1 flatter);
    top_k: keep the k most likely next tokens (0 = all); prefix: every name starts with it;
    exclude_train: names of the training split are dropped and drawing goes on until `num` new
    ones exist (at most `max_rounds` batches).
    """

    temperature: float = 1.0
    top_k: int = 0
    prefix: str = ""
    exclude_train: bool = False
    max_rounds: int = 50

    def __post_init__(self):
        if not (isinstance(self.temperature, (int, float)) and math.isfinite(self.temperature) and self.temperature > 0):
            raise HarnessError(f"--temperature must be a number > 0, got {self.temperature!r}")
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 0:
            raise HarnessError(f"--top-k must be a whole number >= 0 (0 = every token), got {self.top_k!r}")

    @property
    def plain(self) -> bool:
        return self.temperature == 1.0 and self.top_k == 0


def shaped(probs: torch.Tensor, controls: SamplingControls) -> torch.Tensor:
    """Next-token probabilities after temperature and top-k (rows renormalised)."""
    if controls.plain:
        return probs
    logits = probs.double().log() / controls.temperature
    if controls.top_k and controls.top_k < probs.shape[1]:
        kth = logits.topk(controls.top_k, dim=1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return torch.softmax(logits, dim=1).to(probs.dtype)


def sample_batched(model, vocab: Vocab, num: int, generator: torch.Generator, max_len: int = 64,
                   controls: SamplingControls = SamplingControls(), prefix_ids: list[int] | None = None) -> list[str]:
    """`num` names drawn together on the generator's device, one multinomial per step for all.

    Sampling starts at the empty prefix (or at `prefix_ids`, which every name then begins with)
    and stops at the boundary token (or after `max_len` characters). A finished name's row goes
    back to the empty prefix (its draws are discarded). The draws happen in a different order
    than the lecture's one-name-at-a-time loop, so the names differ from it. With the default
    controls the draws are exactly the model's distribution.
    """
    device = generator.device
    next_probs = next_probs_of(model, device)
    start = list(prefix_ids or [])
    out = torch.zeros(num, max_len + len(start), dtype=torch.int64, device=device)
    if start:
        out[:, :len(start)] = torch.tensor(start, dtype=torch.int64, device=device)
    alive = torch.ones(num, dtype=torch.bool, device=device)
    for step in range(len(start), out.shape[1]):
        prefix = out[:, :step] * alive[:, None]  # a finished name restarts from all-boundary, which always has a row
        probs = shaped(next_probs(prefix), controls)
        nxt = torch.multinomial(probs, num_samples=1, replacement=True, generator=generator).squeeze(1)
        nxt = torch.where(alive, nxt, torch.zeros_like(nxt))
        out[:, step] = nxt
        alive &= nxt != BOUNDARY
        if not bool(alive.any()):
            break
    return [vocab.decode(row) for row in _truncate_at_boundary(out.tolist())]


def sample_names(model, vocab: Vocab, num: int, generator: torch.Generator, controls: SamplingControls = SamplingControls(),
                 train_items=(), max_len: int = 64) -> list[str]:
    """`num` names under `controls`: a prefix every name starts with, names of `train_items` left out
    when `controls.exclude_train` (drawing batch after batch until `num` new ones exist).

    With default controls this is `sample_batched`, draw for draw.
    """
    prefix_ids = vocab.encode(controls.prefix, "give a --prefix made of those characters") if controls.prefix else None  # a character outside the vocabulary: one line
    if not controls.exclude_train:
        return sample_batched(model, vocab, num, generator, max_len, controls, prefix_ids)
    seen_in_train = set(train_items)
    kept: list[str] = []
    for _ in range(controls.max_rounds):
        if len(kept) >= num:
            break
        batch = sample_batched(model, vocab, max(num, 16), generator, max_len, controls, prefix_ids)
        kept += [name for name in batch if name not in seen_in_train]
    if len(kept) < num:
        raise HarnessError(f"only {len(kept)} of {num} sampled names were not in the training split after "
                           f"{controls.max_rounds} batches; ask for fewer (--num), a shorter --prefix or a higher --temperature")
    return kept[:num]


def _truncate_at_boundary(rows: list[list[int]]) -> list[list[int]]:
    return [row[: row.index(BOUNDARY)] if BOUNDARY in row else row for row in rows]


def sample_lecture(model, vocab: Vocab, num: int, generator: torch.Generator, max_len: int = 64) -> list[str]:
    """The lecture's sampler: one name at a time, one torch.multinomial per character.

    With the lecture's bigram table and seed this reproduces its five names exactly
    (cexze, momasurailezitynn, konimittain, llayn, ka).
    """
    device = generator.device
    next_probs = next_probs_of(model, device)
    names = []
    for _ in range(num):
        ids = []
        while len(ids) < max_len:
            prefix = torch.tensor([ids], dtype=torch.int64, device=device)
            ix = torch.multinomial(next_probs(prefix)[0], num_samples=1, replacement=True, generator=generator).item()
            if ix == BOUNDARY:
                break
            ids.append(ix)
        names.append(vocab.decode(ids))
    return names
