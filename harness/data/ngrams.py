"""N-gram windows of a corpus, built on its device with vectorised tensor ops.

An order-n model sees each item as n-1 boundary tokens, its characters, and one boundary
token at the end; it predicts every token after the padding. `emma` under a bigram model is
the windows .e em mm ma a. ; under a trigram ..e .em emm mma ma. . A context of n-1 tokens is
one integer id in base V (the oldest token most significant), so a table has V^(n-1) rows.

A corpus too large for all its windows at once (an expanded corpus: 2.4 G windows would be
77 GB of int64 ids, targets and weights) is a `WindowStream`: its n-gram ids are built chunk by
chunk over whole rows, each chunk's temporaries within a byte budget, and counted or scored
chunk by chunk (`count_chunked`, `evaluate.mean_nll`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import torch

from harness.data.corpus import BOUNDARY, Corpus, ExpandedCorpus


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


# ---------------------------------------------------------------------------------------------
# chunked n-gram ids over a terminated token stream

BYTES_PER_PREDICTION = 48  # a chunk's temporaries per window: int64 id and its partial products, masks, weight
SEARCH_WINDOW = 4096  # tokens looked ahead for a row end when cutting a stream into chunks


def terminated(codes: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Rows of `codes` (back to back, `lengths` each) with the end token 0 after each: (sum(lengths+1),)."""
    ends = torch.cumsum(lengths + 1, 0) - 1  # position of each row's end token
    tokens = torch.zeros(int(ends[-1]) + 1 if len(ends) else 0, dtype=codes.dtype, device=codes.device)
    is_char = torch.ones_like(tokens, dtype=torch.bool)
    is_char[ends] = False
    tokens[is_char] = codes
    return tokens


def ngram_ids(tokens: torch.Tensor, order: int, vocab_size: int) -> torch.Tensor:
    """(P,) int64 n-gram ids context * V + target of every window of a terminated stream.

    `tokens` holds whole rows, each ended by the boundary 0, starting at a row start. The
    token k places back is the context's k-th newest token unless a row end (a 0: characters
    are never 0) lies between, in which case it is padding, the boundary 0. So no padded copy
    of the stream and no per-row offsets are needed.
    """
    V = vocab_size
    ids = tokens.to(torch.int64)
    alive = None  # no row end among the tokens 1..k-1 places back
    for k in range(1, order):  # a loop over the context's positions, not over data
        back = torch.zeros_like(tokens)
        back[k:] = tokens[:-k]
        if alive is None:
            alive = torch.ones_like(tokens, dtype=torch.bool)
        else:
            prev = torch.zeros_like(tokens)
            prev[k - 1:] = tokens[:-(k - 1)]
            alive &= prev != 0
            del prev
            back = torch.where(alive, back, torch.zeros_like(back))
        ids.add_(back.to(torch.int64), alpha=V**k)
        del back
    return ids


@dataclass(frozen=True)
class Chunk:
    """The windows of some whole rows: n-gram ids (P,) int64 and their weights (P,) float64 or None (1 each)."""

    ids: torch.Tensor
    weight: torch.Tensor | None

    def total_weight(self) -> float:
        return float(self.ids.numel()) if self.weight is None else float(self.weight.sum())


