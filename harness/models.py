"""N-gram models as tables of log-probabilities over (context id, next token).

Count models smooth weighted counts with add-k ("fake counts", the lecture's k = 1). Every
model exposes `log_probs()`, a (V^(n-1), V) table, so evaluation and sampling are shared.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from harness.errors import HarnessError
from harness.ngrams import Windows, count

DEFAULT_TABLE_BUDGET_BYTES = 2 * 1024**3


def check_dense_table(vocab_size: int, order: int, budget_bytes: int = DEFAULT_TABLE_BUDGET_BYTES) -> None:
    """Raise a HarnessError when a dense V^n float64 table would not fit the memory budget."""
    need = vocab_size**order * 8
    if need > budget_bytes:
        raise HarnessError(
            f"a dense order-{order} table over {vocab_size} tokens needs {need / 2**30:.1f} GiB, "
            f"past the dense-table budget of {budget_bytes / 2**30:.1f} GiB; use a lower --order "
            "or a corpus with fewer distinct characters"
        )


def smoothed_log_probs(counts: torch.Tensor, k: float) -> torch.Tensor:
    """log((counts + k) / (row total + k V)) in float64.

    With k = 0 an unseen context has a zero row: its log-probabilities are -inf (every
    target has probability 0), never NaN from 0/0.
    """
    if k < 0:
        raise HarnessError(f"smoothing k must be >= 0, got {k}")
    smoothed = counts + k
    totals = smoothed.sum(1, keepdim=True)  # keepdim, or the division broadcasts along the wrong axis
    log_probs = smoothed.log() - totals.log()
    return torch.where(totals > 0, log_probs, torch.full_like(log_probs, float("-inf")))


@dataclass
class CountModel:
    """An add-k smoothed n-gram count model."""

    order: int
    vocab_size: int
    counts: torch.Tensor  # (V^(n-1), V) float64 weighted counts
    k: float

    @classmethod
    def fit(cls, train: Windows, k: float, budget_bytes: int = DEFAULT_TABLE_BUDGET_BYTES) -> "CountModel":
        check_dense_table(train.vocab_size, train.order, budget_bytes)
        return cls(train.order, train.vocab_size, count(train), float(k))

    def with_smoothing(self, k: float) -> "CountModel":
        """The same counts under another k (tuning reuses the counts)."""
        return CountModel(self.order, self.vocab_size, self.counts, float(k))

    def log_probs(self) -> torch.Tensor:
        return smoothed_log_probs(self.counts, self.k)

    def probs_float32(self) -> torch.Tensor:
        """Row-normalised float32 probabilities computed as the lecture does:
        P = (N + k).float(); P /= P.sum(1, keepdim=True)."""
        P = (self.counts + self.k).float()
        totals = P.sum(1, keepdim=True)
        # k = 0 leaves unseen contexts with no mass; sampling never reaches them, but a
        # uniform row keeps torch.multinomial defined for every row of the table.
        return torch.where(totals > 0, P / totals, torch.full_like(P, 1.0 / P.shape[1]))
