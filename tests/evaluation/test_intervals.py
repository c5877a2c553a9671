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