@dataclass(frozen=True)
class WindowStream:
    """The windows of a (large) corpus, produced chunk by chunk within `max_bytes` of temporaries.

    Stands where a `Windows` stands for counting (`count`) and evaluation
    (`evaluate.mean_nll`); dense counts are computed once and kept (`counts()`), so scoring a
    dense table under many smoothings is one pass over the data.
    """

    corpus: Corpus | ExpandedCorpus
    order: int
    max_bytes: int
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def vocab_size(self) -> int:
        return self.corpus.vocab.size

    @property
    def num_contexts(self) -> int:
        return self.vocab_size ** (self.order - 1)

    def total_weight(self) -> float:
        return float(self.corpus.num_predictions())

    def chunks(self, bytes_per_prediction: int = BYTES_PER_PREDICTION) -> Iterator[Chunk]:
        """Chunks of whole rows, each at most about max_bytes / bytes_per_prediction windows."""
        step = max(1, self.max_bytes // bytes_per_prediction)
        V, order = self.vocab_size, self.order
        if isinstance(self.corpus, ExpandedCorpus):
            tokens = self.corpus.tokens
            start, n = 0, tokens.numel()
            while start < n:
                stop = _row_end_at_or_after(tokens, min(n, start + step))
                yield Chunk(ngram_ids(tokens[start:stop], order, V), None)
                start = stop
            return
        corpus = self.corpus
        lengths = corpus.lengths
        first_pred = torch.zeros(len(lengths) + 1, dtype=torch.int64, device=corpus.device)
        first_pred[1:] = torch.cumsum(lengths + 1, 0)
        cuts = torch.arange(0, int(first_pred[-1]), step, device=corpus.device)
        bounds = torch.unique(torch.cat([torch.searchsorted(first_pred, cuts), torch.tensor([len(lengths)], device=corpus.device)]))
        bounds = bounds.tolist()
        if bounds[0] != 0:
            bounds.insert(0, 0)
        weights = corpus.weights
        for a, b in zip(bounds[:-1], bounds[1:]):  # a loop over chunks of items
            if a == b:
                continue
            lens = lengths[a:b]
            tokens = terminated(corpus.codes[int(corpus.offsets[a]):int(corpus.offsets[b])], lens)
            w = None if weights is None else torch.repeat_interleave(weights[a:b].to(torch.float64), lens + 1)
            yield Chunk(ngram_ids(tokens, order, V), w)

    def counts(self) -> torch.Tensor:
        """Dense (V^(n-1), V) float64 counts, computed on first use and kept."""
        if "counts" not in self._cache:
            self._cache["counts"] = count_chunked(self)
        return self._cache["counts"]


def _row_end_at_or_after(tokens: torch.Tensor, position: int) -> int:
    """The index just past the first end token (0) at or after `position - 1`: a cut between rows."""
    n = tokens.numel()
    start = max(0, position - 1)
    while start < n:
        window = tokens[start:start + SEARCH_WINDOW]
        zeros = torch.nonzero(window == BOUNDARY)
        if len(zeros):
            return start + int(zeros[0, 0]) + 1
        start += SEARCH_WINDOW
    return n


def count_chunked(stream: WindowStream) -> torch.Tensor:
    """Weighted counts (V^(n-1), V) float64 of a WindowStream, one bincount per chunk.

    Unweighted chunks (an expanded corpus) are counted in int64 and converted once at the end;
    float64 holds every count exactly (below 2^53).
    """
    V = stream.vocab_size
    bins = stream.num_contexts * V
    device = stream.corpus.device
    total = torch.zeros(bins, dtype=torch.int64, device=device)
    weighted = None
    for chunk in stream.chunks():
        if chunk.weight is None:
            total += torch.bincount(chunk.ids, minlength=bins)
        else:
            part = torch.bincount(chunk.ids, weights=chunk.weight, minlength=bins)
            weighted = part if weighted is None else weighted + part
        del chunk
    counts = total.to(torch.float64)
    if weighted is not None:
        counts += weighted
    return counts.view(stream.num_contexts, V)


def windows_for(corpus: Corpus | ExpandedCorpus, order: int, max_bytes: int) -> Windows | WindowStream:
    """All windows at once (`Windows`) where they fit `max_bytes`, else a `WindowStream`.

    An expanded corpus is always streamed: its rows carry no offsets to build `Windows` from.
    """
    if isinstance(corpus, ExpandedCorpus) or corpus.num_predictions() * WINDOWS_BYTES_PER_PREDICTION > max_bytes:
        return WindowStream(corpus, order, max_bytes)
    return windows(corpus, order)


WINDOWS_BYTES_PER_PREDICTION = 96  # Windows' four (N,) tensors and their build temporaries


def count(win: "Windows | WindowStream") -> torch.Tensor:
    """Weighted counts, (V^(n-1), V) float64: counts[c, y] = total weight of windows (c, y).

    float64 holds integer counts exactly up to 2^53, far past 348 M births x 15 characters.
    A WindowStream is counted chunk by chunk (`count_chunked`).
    """
    if isinstance(win, WindowStream):
        return win.counts()
    V = win.vocab_size
    flat = win.context * V + win.target
    counts = torch.bincount(flat, weights=win.weight, minlength=win.num_contexts * V)
    return counts.view(win.num_contexts, V)
