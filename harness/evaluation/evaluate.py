"""Evaluation: mean negative log-likelihood in nats per predicted character, and perplexity."""
from __future__ import annotations

import math

import torch

from harness.data.ngrams import Windows, WindowStream

SCORE_BYTES_PER_PREDICTION = 160  # a streamed chunk scored through a model: ids, context, target, lookups, log-probs


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
    A WindowStream is scored chunk by chunk (a dense table against its kept counts, one pass).
    """
    if isinstance(win, WindowStream):
        return stream_mean_nll(log_probs, win)
    lp = window_log_probs(log_probs, win).to(torch.float64)
    total = win.weight.sum()
    if float(total) == 0:
        return float("nan")
    nll = -(lp * win.weight).sum() / total
    return float(nll)


def stream_mean_nll(log_probs, stream: WindowStream) -> float:
    """mean_nll over a WindowStream: sum of count x log-probability over observed windows.

    A dense table is scored against the stream's dense counts (counted once, then reused for
    every smoothing); a model object scores each chunk's windows through `score`.
    """
    total = stream.total_weight()
    if total == 0:
        return float("nan")
    if isinstance(log_probs, torch.Tensor):
        counts = stream.counts()
        seen = counts > 0  # only observed windows: an unseen -inf times a zero count is not a term
        return float(-(counts[seen] * log_probs.to(counts.device)[seen].to(torch.float64)).sum() / total)
    V = stream.vocab_size
    nll = 0.0
    for chunk in stream.chunks(SCORE_BYTES_PER_PREDICTION):
        lp = log_probs.score(chunk.ids // V, chunk.ids % V).to(torch.float64)
        nll -= float(lp.sum() if chunk.weight is None else (lp * chunk.weight).sum())
    return nll / total


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
