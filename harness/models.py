"""N-gram models as tables of log-probabilities over (context id, next token).

Count models smooth weighted counts with add-k ("fake counts", the lecture's k = 1). Every
model exposes `log_probs()`, a (V^(n-1), V) table, so evaluation and sampling are shared.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

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


INPUTS = ("table", "index", "onehot", "counts")


@dataclass
class GradientModel:
    """An n-gram model whose logits are rows of a parameter table W (V^(n-1), V): the lecture's
    single linear layer, W[context] (or one_hot(context) @ W, the same thing).

    With `additive` (orders >= 3 only) the logits are a sum of one V x V table per context
    position, W_k[token at position k], instead of one row per whole context.
    """

    order: int
    vocab_size: int
    tables: list[torch.Tensor]  # one (V^(n-1), V) table, or n-1 (V, V) tables when additive
    additive: bool = False

    @classmethod
    def init(cls, order: int, vocab_size: int, seed: int, device, additive: bool = False,
             dtype: torch.dtype = torch.float32, budget_bytes: int = DEFAULT_TABLE_BUDGET_BYTES) -> "GradientModel":
        """Tables from torch.randn with a seeded CPU generator (the same numbers on every device)."""
        g = torch.Generator().manual_seed(seed)
        if additive and order >= 3:
            tables = [torch.randn((vocab_size, vocab_size), generator=g, dtype=dtype) for _ in range(order - 1)]
        else:
            check_dense_table(vocab_size, order, budget_bytes)
            tables = [torch.randn((vocab_size ** (order - 1), vocab_size), generator=g, dtype=dtype)]
            additive = False
        return cls(order, vocab_size, [t.to(device).requires_grad_() for t in tables], additive)

    def parameters(self) -> list[torch.Tensor]:
        return self.tables

    def logits(self, context: torch.Tensor, onehot: bool = False) -> torch.Tensor:
        """(N, V) logits for context ids (N,)."""
        if not self.additive:
            (W,) = self.tables
            if onehot:  # the lecture's path; E04 says it equals indexing
                return F.one_hot(context, W.shape[0]).to(W.dtype) @ W
            return W[context]
        V = self.vocab_size
        logits = 0
        for k, W in enumerate(self.tables):
            token = (context // V ** (self.order - 2 - k)) % V
            logits = logits + (F.one_hot(token, V).to(W.dtype) @ W if onehot else W[token])
        return logits

    def regulariser(self) -> torch.Tensor:
        """sum over tables of (W**2).mean(): the lecture's smoothing of the gradient model."""
        return sum((W.float() ** 2).mean() for W in self.tables)

    def log_probs(self) -> torch.Tensor:
        """(V^(n-1), V) float64 log-softmax over every context."""
        with torch.no_grad():
            if not self.additive:
                return torch.log_softmax(self.tables[0].double(), 1)
            contexts = torch.arange(self.vocab_size ** (self.order - 1), device=self.tables[0].device)
            return torch.log_softmax(self.logits(contexts).double(), 1)

    def probs_float32(self) -> torch.Tensor:
        """Row probabilities in float32, as the lecture computes them: counts = exp(logits); counts / sum."""
        with torch.no_grad():
            if self.additive:
                return self.log_probs().exp().float()
            counts = self.tables[0].float().exp()
            probs = counts / counts.sum(1, keepdim=True)
            if not torch.isfinite(probs).all():  # exp overflowed: fall back to the max-subtracted form
                probs = torch.softmax(self.tables[0].float(), 1)
            return probs
