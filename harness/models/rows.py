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
"""
from __future__ import annotations

import numpy as np
import torch

from harness.models.backoff import LN10, BackoffModel
from harness.models.protocol import NGramModel

MAX_CONTEXT_IDS = 1 << 24
MAX_ROW_BYTES = 256 * 1024**2


class RowsModel(NGramModel):
    """A BackoffModel compiled for scoring (module docstring); scores equal its log10_score.

    cell: (V^(n-1),) int32, V times the row of each context's longest listed suffix (so a
    token's cell in the flattened rows is cell[context] + target).
    """

    def __init__(self, backoff: BackoffModel, longest: torch.Tensor, rows: torch.Tensor):
        self.backoff, self.order, self.vocab_size = backoff, backoff.order, backoff.vocab_size
        self.cell, self.rows = longest * self.vocab_size, rows.flatten()
        if self.rows.device.type == "cpu":
            self._cell_np, self._rows_np = self.cell.numpy(), self.rows.numpy()

    @property
    def device(self) -> torch.device:
        return self.rows.device

    def log10_score(self, context: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        cell = self.cell[context.to(self.device)].long().add_(target.to(self.device))
        return self.rows[cell]

    def numpy_log10_total(self, context: np.ndarray, target: np.ndarray) -> float:
        """The summed log10 P of numpy context and target ids (int32 or int64), on the host."""
        cell = self._cell_np[context]
        cell += target
        return float(self._rows_np[cell].sum())

    def score(self, context: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.log10_score(context, target).mul_(LN10)

    def next_token_probs(self, context: torch.Tensor) -> torch.Tensor:
        return self.backoff.next_token_probs(context)


def compile_rows(backoff: BackoffModel) -> RowsModel | None:
    """The one-lookup form of a backoff model, or None where its tables pass the module's limits.

    Rows by the backoff recursion, width by width: log10 P(w | c) = log10 p(c w) where c w is
    listed, else bow(c) + log10 P(w | c's suffix), the suffix's row already built.
    """
    n, V = backoff.order, backoff.vocab_size
    device = backoff.device
    if n < 2 or V ** (n - 1) > MAX_CONTEXT_IDS:
        return None
    # listed contexts by width m = 1..n-1; at m >= 2 a gram ending in </s> (last digit 0) is no context
    keep = [torch.ones_like(backoff.keys[0], dtype=torch.bool)] + [x % V != 0 for x in backoff.keys[1:n - 1]]
    contexts = [x[k] for x, k in zip(backoff.keys, keep)]
    if sum(c.numel() for c in contexts) * V * 8 > MAX_ROW_BYTES:
        return None
    rows, longest, first = [], None, 0
    for m, (c, k) in enumerate(zip(contexts, keep), start=1):
        bow = backoff.log10_bows[m - 1][k]
        if longest is None:
            row = backoff.log10_probs[0].expand(c.numel(), V) + bow[:, None]
            longest = torch.empty(V, dtype=torch.int32, device=device)
        else:
            below = torch.cat(rows)
            row = below[longest[c % V ** (m - 1)].long()] + bow[:, None]
            longest = longest[torch.arange(V**m, device=device) % V ** (m - 1)]  # unlisted ids: their suffix's row
        ids = torch.arange(first, first + c.numel(), dtype=torch.int32, device=device)
        longest[c] = ids
        grams, probs = backoff.keys[m], backoff.log10_probs[m]
        prefix = grams // V
        listed = prefix % V != 0 if m >= 2 else torch.ones_like(prefix, dtype=torch.bool)
        row[(longest[prefix[listed]].long() - first), grams[listed] % V] = probs[listed]
        rows.append(row)
        first += c.numel()
    return RowsModel(backoff, longest, torch.cat(rows))
