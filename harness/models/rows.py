"""A backoff model scored by one lookup per token: every context's longest listed suffix, precomputed.

Under the backoff rule P(w | h) depends on the history h only through c, its longest suffix listed
as an n-gram of order < n (a longer suffix is unlisted, so it has no backoff weight and no listed
continuation). So a compiled model holds:

  - rows (R, V) float64: log10 P(w | c) for every listed context c, computed once by the rule;
  - longest (V^(n-1),) int32: for every order-n harness context id, the row of its longest
    listed suffix. Built width by width: a width-m id takes its own row where listed, else the
    row of its width-(m-1) suffix. The all-padding context maps down to `<s>`, and the padded
    context 0^j c1..cm to `<s> c1..cm` where listed (harness.models.backoff's id convention; a
    listed gram ending in `</s>` is never a context).

Scoring is then rows[longest[context], target]: three elementwise passes instead of about ten
per order. It needs V^(n-1) ids in a table (names order 6: 14.3 M, 57 MB) and R x V in memory;
`compile_rows` returns None past those limits and callers keep the per-order backoff lookups.
The tables are built in numpy by harness.models.rows_numpy (which `score --arpa` uses without torch).
"""
from __future__ import annotations

import numpy as np
import torch

from harness.models.backoff import LN10, BackoffModel
from harness.models.protocol import NGramModel
from harness.models.rows_numpy import HostRows, compile_row_tables


class RowsModel(NGramModel):
    """A BackoffModel compiled for scoring (module docstring); scores equal its log10_score.

    cell: (V^(n-1),) int32, V times the row of each context's longest listed suffix (so a
    token's cell in the flattened rows is cell[context] + target).
    """

    def __init__(self, backoff: BackoffModel, longest: np.ndarray, rows: np.ndarray):
        self.backoff, self.order, self.vocab_size = backoff, backoff.order, backoff.vocab_size
        self.host = HostRows(self.order, self.vocab_size, longest, rows)
        device = backoff.device
        self.cell, self.rows = torch.from_numpy(self.host.cell).to(device), torch.from_numpy(self.host.rows).to(device)

    @property
    def device(self) -> torch.device:
        return self.rows.device

    def log10_score(self, context: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        cell = self.cell[context.to(self.device)].long().add_(target.to(self.device))
        return self.rows[cell]

    def numpy_log10_total(self, context: np.ndarray, target: np.ndarray) -> float:
        """The summed log10 P of numpy context and target ids (int32 or int64), on the host."""
        return self.host.numpy_log10_total(context, target)

    def stream_log10_total(self, ids: np.ndarray) -> float:
        """The summed log10 P of a stream of whole lines, on the host (HostRows.stream_log10_total)."""
        return self.host.stream_log10_total(ids)

    def score(self, context: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.log10_score(context, target).mul_(LN10)

    def next_token_probs(self, context: torch.Tensor) -> torch.Tensor:
        return self.backoff.next_token_probs(context)


def compile_rows(backoff: BackoffModel) -> RowsModel | None:
    """The one-lookup form of a backoff model, or None where its tables pass rows_numpy's limits."""
    host = [[t.cpu().numpy() for t in tensors] for tensors in (backoff.keys, backoff.log10_probs, backoff.log10_bows)]
    tables = compile_row_tables(backoff.order, backoff.vocab_size, *host)
    return None if tables is None else RowsModel(backoff, *tables)
