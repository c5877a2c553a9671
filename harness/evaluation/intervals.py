"""Bootstrap intervals over items: how much a mean NLL (or a difference of two) moves with the sample.

A split's mean NLL is a ratio, sum_i c_i s_i / sum_i c_i n_i, over its unique items i with copies
c_i (1 for a plain list of names, births for ssa-births), summed NLL s_i (nats) and predicted
characters n_i. Resampling the items with replacement is the standard nonparametric bootstrap;
here it is the Poisson bootstrap (each copy of each item is drawn Poisson(1) times, so item i's
multiplicity is Poisson(c_i)): the same limit as the multinomial bootstrap, it needs no draw of
sum(c) indices (348 M births) and it treats 2 copies of a name exactly like two lines of it.

A paired interval applies the same resampled multiplicities to two models' per-item NLLs on the
same items; the difference is beyond noise when its interval excludes 0.

The multiplicities depend only on the items' copies, the number of replicates and the seed, and a
run resamples the same splits with the same seed for every configuration (and every report). Drawing
them is most of the work (about 28 ns a Poisson draw on one CPU thread, against under 1 ns for the
sums), so on the CPU they are kept between calls, up to `CACHE_BYTES` in all, the least recently
used dropped first: the same numbers, drawn once a split.
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass

import torch

REPLICATES = 1000
LEVEL = 0.95
_CHUNK_CELLS = 4_000_000  # replicate x item cells per chunk (32 MB of float64)
CACHE_BYTES = 512 * 2**20  # kept multiplicities (as float32: whole numbers below 2^24 are exact in it)
_EXACT_FLOAT32 = 2**24
_cache: OrderedDict[tuple, list[torch.Tensor]] = OrderedDict()


def _draw(copies: torch.Tensor, replicates: int, seed: int) -> list[torch.Tensor]:
    """The multiplicities m ~ Poisson(copies), `replicates` rows in chunks of at most _CHUNK_CELLS cells."""
    generator = torch.Generator(device=copies.device).manual_seed(seed)
    per_chunk = max(1, _CHUNK_CELLS // max(1, len(copies)))
    chunks, done = [], 0
    while done < replicates:
        rows = min(per_chunk, replicates - done)
        chunks.append(torch.poisson(copies.expand(rows, -1).contiguous(), generator=generator))
        done += rows
    return chunks


def multiplicities(copies: torch.Tensor, replicates: int, seed: int) -> list[torch.Tensor]:
    """`_draw`'s chunks (float64), from the cache when the same copies, replicates and seed were drawn before
    on the CPU. A draw larger than CACHE_BYTES, or one on another device, is not kept."""
    copies = copies.to(torch.float64)
    if copies.device.type != "cpu":
        return _draw(copies, replicates, seed)
    key = (seed, replicates, len(copies), hashlib.blake2b(copies.contiguous().numpy().tobytes(), digest_size=16).digest())
    if key in _cache:
        _cache.move_to_end(key)
        return [chunk.to(torch.float64) for chunk in _cache[key]]
    chunks = _draw(copies, replicates, seed)
    size = 4 * replicates * len(copies)
    if size <= CACHE_BYTES and all(float(chunk.max()) < _EXACT_FLOAT32 for chunk in chunks if chunk.numel()):
        _cache[key] = [chunk.to(torch.float32) for chunk in chunks]
        while sum(4 * sum(c.numel() for c in v) for v in _cache.values()) > CACHE_BYTES:
            _cache.popitem(last=False)
    return chunks


@dataclass(frozen=True)
class Interval:
    low: float
    high: float

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    def as_list(self) -> list[float]:
        return [self.low, self.high]


def _replicate_ratios(numerators: list[torch.Tensor], denominator: torch.Tensor, copies: torch.Tensor,
                      replicates: int, seed: int) -> list[torch.Tensor]:
    """Bootstrap replicates of sum(m * num) / sum(m * den) for each numerator, m ~ Poisson(copies)."""
    out = [[] for _ in numerators]
    for m in multiplicities(copies, replicates, seed):
        den = m @ denominator
        for j, num in enumerate(numerators):
            infinite = ~torch.isfinite(num)  # an item of probability 0: inf where it is drawn, else no term
            ratio = (m @ torch.where(infinite, torch.zeros_like(num), num)) / den
            if bool(infinite.any()):
                drawn = m[:, infinite].sum(1) > 0
                ratio = torch.where(drawn, torch.full_like(ratio, float("inf")), ratio)
            out[j].append(ratio)
    return [torch.cat(parts) for parts in out]


def _percentile(values: torch.Tensor, level: float) -> Interval:
    """The (1 - level) / 2 and (1 + level) / 2 quantiles; replicates that are inf sort last and stay inf."""
    alpha = (1 - level) / 2
    ordered = torch.sort(values).values
    lo = ordered[int(alpha * (len(ordered) - 1))]
    hi = ordered[int(round((1 - alpha) * (len(ordered) - 1)))]
    return Interval(float(lo), float(hi))


def nll_interval(item_nll: torch.Tensor, item_chars: torch.Tensor, copies: torch.Tensor | None = None,
                 replicates: int = REPLICATES, level: float = LEVEL, seed: int = 0) -> Interval:
    """Percentile bootstrap interval of a mean NLL per predicted character.

    item_nll: (I,) summed NLL of each unique item (nats); item_chars: (I,) its predicted
    characters; copies: (I,) its multiplicity (None = 1 each). Seeded: the same inputs and seed
    give the same interval.
    """
    copies = torch.ones_like(item_nll) if copies is None else copies
    (ratios,) = _replicate_ratios([item_nll.to(torch.float64)], item_chars.to(torch.float64), copies, replicates, seed)
    return _percentile(ratios, level)


def paired_difference(item_nll_a: torch.Tensor, item_nll_b: torch.Tensor, item_chars: torch.Tensor,
                      copies: torch.Tensor | None = None, replicates: int = REPLICATES, level: float = LEVEL,
                      seed: int = 0) -> tuple[float, Interval]:
    """Mean NLL of B minus A on the same items, and its paired bootstrap interval.

    Both models' per-item NLLs are resampled with the same multiplicities, so what the two share
    (hard names are hard for both) cancels: the interval is much narrower than the two separate
    ones combined.
    """
    copies = torch.ones_like(item_chars, dtype=torch.float64) if copies is None else copies.to(torch.float64)
    chars = item_chars.to(torch.float64)
    diff = (item_nll_b.to(torch.float64) - item_nll_a.to(torch.float64))
    estimate = float((copies * diff).sum() / (copies * chars).sum())
    (ratios,) = _replicate_ratios([diff], chars, copies, replicates, seed)
    return estimate, _percentile(ratios, level)


def unpaired_difference(nll_a, chars_a, copies_a, nll_b, chars_b, copies_b, replicates: int = REPLICATES,
                        level: float = LEVEL, seed: int = 0) -> tuple[float, Interval]:
    """Mean NLL of B minus A on different items (two splits, two corpora): independent bootstraps."""
    estimates, draws = [], []
    for j, (nll, chars, copies) in enumerate(((nll_a, chars_a, copies_a), (nll_b, chars_b, copies_b))):
        copies = torch.ones_like(chars, dtype=torch.float64) if copies is None else copies.to(torch.float64)
        nll, chars = nll.to(torch.float64), chars.to(torch.float64)
        estimates.append(float((copies * nll).sum() / (copies * chars).sum()))
        (ratios,) = _replicate_ratios([nll], chars, copies, replicates, seed + j)
        draws.append(ratios)
    return estimates[1] - estimates[0], _percentile(draws[1] - draws[0], level)


def beyond_noise(interval: Interval) -> bool:
    """A difference whose interval excludes zero."""
    return not interval.contains(0.0)
