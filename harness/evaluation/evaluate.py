"""Evaluation: mean negative log-likelihood in nats per predicted character, and perplexity.

Models are reached only through the model protocol (harness.models.protocol): an n-gram
model's windows are scored by `score(context, target)`, a streamed split against a dense
`log_prob_table()` where the model has one, and a whole corpus by `token_log_probs(corpus)`,
which every family answers.
"""
from __future__ import annotations

import torch

from harness.data.corpus import Corpus
from harness.data.ngrams import Windows, WindowStream
from harness.data.stream import perplexity  # noqa: F401 - defined where the torch-free score path can reach it

SCORE_BYTES_PER_PREDICTION = 160  # a streamed chunk scored through a model: ids, context, target, lookups, log-probs


def window_log_probs(model, win: Windows) -> torch.Tensor:
    """(N,) log-probability of each window's target under an n-gram model (`model.score`)."""
    return model.score(win.context, win.target)


def mean_nll(model, win: Windows | WindowStream) -> float:
    """Weighted mean NLL in nats per predicted character (the end token included) of an n-gram model.

    A target of probability 0 makes the loss inf, reported as such; it never becomes NaN.
    A WindowStream is scored chunk by chunk (a dense table against its kept counts, one pass).
    """
    if isinstance(win, WindowStream):
        return stream_mean_nll(model, win)
    return _weighted_nll(window_log_probs(model, win), win.weight)


def _weighted_nll(log_probs: torch.Tensor, weight: torch.Tensor) -> float:
    total = weight.sum()
    if float(total) == 0:
        return float("nan")
    return float(-(log_probs.to(torch.float64) * weight).sum() / total)


def stream_mean_nll(model, stream: WindowStream) -> float:
    """mean_nll over a WindowStream: sum of count x log-probability over observed windows.

    A model with a dense `log_prob_table()` is scored against the stream's dense counts
    (counted once, then reused for every smoothing); any other scores each chunk's windows
    through `score`.
    """
    total = stream.total_weight()
    if total == 0:
        return float("nan")
    table = model.log_prob_table()
    if table is not None:
        counts = stream.counts()
        seen = counts > 0  # only observed windows: an unseen -inf times a zero count is not a term
        return float(-(counts[seen] * table.to(counts.device)[seen].to(torch.float64)).sum() / total)
    V = stream.vocab_size
    nll = 0.0
    for chunk in stream.chunks(SCORE_BYTES_PER_PREDICTION):
        lp = model.score(chunk.ids // V, chunk.ids % V).to(torch.float64)
        nll -= float(lp.sum() if chunk.weight is None else (lp * chunk.weight).sum())
    return nll / total


def token_items(corpus: Corpus) -> torch.Tensor:
    """(N,) index of the item each predicted token belongs to, in `token_log_probs` order."""
    return torch.repeat_interleave(torch.arange(corpus.num_unique, device=corpus.device), corpus.lengths + 1)


def corpus_nll(model, corpus: Corpus) -> float:
    """Weighted mean NLL (nats per predicted character) of any model over a corpus, via `token_log_probs`.

    Each token weighs as its item (its number of copies); equals mean_nll over the corpus's windows."""
    weight = corpus.item_weights().to(torch.float64)[token_items(corpus)]
    return _weighted_nll(model.token_log_probs(corpus), weight)


def item_nll(model, corpus: Corpus) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-item summed NLL (nats) and number of predicted characters, for item-level scores."""
    lp = model.token_log_probs(corpus).to(torch.float64)
    item = token_items(corpus)
    nll = torch.zeros(corpus.num_unique, dtype=torch.float64, device=lp.device).index_add_(0, item, -lp)
    return nll, corpus.lengths + 1
