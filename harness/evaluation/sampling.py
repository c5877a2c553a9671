"""Sampling names from an n-gram probability table with a seeded torch.Generator."""
from __future__ import annotations

import torch

from harness.data.corpus import BOUNDARY, Vocab

LECTURE_SEED = 2147483647


def next_probs(probs, context: torch.Tensor) -> torch.Tensor:
    """(B, V) next-token probabilities for context ids (B,): rows of a dense table, or
    `model.next_token_probs(context)` for models that never build the table."""
    if isinstance(probs, torch.Tensor):
        return probs[context]
    return probs.next_token_probs(context)


def sample_batched(probs: torch.Tensor, order: int, vocab: Vocab, num: int, generator: torch.Generator,
                   max_len: int = 64) -> list[str]:
    """`num` names drawn together on the probability table's device, one multinomial per step for all.

    probs: (V^(n-1), V) float rows that sum to 1. Sampling starts at the all-boundary context
    and stops at the boundary token (or after `max_len` characters). The draws happen in a
    different order than the lecture's one-name-at-a-time loop, so the names differ from it.
    """
    V = vocab.size
    num_contexts = V ** (order - 1)
    device = generator.device
    context = torch.zeros(num, dtype=torch.int64, device=device)
    out = torch.zeros(num, max_len, dtype=torch.int64, device=device)
    alive = torch.ones(num, dtype=torch.bool, device=device)
    for step in range(max_len):
        nxt = torch.multinomial(next_probs(probs, context), num_samples=1, replacement=True, generator=generator).squeeze(1)
        nxt = torch.where(alive, nxt, torch.zeros_like(nxt))
        out[:, step] = nxt
        alive &= nxt != BOUNDARY
        if not bool(alive.any()):
            break
        if order > 1:  # finished names go back to the start context, which always has a row
            context = torch.where(alive, (context * V + nxt) % num_contexts, torch.zeros_like(context))
    return [vocab.decode(row) for row in _truncate_at_boundary(out.tolist())]


def _truncate_at_boundary(rows: list[list[int]]) -> list[list[int]]:
    return [row[: row.index(BOUNDARY)] if BOUNDARY in row else row for row in rows]


def sample_lecture(probs: torch.Tensor, order: int, vocab: Vocab, num: int, generator: torch.Generator,
                   max_len: int = 64) -> list[str]:
    """The lecture's sampler: one name at a time, one torch.multinomial per character.

    With the lecture's bigram table and seed this reproduces its five names exactly
    (cexze, momasurailezitynn, konimittain, llayn, ka).
    """
    V = vocab.size
    num_contexts = V ** (order - 1)
    device = probs.device if isinstance(probs, torch.Tensor) else None
    names = []
    for _ in range(num):
        context, ids = 0, []
        while len(ids) < max_len:
            ix = torch.multinomial(next_probs(probs, torch.tensor([context], device=device))[0], num_samples=1, replacement=True, generator=generator).item()
            if ix == BOUNDARY:
                break
            ids.append(ix)
            context = (context * V + ix) % num_contexts if order > 1 else 0
        names.append(vocab.decode(ids))
    return names
