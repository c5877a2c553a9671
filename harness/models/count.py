"""N-gram models as tables of log-probabilities over (context id, next token).

Count models smooth weighted counts with add-k ("fake counts", the lecture's k = 1). Both
implement the model protocol (harness.models.protocol.NGramModel); a dense model also gives its
(V^(n-1), V) table through `log_prob_table()` / `probs_table()`, the fast path of evaluation
and sampling. Where that table is past the memory budget (a trigram over the 4 K characters of
world names would be 680 GB), `SparseCountModel` keeps only the observed n-grams and answers `score` and
`next_token_probs` with the same add-k smoothing; `fit_add_k` picks one or the other.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from harness.core.errors import HarnessError
from harness.data.ngrams import Windows, WindowStream, count
from harness.models.protocol import NGramModel
from harness.models.tables import DEFAULT_TABLE_BUDGET_BYTES, check_dense_table, dense_table_fits


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
class CountModel(NGramModel):
    """An add-k smoothed n-gram count model over a dense (V^(n-1), V) table of counts."""

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

    def settings(self) -> dict:
        return {"smoothing": self.k}

    def log_prob_table(self) -> torch.Tensor:
        return smoothed_log_probs(self.counts, self.k)

    def score(self, context: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.log_prob_table()[context, target]

    def next_token_probs(self, context: torch.Tensor) -> torch.Tensor:
        return self.probs_table()[context]

    def probs_table(self) -> torch.Tensor:
        """Row-normalised float32 probabilities computed as the lecture does:
        P = (N + k).float(); P /= P.sum(1, keepdim=True)."""
        P = (self.counts + self.k).float()
        totals = P.sum(1, keepdim=True)
        # k = 0 leaves unseen contexts with no mass; sampling never reaches them, but a
        # uniform row keeps torch.multinomial defined for every row of the table.
        return torch.where(totals > 0, P / totals, torch.full_like(P, 1.0 / P.shape[1]))


def sparse_counts(win: Windows | WindowStream) -> tuple[torch.Tensor, torch.Tensor]:
    """The observed n-grams of windows: sorted unique int64 ids context * V + target and their
    float64 weighted counts, by sort/unique on the windows' device (chunk by chunk for a stream)."""
    V, order = win.vocab_size, win.order
    if V**order >= 2**63:
        raise HarnessError(f"order {order} over {V} tokens has {V}^{order} n-grams, past int64 ids; use a lower order")
    if isinstance(win, Windows):
        chunks = [(win.context * V + win.target, win.weight)]
    else:
        chunks = ((c.ids, c.weight) for c in win.chunks())
    ids = counts = None
    for flat, weight in chunks:
        uniq, inverse = torch.unique(flat, return_inverse=True)
        part = torch.bincount(inverse, weights=None if weight is None else weight.to(torch.float64), minlength=len(uniq))
        part = part.to(torch.float64)
        if ids is not None:  # merge with what earlier chunks saw (few distinct n-grams, so this stays small)
            uniq, inverse = torch.unique(torch.cat([ids, uniq]), return_inverse=True)
            part = torch.zeros(len(uniq), dtype=torch.float64, device=uniq.device).index_add_(0, inverse, torch.cat([counts, part]))
        ids, counts = uniq, part
    return ids, counts


def _lookup(keys: torch.Tensor, values: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
    """values[i] where keys[i] == query (keys sorted, unique), else 0."""
    if len(keys) == 0:
        return torch.zeros(query.shape, dtype=values.dtype, device=query.device)
    pos = torch.searchsorted(keys, query).clamp_(max=len(keys) - 1)
    return torch.where(keys[pos] == query, values[pos], torch.zeros((), dtype=values.dtype, device=query.device))


@dataclass
class SparseCountModel(NGramModel):
    """An add-k count model over only the observed n-grams (no V^n table).

    ids: (M,) int64 sorted n-gram ids context * V + target; counts: (M,) float64 their weighted
    counts; contexts / context_totals: the observed contexts (sorted) and their row totals.
    Scores equal CountModel's: log((c + k) / (total + k V)); an unseen context is -inf under
    k = 0 (never NaN) and uniform under k > 0.
    """

    order: int
    vocab_size: int
    ids: torch.Tensor
    counts: torch.Tensor
    contexts: torch.Tensor
    context_totals: torch.Tensor
    k: float

    @classmethod
    def fit(cls, train: Windows | WindowStream, k: float) -> "SparseCountModel":
        if k < 0:
            raise HarnessError(f"smoothing k must be >= 0, got {k}")
        ids, counts = sparse_counts(train)
        contexts, inverse = torch.unique_consecutive(ids // train.vocab_size, return_inverse=True)
        totals = torch.zeros(len(contexts), dtype=torch.float64, device=ids.device).index_add_(0, inverse, counts)
        return cls(train.order, train.vocab_size, ids, counts, contexts, totals, float(k))

    def with_smoothing(self, k: float) -> "SparseCountModel":
        if k < 0:
            raise HarnessError(f"smoothing k must be >= 0, got {k}")
        return SparseCountModel(self.order, self.vocab_size, self.ids, self.counts, self.contexts, self.context_totals, float(k))

    def settings(self) -> dict:
        return {"smoothing": self.k}

    def score(self, context: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """(N,) float64 log-probabilities of target given context."""
        context = context.to(self.ids.device)
        c = _lookup(self.ids, self.counts, context * self.vocab_size + target.to(self.ids.device))
        total = _lookup(self.contexts, self.context_totals, context)
        denominator = total + self.k * self.vocab_size
        log_probs = (c + self.k).log() - denominator.log()
        return torch.where(denominator > 0, log_probs, torch.full_like(log_probs, float("-inf")))

    def next_token_probs(self, context: torch.Tensor) -> torch.Tensor:
        """(B, V) float32 rows computed as CountModel.probs_table computes its table's rows."""
        V = self.vocab_size
        context = context.to(self.ids.device)
        lo = torch.searchsorted(self.ids, context * V)
        hi = torch.searchsorted(self.ids, context * V + V)
        per_row = hi - lo
        row = torch.repeat_interleave(torch.arange(len(context), device=context.device), per_row)
        first = torch.cumsum(per_row, 0) - per_row
        pos = lo[row] + torch.arange(len(row), device=context.device) - first[row]
        dense = torch.zeros(len(context), V, dtype=torch.float64, device=context.device)
        dense[row, self.ids[pos] % V] = self.counts[pos]
        P = (dense + self.k).float()
        totals = P.sum(1, keepdim=True)
        return torch.where(totals > 0, P / totals, torch.full_like(P, 1.0 / V))


def fit_add_k(train: Windows | WindowStream, k: float, budget_bytes: int = DEFAULT_TABLE_BUDGET_BYTES):
    """A dense CountModel where its V^n table fits `budget_bytes`, else a SparseCountModel."""
    if dense_table_fits(train.vocab_size, train.order, budget_bytes):
        return CountModel.fit(train, k, budget_bytes)
    return SparseCountModel.fit(train, k)
