"""The one-lookup form of a backoff model (harness.models.rows's docstring) built and scored in numpy.

harness.models.rows.compile_rows builds its torch RowsModel from these arrays, and
`score --arpa FILE --file BIG` (harness.cli_fast) scores with them straight from an ARPA file's
tables without importing torch; one build, so both give the same numbers.
"""
from __future__ import annotations

import numpy as np

MAX_CONTEXT_IDS = 1 << 24
MAX_ROW_BYTES = 256 * 1024**2


def compile_row_tables(order: int, V: int, keys, log10_probs, log10_bows) -> tuple[np.ndarray, np.ndarray] | None:
    """(longest, rows) of a backoff model's tables (harness.models.backoff.BackoffModel's, as numpy arrays),
    or None where they pass MAX_CONTEXT_IDS / MAX_ROW_BYTES.

    longest: (V^(n-1),) int32, for every order-n harness context id the row of its longest listed
    suffix; rows: (R, V) float64, log10 P(w | c) for every context c (_contexts). Rows by the backoff
    recursion, width by width: log10 P(w | c) = log10 p(c w) where c w is listed, else
    bow(c) + log10 P(w | c's suffix), the suffix's row already built.
    """
    n = order
    if n < 2 or V ** (n - 1) > MAX_CONTEXT_IDS:
        return None
    contexts, context_bows = _contexts(n, V, keys, log10_bows)
    if sum(len(c) for c in contexts) * V * 8 > MAX_ROW_BYTES:
        return None
    rows, longest, first = [], None, 0
    for m, (c, bow) in enumerate(zip(contexts, context_bows), start=1):
        if longest is None:
            row = log10_probs[0][None, :] + bow[:, None]
            longest = np.empty(V, dtype=np.int32)
        else:
            below = np.concatenate(rows)
            row = below[longest[c % V ** (m - 1)]] + bow[:, None]
            longest = np.tile(longest, V)  # id x of width m: its width-(m-1) suffix x % V^(m-1)'s row, until listed
        longest[c] = np.arange(first, first + len(c), dtype=np.int32)
        grams, probs = keys[m], log10_probs[m]
        prefix = grams // V
        listed = prefix % V != 0 if m >= 2 else np.ones(len(prefix), dtype=bool)
        row[longest[prefix[listed]] - first, grams[listed] % V] = probs[listed]
        rows.append(row)
        first += len(c)
    return longest, np.concatenate(rows)


def _contexts(n: int, V: int, keys, log10_bows) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The contexts of width m = 1..n-1 and their log10 backoff weights: the listed m-grams and the
    prefixes of listed (m+1)-grams, the latter with backoff 0 where not listed (a hand-written file
    need not list them; lmplz's do). At m >= 2 an m-gram ending in </s> (last digit 0) is no context."""
    contexts, bows = [], []
    for m in range(1, n):
        x, bow, prefixes = keys[m - 1], log10_bows[m - 1], keys[m] // V
        if m >= 2:
            keep = x % V != 0
            x, bow, prefixes = x[keep], bow[keep], prefixes[prefixes % V != 0]
        unlisted = np.setdiff1d(prefixes, x)
        contexts.append(np.concatenate([x, unlisted]))
        bows.append(np.concatenate([bow, np.zeros(len(unlisted))]))
    return contexts, bows


class HostRows:
    """The compiled tables scored on the host: a token's log10 P is rows[longest[context], target].

    cell: (V^(n-1),) int32, V times each context's row, so a token's cell in the flattened rows
    is cell[context] + target.
    """

    def __init__(self, order: int, vocab_size: int, longest: np.ndarray, rows: np.ndarray):
        self.order, self.vocab_size = order, vocab_size
        self.cell, self.rows = longest * vocab_size, rows.reshape(-1)

    def numpy_log10_total(self, context: np.ndarray, target: np.ndarray) -> float:
        """The summed log10 P of numpy context and target ids (int32 or int64)."""
        cell = self.cell[context]
        cell += target
        return float(self.rows[cell].sum())

    def stream_log10_total(self, ids: np.ndarray) -> float:
        """The summed log10 P of every token of a stream of whole lines (int32 ids, each line ended by 0).

        The contexts are the last n-1 ids read straight across line ends, never padded per line:
        a listed context holds the boundary only as its first token (`<s>`), so the longest listed
        suffix of `a b 0 c` (the line before's end inside) is that of the padded `0 0 0 c`: both
        end in the listed `0 c` or shorter, and each longer suffix, holding 0 after its first token
        or twice, is never listed. Ids before the chunk (which starts a line) count as 0. Two
        passes per context position instead of four, and no masks.
        """
        n, V = self.order, self.vocab_size
        context = np.zeros(len(ids), dtype=np.int32 if V ** (n - 1) < 2**31 else np.int64)
        term = np.empty_like(context)
        scale = 1
        for j in range(1, n):  # a loop over context positions, not over data
            np.multiply(ids[:-j], scale, out=term[j:])
            context[j:] += term[j:]
            scale *= V
        return self.numpy_log10_total(context, ids)
