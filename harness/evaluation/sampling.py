"""Sampling names from a model with a seeded torch.Generator, through the model protocol.

A sampler asks for next-token probabilities after the prefix drawn so far
(`prefix_next_probs`); a model with a dense `probs_table()` is read row by row instead, the
same numbers without recomputing them at every step.
"""
from __future__ import annotations

import torch

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


def sample_batched(model, vocab: Vocab, num: int, generator: torch.Generator, max_len: int = 64) -> list[str]:
    """`num` names drawn together on the generator's device, one multinomial per step for all.

    Sampling starts at the empty prefix and stops at the boundary token (or after `max_len`
    characters). A finished name's row goes back to the empty prefix (its draws are discarded).
    The draws happen in a different order than the lecture's one-name-at-a-time loop, so the
    names differ from it.
    """
    device = generator.device
    next_probs = next_probs_of(model, device)
    out = torch.zeros(num, max_len, dtype=torch.int64, device=device)
    alive = torch.ones(num, dtype=torch.bool, device=device)
    for step in range(max_len):
        prefix = out[:, :step] * alive[:, None]  # a finished name restarts from all-boundary, which always has a row
        nxt = torch.multinomial(next_probs(prefix), num_samples=1, replacement=True, generator=generator).squeeze(1)
        nxt = torch.where(alive, nxt, torch.zeros_like(nxt))
        out[:, step] = nxt
        alive &= nxt != BOUNDARY
        if not bool(alive.any()):
            break
    return [vocab.decode(row) for row in _truncate_at_boundary(out.tolist())]


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
