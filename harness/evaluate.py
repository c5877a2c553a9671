"""Evaluation: mean negative log-likelihood in nats per predicted character, and perplexity."""
from __future__ import annotations

import math

import torch

from harness.ngrams import Windows


def window_log_probs(log_probs, win: Windows) -> torch.Tensor:
    """(N,) log-probability of each window's target.

    `log_probs` is a dense (V^(n-1), V) table, or a model object with
    `score(context, target) -> (N,) float64 log-probabilities` (sparse or interpolated models
    that never build the table).
    """
    if isinstance(log_probs, torch.Tensor):
        return log_probs[win.context, win.target]
    return log_probs.score(win.context, win.target)


def mean_nll(log_probs, win: Windows) -> float:
    """Weighted mean NLL in nats per predicted character (the end token included).

    A target of probability 0 makes the loss inf, reported as such; it never becomes NaN.
    """
    lp = window_log_probs(log_probs, win).to(torch.float64)
    total = win.weight.sum()
    if float(total) == 0:
        return float("nan")
    nll = -(lp * win.weight).sum() / total
    return float(nll)


def item_nll(log_probs, win: Windows, num_items: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-item summed NLL (nats) and number of predicted characters, for item-level scores."""
    lp = window_log_probs(log_probs, win).to(torch.float64)
    nll = torch.zeros(num_items, dtype=torch.float64, device=lp.device).index_add_(0, win.item, -lp)
    n = torch.bincount(win.item, minlength=num_items)
    return nll, n


def perplexity(nll_nats: float) -> float:
    """exp(NLL); inf stays inf."""
    try:
        return math.exp(nll_nats)
    except OverflowError:
        return float("inf")
