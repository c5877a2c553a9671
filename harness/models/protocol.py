"""The one model protocol: what evaluation, sampling, the runner, the report and the CLI ask of a model.

Two levels, because two kinds of context exist:

- every family answers `token_log_probs(corpus)` (the log-probability of each predicted token
  of each item, the end token included, in the order `data.ngrams.windows` lists them) and
  `prefix_next_probs(prefix)` (the next-token distribution after a batch of prefixes). A GRU's
  or a Transformer's context is the whole prefix of a name, which no n-gram context id can hold
  (27^15 overflows int64), so these two take tokens, not ids;
- an n-gram model (`NGramModel`: count, smoothed, gradient tables) also answers in context ids,
  `score(context, target)` and `next_token_probs(context)`, which is how its windows are scored
  fast and streamed over 348 M expanded rows; the item-level methods derive from these.

A model with a dense (V^(n-1), V) table says so through `log_prob_table()` (float64 log-probs,
what streamed evaluation multiplies with a stream's counts) and `probs_table()` (the float32
rows the samplers draw from, computed as the lecture does); callers use them as a fast path,
never as the only path. `settings()` gives what a results record states about the fitted model
(e.g. {"smoothing": k}).

A new family is one module with a class implementing this protocol and its fit function, named
in `harness.models.families.FAMILIES`.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import torch

from harness.data.corpus import BOUNDARY, Corpus
from harness.data.ngrams import windows


class LanguageModel(ABC):
    """A character-level language model over a vocabulary of `vocab_size` ids (0 = boundary).

    `order` is the n-gram order (the context is the last order - 1 tokens), or None where the
    context is the whole prefix of the item.
    """

    vocab_size: int
    order: int | None

    @abstractmethod
    def token_log_probs(self, corpus: Corpus) -> torch.Tensor:
        """(N,) float64 log p(token | its context) for every predicted token of `corpus`:
        item by item, each item's characters then its end token (N = sum(lengths + 1))."""

    @abstractmethod
    def prefix_next_probs(self, prefix: torch.Tensor) -> torch.Tensor:
        """(B, V) float32 next-token probabilities after `prefix`, (B, t) int64 token ids
        generated so far (t >= 0, the start padding not included). Rows sum to 1."""

    def log_prob_table(self) -> torch.Tensor | None:
        """A dense (V^(n-1), V) float64 table of log-probabilities where the model has one, else None."""
        return None

    def probs_table(self) -> torch.Tensor | None:
        """A dense (V^(n-1), V) float32 table of next-token probabilities (rows sum to 1), else None.

        Where it exists its row of a context is exactly what `next_token_probs` gives for it, so a
        sampler drawing from the table draws the same names."""
        return None

    def settings(self) -> dict:
        """What a results record states about the fitted model (results.json keys), e.g. {"smoothing": k}."""
        return {}


class NGramModel(LanguageModel):
    """A model whose context is the last order - 1 tokens, one id in base V (oldest most significant)."""

    order: int

    @abstractmethod
    def score(self, context: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """(N,) float64 log-probabilities of target ids given context ids (both (N,) int64)."""

    @abstractmethod
    def next_token_probs(self, context: torch.Tensor) -> torch.Tensor:
        """(B, V) float32 next-token probabilities of context ids (B,); rows sum to 1."""

    def token_log_probs(self, corpus: Corpus) -> torch.Tensor:
        win = windows(corpus, self.order)
        return self.score(win.context, win.target)

    def prefix_next_probs(self, prefix: torch.Tensor) -> torch.Tensor:
        return self.next_token_probs(context_ids(prefix, self.order, self.vocab_size))


def context_ids(prefix: torch.Tensor, order: int, vocab_size: int) -> torch.Tensor:
    """(B,) context ids of the last order - 1 tokens of (B, t) prefixes, padded with the boundary."""
    width = order - 1
    B, t = prefix.shape
    padded = torch.full((B, width), BOUNDARY, dtype=torch.int64, device=prefix.device)
    take = min(width, t)
    if take:
        padded[:, width - take:] = prefix[:, t - take:]
    context = torch.zeros(B, dtype=torch.int64, device=prefix.device)
    for k in range(width):  # a loop over the context's positions, not over data
        context = context * vocab_size + padded[:, k]
    return context
