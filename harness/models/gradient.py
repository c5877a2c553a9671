"""The gradient model: an n-gram table of logits trained by gradient descent (the lecture's second half)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from harness.models.protocol import NGramModel
from harness.models.tables import DEFAULT_TABLE_BUDGET_BYTES, check_dense_table


@dataclass
class GradientModel(NGramModel):
    """An n-gram model whose logits are rows of a parameter table W (V^(n-1), V): the lecture's
    single linear layer, W[context] (or one_hot(context) @ W, the same thing).

    With `additive` (orders >= 3 only) the logits are a sum of one V x V table per context
    position, W_k[token at position k], instead of one row per whole context.
    """

    order: int
    vocab_size: int
    tables: list[torch.Tensor]  # one (V^(n-1), V) table, or n-1 (V, V) tables when additive
    additive: bool = False

    @classmethod
    def init(cls, order: int, vocab_size: int, seed: int, device, additive: bool = False,
             dtype: torch.dtype = torch.float32, budget_bytes: int = DEFAULT_TABLE_BUDGET_BYTES) -> "GradientModel":
        """Tables from torch.randn with a seeded CPU generator (the same numbers on every device)."""
        g = torch.Generator().manual_seed(seed)
        if additive and order >= 3:
            tables = [torch.randn((vocab_size, vocab_size), generator=g, dtype=dtype) for _ in range(order - 1)]
        else:
            check_dense_table(vocab_size, order, budget_bytes)
            tables = [torch.randn((vocab_size ** (order - 1), vocab_size), generator=g, dtype=dtype)]
            additive = False
        return cls(order, vocab_size, [t.to(device).requires_grad_() for t in tables], additive)

    def parameters(self) -> list[torch.Tensor]:
        return self.tables

    def logits(self, context: torch.Tensor, onehot: bool = False) -> torch.Tensor:
        """(N, V) logits for context ids (N,)."""
        if not self.additive:
            (W,) = self.tables
            if onehot:  # the lecture's path; E04 says it equals indexing
                return F.one_hot(context, W.shape[0]).to(W.dtype) @ W
            return W[context]
        V = self.vocab_size
        logits = 0
        for k, W in enumerate(self.tables):
            token = (context // V ** (self.order - 2 - k)) % V
            logits = logits + (F.one_hot(token, V).to(W.dtype) @ W if onehot else W[token])
        return logits

    def regulariser(self) -> torch.Tensor:
        """sum over tables of (W**2).mean(): the lecture's smoothing of the gradient model."""
        return sum((W.float() ** 2).mean() for W in self.tables)

    def log_prob_table(self) -> torch.Tensor:
        """(V^(n-1), V) float64 log-softmax over every context."""
        with torch.no_grad():
            if not self.additive:
                return torch.log_softmax(self.tables[0].double(), 1)
            contexts = torch.arange(self.vocab_size ** (self.order - 1), device=self.tables[0].device)
            return torch.log_softmax(self.logits(contexts).double(), 1)

    def score(self, context: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.log_prob_table()[context, target]

    def next_token_probs(self, context: torch.Tensor) -> torch.Tensor:
        return self.probs_table()[context]

    def probs_table(self) -> torch.Tensor:
        """Row probabilities in float32, as the lecture computes them: counts = exp(logits); counts / sum."""
        with torch.no_grad():
            if self.additive:
                return self.log_prob_table().exp().float()
            counts = self.tables[0].float().exp()
            probs = counts / counts.sum(1, keepdim=True)
            if not torch.isfinite(probs).all():  # exp overflowed: fall back to the max-subtracted form
                probs = torch.softmax(self.tables[0].float(), 1)
            return probs
