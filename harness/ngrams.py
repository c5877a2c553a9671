"""N-gram windows of a corpus, built on its device with vectorised tensor ops.

An order-n model sees each item as n-1 boundary tokens, its characters, and one boundary
token at the end; it predicts every token after the padding. `emma` under a bigram model is
the windows .e em mm ma a. ; under a trigram ..e .em emm mma ma. . A context of n-1 tokens is
one integer id in base V (the oldest token most significant), so a table has V^(n-1) rows.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from harness.corpus import BOUNDARY, Corpus


@dataclass(frozen=True)
class Windows:
    """Every predicted token of a corpus: its context id, its target id and its item's weight.

    context: (N,) int64 in [0, V^(n-1));  target: (N,) int64 in [0, V);  weight: (N,) float64
    item: (N,) int64 index of the item each window belongs to (for per-item scores)
    """

    order: int
    vocab_size: int
    context: torch.Tensor
    target: torch.Tensor
    weight: torch.Tensor
    item: torch.Tensor

    @property
    def num_contexts(self) -> int:
        return self.vocab_size ** (self.order - 1)

    def total_weight(self) -> float:
        return float(self.weight.sum())


def padded_stream(corpus: Corpus, order: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each item as [0]*(order-1) + ids + [0], back to back; also each item's start in the stream."""
    device = corpus.device
    lengths = corpus.lengths
    seg_lengths = lengths + order
    seg_start = torch.zeros_like(seg_lengths)
    seg_start[1:] = torch.cumsum(seg_lengths, 0)[:-1]
    stream = torch.full((int(seg_lengths.sum()),), BOUNDARY, dtype=torch.int64, device=device)
    item_of_char = torch.repeat_interleave(torch.arange(corpus.num_unique, device=device), lengths)
    within = torch.arange(corpus.codes.numel(), device=device) - corpus.offsets[:-1][item_of_char]
    stream[seg_start[item_of_char] + (order - 1) + within] = corpus.codes.long()
    return stream, seg_start


def windows(corpus: Corpus, order: int) -> Windows:
    """All (context, target, weight) windows of an order-`order` model over `corpus`."""
    if order < 1:
        raise ValueError(f"order must be at least 1, got {order}")
    device = corpus.device
    V = corpus.vocab.size
    stream, seg_start = padded_stream(corpus, order)
    predictions = corpus.lengths + 1
    item = torch.repeat_interleave(torch.arange(corpus.num_unique, device=device), predictions)
    first = torch.zeros_like(predictions)
    first[1:] = torch.cumsum(predictions, 0)[:-1]
    step = torch.arange(int(predictions.sum()), device=device) - first[item]
    target_pos = seg_start[item] + (order - 1) + step
    target = stream[target_pos]
    context = torch.zeros_like(target)
    for k in range(order - 1):  # a loop over the context's n-1 positions, not over data
        context = context * V + stream[target_pos - (order - 1) + k]
    weight = corpus.item_weights().to(torch.float64)[item]
    return Windows(order, V, context, target, weight, item)


def count(win: Windows) -> torch.Tensor:
    """Weighted counts, (V^(n-1), V) float64: counts[c, y] = total weight of windows (c, y).

    float64 holds integer counts exactly up to 2^53, far past 348 M births x 15 characters.
    """
    V = win.vocab_size
    flat = win.context * V + win.target
    counts = torch.bincount(flat, weights=win.weight, minlength=win.num_contexts * V)
    return counts.view(win.num_contexts, V)
