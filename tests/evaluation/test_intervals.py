"""Bootstrap intervals against closed-form standard errors on synthetic items."""
import math

import pytest
import torch

from harness.evaluation.intervals import beyond_noise, nll_interval, paired_difference

Z95 = 1.959964


def synthetic(num_items: int, seed: int, equal_lengths: bool):
    g = torch.Generator().manual_seed(seed)
    chars = torch.full((num_items,), 6.0, dtype=torch.float64) if equal_lengths else \
        torch.randint(3, 16, (num_items,), generator=g).to(torch.float64)
    per_char = 2.0 + 0.5 * torch.randn(num_items, generator=g, dtype=torch.float64)
    return per_char * chars, chars


def ratio_standard_error(nll: torch.Tensor, chars: torch.Tensor) -> float:
    """Delta-method standard error of sum(nll) / sum(chars) over i.i.d. items."""
    n = len(nll)
    ratio = nll.sum() / chars.sum()
    residual = nll - ratio * chars
    return float(residual.std(correction=1) / math.sqrt(n) / chars.mean())


@pytest.mark.parametrize("equal_lengths", [True, False])
def test_bootstrap_width_matches_the_closed_form(equal_lengths):
    nll, chars = synthetic(3000, seed=1, equal_lengths=equal_lengths)
    interval = nll_interval(nll, chars, replicates=2000, seed=7)
    expected_half_width = Z95 * ratio_standard_error(nll, chars)
    half_width = (interval.high - interval.low) / 2
    assert half_width == pytest.approx(expected_half_width, rel=0.1)
    estimate = float(nll.sum() / chars.sum())
    assert interval.contains(estimate)
    assert (interval.low + interval.high) / 2 == pytest.approx(estimate, abs=0.3 * half_width)


def test_copies_count_like_repeated_items():
    nll, chars = synthetic(800, seed=2, equal_lengths=False)
    copies = torch.randint(1, 5, (800,), generator=torch.Generator().manual_seed(3)).to(torch.float64)
    weighted = nll_interval(nll, chars, copies, replicates=2000, seed=1)
    expanded = nll_interval(nll.repeat_interleave(copies.long()), chars.repeat_interleave(copies.long()),
                            replicates=2000, seed=1)
    estimate = float((copies * nll).sum() / (copies * chars).sum())
    assert weighted.contains(estimate) and expanded.contains(estimate)
    assert weighted.high - weighted.low == pytest.approx(expanded.high - expanded.low, rel=0.12)


def test_seeded_and_reproducible():
    nll, chars = synthetic(500, seed=4, equal_lengths=False)
    assert nll_interval(nll, chars, seed=3) == nll_interval(nll, chars, seed=3)
    assert nll_interval(nll, chars, seed=3) != nll_interval(nll, chars, seed=4)


def test_paired_difference_cancels_what_both_models_share():
    nll_a, chars = synthetic(2000, seed=5, equal_lengths=False)
    g = torch.Generator().manual_seed(6)
    nll_b = nll_a + chars * (0.01 + 0.02 * torch.randn(2000, generator=g, dtype=torch.float64))
    estimate, interval = paired_difference(nll_a, nll_b, chars, replicates=2000, seed=0)
    assert estimate == pytest.approx(float((nll_b - nll_a).sum() / chars.sum()))
    assert interval.contains(estimate)
    assert beyond_noise(interval)  # 0.01 nats/char with a per-item spread of 0.02 over 2,000 items
    separate_a = nll_interval(nll_a, chars, replicates=2000, seed=0)
    assert interval.high - interval.low < 0.2 * (separate_a.high - separate_a.low)
    # the same model twice: exactly no difference, and never beyond noise
    estimate, interval = paired_difference(nll_a, nll_a, chars)
    assert estimate == 0.0 and interval.low == 0.0 and interval.high == 0.0 and not beyond_noise(interval)


def test_paired_difference_within_noise_for_a_tiny_shift():
    nll_a, chars = synthetic(300, seed=8, equal_lengths=False)
    g = torch.Generator().manual_seed(9)
    nll_b = nll_a + chars * (0.0001 + 0.3 * torch.randn(300, generator=g, dtype=torch.float64))
    _, interval = paired_difference(nll_a, nll_b, chars, seed=0)
    assert not beyond_noise(interval)


def test_an_item_of_probability_zero_reaches_inf_never_nan():
    nll, chars = synthetic(50, seed=10, equal_lengths=True)
    nll[3] = float("inf")
    interval = nll_interval(nll, chars, seed=0)
    assert interval.high == float("inf") and not math.isnan(interval.low)


def test_kept_multiplicities_give_the_same_bits_as_drawing_anew(monkeypatch):
    """The cache of Poisson multiplicities: a second call (kept draws) and a call with the cache off give
    identical intervals; other seeds, copies or replicates are other draws; it stays within its byte budget."""
    from harness.evaluation import intervals

    nll, chars = synthetic(700, seed=8, equal_lengths=False)
    copies = torch.randint(1, 4, (700,), generator=torch.Generator().manual_seed(9)).to(torch.float64)
    intervals._cache.clear()
    first = nll_interval(nll, chars, copies, seed=5)
    assert len(intervals._cache) == 1
    kept = nll_interval(nll, chars, copies, seed=5)
    monkeypatch.setattr(intervals, "CACHE_BYTES", 0)
    intervals._cache.clear()
    fresh = nll_interval(nll, chars, copies, seed=5)
    assert first == kept == fresh and not intervals._cache
    # the draws themselves, chunk for chunk, against a generator seeded by hand (_CHUNK_CELLS rows at a time)
    monkeypatch.setattr(intervals, "CACHE_BYTES", 512 * 2**20)
    monkeypatch.setattr(intervals, "_CHUNK_CELLS", 700 * 300)
    g = torch.Generator().manual_seed(5)
    by_hand = [torch.poisson(copies.expand(rows, -1).contiguous(), generator=g) for rows in (300, 300, 400)]
    for _ in range(2):  # drawn, then kept
        got = intervals.multiplicities(copies, 1000, 5)
        assert [c.shape[0] for c in got] == [300, 300, 300, 100]
        assert torch.equal(torch.cat(got), torch.cat(by_hand)[:1000]) and got[0].dtype == torch.float64
    assert nll_interval(nll, chars, copies, seed=6) != first  # another seed: another draw, not the kept one
    assert nll_interval(nll, chars, copies + 1, seed=5) != first
    # the budget: room for two draws of 700 x 1000 float32 cells, so a third pushes out the least recently used
    intervals._cache.clear()
    monkeypatch.setattr(intervals, "CACHE_BYTES", 2 * 4 * 700 * 1000)
    for seed in (1, 2, 1, 3):
        intervals.multiplicities(copies, 1000, seed)
    assert [key[0] for key in intervals._cache] == [1, 3]
