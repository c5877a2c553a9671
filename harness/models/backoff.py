"""Backoff n-gram models: the form an ARPA file holds, and the fast way to score a smoothed model.

A backoff model lists, per order k, some k-grams with a log10 probability and (below the top
order) a log10 backoff weight, and scores a target w after a context h as

    log P(w | h) = log p(h_s w) + sum of bow(h_j) over the context suffixes h_j longer than h_s

where h_s w is the longest listed n-gram ending the context (KenLM's and SRILM's rule). Every
target is listed as a unigram, so some order always hits.

Ids and the start of an item. The harness pads an order-n context with n-1 boundary tokens
(id 0); an ARPA sentence starts with one `<s>`. Boundary tokens occur in a context only as that
padding, and the target 0 only as the end token, so one base-V id space holds both: in a k-gram
id (oldest token most significant) a leading 0 is `<s>`, a final 0 is `</s>`, and the harness
context 0^j c1..cm (any j >= 1) is KenLM's history `<s> c1..cm`. A k-gram with two leading zeros
(`<s> <s> ..`) is never listed, so the padded suffixes of a harness context miss and add no
backoff, and the lookup lands where KenLM's does. At order 1 the id 0 carries `</s>`'s
probability and `<s>`'s backoff (neither token has the other's).

`to_backoff(model)` compiles a fitted harness model into this form exactly (scores equal the
model's to float64 rounding):

  - kn, wb and add-k are recursions P_k(w|h) = alpha_k(h,w) + gamma_k(h) P_{k-1}(w|h') down to
    1/V (add-k: one level, alpha = c/(c(h)+kV), gamma = kV/(c(h)+kV)). A listed k-gram without
    padding gets P_k, the recursion stopped at order k, and its backoff is gamma_{k+1}. A k-gram
    `<s> c w` (the harness n-grams 0^j c w of every order, one leading zero kept) gets the full
    order-n P(w | 0^(n-1-m) c), and `<s> c` backs off by the product of the gammas of all the
    padded orders above it, so a model that tells `..e` from `.e` (wb, add-k) keeps telling.
  - interp mixes orders (P = l0/V + sum_k l_k P_k) instead of recursing, and an add-k order
    with an unseen context still gives 1/V, which no backoff weight can express. So every
    observed context lists all V targets with R_k(w|h) = sum_{i<=k} l_i P_i + (rest of the
    weight)/V and backoff 1: the longest observed context suffix is then the longest hit.
  - add-k with k = 0 gives probability 0, which ARPA cannot hold: refused.

The listed sets are closed under prefix and suffix (each added n-gram gets the probability the
backoff rule would give it, and backoff 1), as KenLM's right-to-left lookup needs.

Lookups, per order k >= 2: the context h (k-1 tokens) is found once, in a dense index where
its V^(k-1) ids fit DENSE_MAX_IDS, else in an open-addressing hash (multiplicative hashing,
linear probing, load <= 1/4; only the queries that collided probe again); its row holds the V
log10 probabilities of (h, w) (NaN where unlisted) and its backoff weight. Where contexts x V
would pass ROWS_MAX_BYTES (a large vocabulary), the n-gram h w and the context h are found
apart instead. Scoring is a loop over orders, never over tokens, on the model's device.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from harness.core.constants import LN10
from harness.core.errors import HarnessError
from harness.data.stream import DEFAULT_STREAM_BYTES, FileScore, line_chunks, score_stream
from harness.models.count import CountModel, SparseCountModel
from harness.models.protocol import NGramModel
from harness.models.smoothed import AddKInterpolationModel, Level, SmoothedModel

DENSE_MAX_IDS = 1 << 20  # ids of at most 4 names characters (27^4 = 531 K): a 4 MB int64 index
ROWS_MAX_BYTES = 256 * 1024**2
HASH_LOAD = 0.25
# Fibonacci hashing's odd constant (2^64 / golden ratio) as a signed int64: ids of one context are
# consecutive (h*V + w), and id % P alone would put them in one long probing cluster
HASH_MULTIPLIER = 0x9E3779B97F4A7C15 - (1 << 64)


# ---------------------------------------------------------------------------------------------
# per-order lookup


class _Index:
    """Position of each id in a sorted unique id tensor of `width` tokens, or `size` where absent.

    A dense table where V^width ids fit DENSE_MAX_IDS; else open addressing (module docstring).
    """

    def __init__(self, width: int, vocab_size: int, keys: torch.Tensor):
        device = keys.device
        self.size = keys.numel()
        self.dense = vocab_size**width <= DENSE_MAX_IDS
        positions = torch.arange(self.size, device=device)
        if self.dense:
            self.table = torch.full((vocab_size**width,), self.size, dtype=torch.int64, device=device)
            self.table[keys] = positions
            return
        self.bits = max(3, math.ceil(math.log2(max(1, self.size) / HASH_LOAD)))
        slots = 1 << self.bits
        self.keys = torch.full((slots,), -1, dtype=torch.int64, device=device)
        self.table = torch.full((slots,), self.size, dtype=torch.int64, device=device)
        pending, slot = positions, self._home(keys)
        while pending.numel():  # vectorised insertion: each free slot takes one pending key per round
            want = slot[pending]
            free = self.keys[want] == -1
            first = torch.full((slots,), -1, dtype=torch.int64, device=device)
            first.scatter_reduce_(0, want[free], pending[free], reduce="amax", include_self=True)
            winners = first[first >= 0]
            self.keys[slot[winners]] = keys[winners]
            self.table[slot[winners]] = winners
            placed = torch.zeros(self.size, dtype=torch.bool, device=device)
            placed[winners] = True
            pending = pending[~placed[pending]]
            slot[pending] = (slot[pending] + 1) & (slots - 1)

    def _home(self, ids: torch.Tensor) -> torch.Tensor:
        # the top bits of the wrapped int64 product (the mask undoes the arithmetic shift's sign)
        return ((ids * HASH_MULTIPLIER) >> (64 - self.bits)) & ((1 << self.bits) - 1)

    def __call__(self, ids: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        if self.dense:
            return torch.index_select(self.table, 0, ids, out=out) if out is not None else self.table[ids]
        mask = (1 << self.bits) - 1
        slot = self._home(ids)
        probe = self.keys[slot]
        todo = ((probe != ids) & (probe != -1)).nonzero().squeeze(1)
        while todo.numel():  # only the queries whose slot held another id probe on
            s = (slot[todo] + 1) & mask
            slot[todo] = s
            probe = self.keys[s]
            todo = todo[(probe != ids[todo]) & (probe != -1)]
        found = self.keys[slot] == ids
        result = torch.where(found, self.table[slot], self.size)
        return result if out is None else out.copy_(result)


class _Order:
    """How order k >= 2 is looked up: log10 p(h w) and the backoff weight of h (listed at order k-1).

    rows (where contexts x V float64 fit ROWS_MAX_BYTES): one index lookup of the context h gives
    its row of V log-probs (NaN where unlisted) and its backoff weight: a single probe per order.
    flat: the k-gram id h*V + w and the context h are looked up apart (large vocabularies).
    """

    def __init__(self, k: int, V: int, keys, log10_prob, below_keys, below_bow):
        device = keys.device
        nan = torch.tensor([float("nan")], dtype=torch.float64, device=device)
        zero = torch.zeros(1, dtype=torch.float64, device=device)
        # contexts: those of listed k-grams, and every (k-1)-gram with a backoff weight
        contexts = torch.unique(torch.cat([keys // V, below_keys[below_bow != 0]]))
        self.rows = (contexts.numel() + 1) * V * 8 <= ROWS_MAX_BYTES
        if self.rows:
            self.context_index = _Index(k - 1, V, contexts)
            table = torch.full((contexts.numel() + 1, V), float("nan"), dtype=torch.float64, device=device)
            table[self.context_index(keys // V), keys % V] = log10_prob
            self.prob = table.flatten()
            at = torch.searchsorted(below_keys, contexts).clamp_(max=max(0, below_keys.numel() - 1))
            listed = below_keys[at] == contexts
            self.bow = torch.cat([torch.where(listed, below_bow[at], 0.0), zero])
        else:
            self.index, self.below_index = _Index(k, V, keys), _Index(k - 1, V, below_keys)
            self.prob, self.bow = torch.cat([log10_prob, nan]), torch.cat([below_bow, zero])

    def lookup(self, h: torch.Tensor, target: torch.Tensor, V: int, row, lp, bow) -> None:
        """Into lp: log10 p(h w), NaN where unlisted; into bow: log10 bow(h), 0 where h has none
        (h: contexts of k-1 tokens; row: an int64 scratch buffer of the same shape)."""
        if self.rows:
            self.context_index(h, out=row)
            torch.index_select(self.bow, 0, row, out=bow)
            row.mul_(V).add_(target)
            torch.index_select(self.prob, 0, row, out=lp)
            return
        torch.index_select(self.bow, 0, self.below_index(h), out=bow)
        torch.index_select(self.prob, 0, self.index(h * V + target), out=lp)


# ---------------------------------------------------------------------------------------------
# the model


@dataclass
class BackoffModel(NGramModel):
    """A backoff model over harness ids (module docstring), order n, V tokens (0 = boundary).

    keys[k-1]: (M_k,) int64 sorted unique k-gram ids; log10_probs[k-1], log10_bows[k-1]: (M_k,)
    float64 (bows 0 at the top order). Every id 0..V-1 must be listed at order 1. Contexts are
    those the convention produces (boundary tokens only as leading padding); a boundary after a
    character inside a context, which no item has, is outside it.
    """

    order: int
    vocab_size: int
    keys: list[torch.Tensor]
    log10_probs: list[torch.Tensor]
    log10_bows: list[torch.Tensor]
    _unigram: torch.Tensor = field(init=False, repr=False)
    _orders: list[_Order] = field(init=False, repr=False)

    def __post_init__(self):
        V = self.vocab_size
        unigrams = self.keys[0]
        if unigrams.numel() != V or not torch.equal(unigrams, torch.arange(V, device=unigrams.device)):
            raise HarnessError(f"a backoff model over {V} tokens needs every one of them as a unigram; "
                               "give a model whose vocabulary matches its unigrams")
        self._unigram = self.log10_probs[0]
        self._orders = [_Order(k, V, self.keys[k - 1], self.log10_probs[k - 1], self.keys[k - 2], self.log10_bows[k - 2])
                        for k in range(2, self.order + 1)]

    @property
    def device(self) -> torch.device:
        return self.keys[0].device

    def to(self, device) -> "BackoffModel":
        if torch.device(device) == self.device:  # as torch's .to: the lookup tables are not built again
            return self
        return BackoffModel(self.order, self.vocab_size, [t.to(device) for t in self.keys],
                            [t.to(device) for t in self.log10_probs], [t.to(device) for t in self.log10_bows])

    def num_ngrams(self) -> list[int]:
        return [int(k.numel()) for k in self.keys]

    def log10_score(self, context: torch.Tensor, target: torch.Tensor, top: int | None = None) -> torch.Tensor:
        """(N,) float64 log10 P(target | context), the ARPA rule, from order 1 up (to order `top`, default n).

        The loop reuses a few (N,) buffers in place: on CPU a fresh tensor of a million float64
        costs page faults that are a large part of a gather's time.
        """
        V = self.vocab_size
        context, target = context.to(self.device), target.to(self.device)
        best = self._unigram[target]
        acc = torch.zeros_like(best)
        h, row = torch.empty_like(context), torch.empty_like(context)
        lp, bow = torch.empty_like(best), torch.empty_like(best)
        miss = torch.empty(context.shape, dtype=torch.bool, device=context.device)
        for k in range(2, (top or self.order) + 1):
            torch.remainder(context, V ** (k - 1), out=h)
            self._orders[k - 2].lookup(h, target, V, row, lp, bow)
            acc += bow  # the backoff weight of the length-(k-1) context, paid unless order >= k hits
            torch.ne(lp, lp, out=miss)  # NaN: (h, w) not listed at order k
            torch.where(miss, best, lp, out=best)
            acc.mul_(miss)
        return best.add_(acc)

    def score(self, context: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """(N,) float64 natural-log probabilities of target ids given order-n context ids."""
        return self.log10_score(context, target) * LN10

    def next_token_probs(self, context: torch.Tensor) -> torch.Tensor:
        """(B, V) float32 rows over the V tokens, renormalised (an ARPA's <unk> may hold some mass)."""
        V, B = self.vocab_size, context.numel()
        context = context.to(self.device)
        rows = self.score(context.repeat_interleave(V), torch.arange(V, device=self.device).repeat(B)).view(B, V).exp()
        return (rows / rows.sum(1, keepdim=True)).float()


# ---------------------------------------------------------------------------------------------
# compiling harness models


def _num_tokens(ids: torch.Tensor, width: int, V: int) -> torch.Tensor:
    """Number of base-V digits of each id below `width` digits (leading zeros not counted)."""
    digits = torch.zeros_like(ids)
    for d in range(width):
        digits += (ids >= V**d).long()
    return digits


def _close(keys: list[torch.Tensor], V: int) -> list[torch.Tensor]:
    """Sorted unique keys per order with every prefix and suffix of a listed k-gram listed one order down.

    The suffix of k-gram x is x % V^(k-1) (for `<s> c w` that is x itself, `c w`), its prefix x // V.
    """
    n = len(keys)
    keys = list(keys)
    keys[0] = torch.cat([keys[0], torch.arange(V, device=keys[0].device)])
    for k in range(n, 1, -1):
        x = torch.unique(keys[k - 1])
        keys[k - 1] = x
        keys[k - 2] = torch.cat([keys[k - 2], x % V ** (k - 1), x // V])
    keys[0] = torch.unique(keys[0])
    return keys


def _levels_probs(levels, V: int, context: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """P(target | context) of the recursion over `levels` (lowest first) from 1/V."""
    p = torch.full(context.shape, 1.0 / V, dtype=torch.float64, device=context.device)
    for level in levels:
        gamma, alpha = level.lookup(context, target, V)
        p = alpha + gamma * p
    return p


def _levels_gamma(levels, V: int, context: torch.Tensor) -> torch.Tensor:
    gamma = torch.ones(context.shape, dtype=torch.float64, device=context.device)
    for level in levels:
        gamma = gamma * level.lookup(context, torch.zeros_like(context), V)[0]
    return gamma


def _arpa_keys(levels, n: int, V: int) -> list[torch.Tensor]:
    """The harness n-grams of every level as ARPA k-gram ids: 0^j c w (j >= 1) becomes `<s> c w`."""
    keys = [[] for _ in range(n)]
    device = levels[-1].ngram.device
    for level in levels:
        j, x = level.order, level.ngram
        if x.numel() == 0:
            continue
        lead = x < V ** (j - 1)
        keys[j - 1].append(x[~lead])
        start = x[lead]
        orders = (_num_tokens(start, j, V) + 1).clamp(min=2)  # <s>, then the tokens after the padding
        for k in range(2, j + 1):
            keys[k - 1].append(start[orders == k])
    return [torch.cat(k) if k else torch.zeros(0, dtype=torch.int64, device=device) for k in keys]


def _from_levels(n: int, V: int, levels) -> BackoffModel:
    keys = _close(_arpa_keys(levels, n, V), V)
    probs, bows = [], []
    for k, x in enumerate(keys, start=1):
        context, target = x // V, x % V
        start = x < V ** (k - 1)  # a leading `<s>` (at order 1: the id 0 as a context is <s>)
        if k == 1:
            p = _levels_probs(levels[:1], V, context, target)
        else:
            p = torch.where(start, _levels_probs(levels, V, context, target), _levels_probs(levels[:k], V, context, target))
        if k < n:
            bow = torch.where(start, _levels_gamma(levels[k:], V, x), _levels_gamma(levels[k:k + 1], V, x))
        else:
            bow = torch.ones_like(p)
        if bool((p <= 0).any()):
            raise HarnessError("the model gives probability 0 to an n-gram, which an ARPA file cannot hold; "
                               "use a smoothed model (add-k with k > 0, kn, wb, interp)")
        probs.append(p.log10())
        bows.append(bow.log10())
    return BackoffModel(n, V, keys, probs, bows)


def _from_interpolation(model) -> BackoffModel:
    """interp: every observed context lists all V targets (module docstring), backoff weights 1."""
    n, V = model.order, model.vocab_size
    device = model.weights.device
    arange = torch.arange(V, device=device)
    keys = [[] for _ in range(n)]
    for level in model.levels:
        j, h = level.order, level.context
        if j == 1:
            keys[0].append(arange)
            continue
        lead = h < V ** (j - 2)
        keys[j - 1].append((h[~lead][:, None] * V + arange).flatten())
        start = h[lead]
        orders = _num_tokens(start, j - 1, V) + 2  # `<s> c w`
        for k in range(2, j + 1):
            keys[k - 1].append((start[orders == k][:, None] * V + arange).flatten())
    keys = _close([torch.cat(k) for k in keys], V)
    weights = model.weights
    probs = []
    for k, x in enumerate(keys, start=1):
        context, target = x // V, x % V
        components = model.component_probs(context, target)
        truncated = components[:, :k + 1] @ weights[:k + 1] + float(weights[k + 1:].sum()) / V
        p = truncated if k == 1 else torch.where(x < V ** (k - 1), components @ weights, truncated)
        probs.append(p.log10())
    return BackoffModel(n, V, keys, probs, [torch.zeros_like(p) for p in probs])


def _add_k_levels(order: int, V: int, ids: torch.Tensor, counts: torch.Tensor, k: float):
    """An add-k model as one recursion level over empty lower ones: P = c/(c(h)+kV) + kV/(c(h)+kV) / V."""
    if k <= 0:
        raise HarnessError("add-k with k = 0 gives probability 0 to unseen n-grams, which a backoff "
                           "model or an ARPA file cannot hold; use k > 0")
    device = ids.device
    context, inverse = torch.unique_consecutive(ids // V, return_inverse=True)
    total = torch.zeros(context.numel(), dtype=torch.float64, device=device).index_add_(0, inverse, counts) + k * V
    empty = torch.zeros(0, dtype=torch.int64, device=device)
    nothing = torch.zeros(0, dtype=torch.float64, device=device)
    lower = [Level(j, empty, nothing, empty, nothing) for j in range(1, order)]
    return lower + [Level(order, ids, counts / total[inverse], context, k * V / total)]


def to_backoff(model) -> BackoffModel:
    """The backoff form of a fitted model: add-k (CountModel, SparseCountModel), kn, wb, interp.

    Its scores equal model.score (or the dense table) to float64 rounding; a BackoffModel is returned as is.
    """
    if isinstance(model, BackoffModel):
        return model
    if isinstance(model, AddKInterpolationModel):
        return _from_interpolation(model)
    if isinstance(model, SmoothedModel):
        return _from_levels(model.order, model.vocab_size, model.levels)
    if isinstance(model, CountModel):
        flat = model.counts.flatten()
        ids = flat.nonzero().squeeze(1)
        levels = _add_k_levels(model.order, model.vocab_size, ids, flat[ids].to(torch.float64), model.k)
        return _from_levels(model.order, model.vocab_size, levels)
    if isinstance(model, SparseCountModel):
        keep = model.counts > 0
        levels = _add_k_levels(model.order, model.vocab_size, model.ids[keep], model.counts[keep], model.k)
        return _from_levels(model.order, model.vocab_size, levels)
    raise HarnessError(f"cannot compile a {type(model).__name__} into backoff form; "
                       "give an add-k, kn, wb or interp n-gram model")


# ---------------------------------------------------------------------------------------------
# scoring a large file in chunks

def _stream_windows(tokens: torch.Tensor, order: int, V: int) -> torch.Tensor:
    """(N,) int64 context ids of every token of a stream of whole lines (each ended by 0), padded per line.

    Built newest token first: the token j back joins the context while no boundary (the end of
    the line before, or the chunk's start) lies between. int32 where V^(n-1) fits: a third of the time.
    """
    small = V ** (order - 1) < 2**31
    stream = tokens.to(torch.int32) if small else tokens
    context = torch.zeros_like(stream)
    same_line = torch.ones(stream.shape, dtype=torch.bool, device=stream.device)
    shifted = torch.empty_like(stream)
    scale = 1
    for j in range(1, order):  # a loop over context positions, not over data
        shifted[:j] = 0
        shifted[j:] = stream[:-j]
        same_line &= shifted != 0
        context.add_(shifted.mul_(same_line), alpha=scale)
        scale *= V
    return context.long()


def score_file_streamed(model: NGramModel, path, vocab, max_bytes: int = DEFAULT_STREAM_BYTES,
                        device=None) -> FileScore:
    """Score a text file (one item per line) under an n-gram model, chunk by chunk within `max_bytes`.

    The chunks are harness.data.stream's: every character and each line's end token is predicted
    (the harness convention, which is KenLM query's for the same file), blank lines are skipped,
    and only one chunk of lines is held at a time. On CPU a model with `stream_log10_total(ids)`
    (harness.models.rows) is fed numpy arrays through stream.score_stream, the torch-free
    path's own loop: numpy's gathers are 2-3x torch's on CPU here.
    """
    if vocab.size != model.vocab_size:
        raise HarnessError(f"the vocabulary has {vocab.size} tokens but the model {model.vocab_size}; pass the model's vocabulary")
    if device is None:
        device = getattr(model, "device", "cpu")
    if torch.device(device).type == "cpu" and hasattr(model, "stream_log10_total"):
        return score_stream(model.stream_log10_total, path, vocab.itos, max_bytes)
    nll, predictions, items = 0.0, 0, 0
    for ids in line_chunks(path, vocab.itos, max_bytes):
        tokens = torch.from_numpy(ids.astype(np.int64)).to(device)
        nll -= float(model.score(_stream_windows(tokens, model.order, model.vocab_size), tokens).sum())
        predictions += len(ids)
        items += int(np.count_nonzero(ids == 0))
    return FileScore(nll, predictions, items)
