"""A GRU over the whole prefix (lecture part 4's recurrent family, makemore's `--type gru`):
the token embeddings through n_layer stacked GRU layers of width n_embd2, each step's hidden
state to the next-token logits. It has no context limit."""
from __future__ import annotations

import torch
import torch.nn as nn

from harness.models.neural.common import NeuralModel, NeuralSettings


class GRU(NeuralModel):
    """Embedding -> nn.GRU(n_embd, n_embd2, n_layer) -> Linear to V logits, from a zero state
    (the start token's embedding plays makemore's learned start state)."""

    family = "gru"

    def __init__(self, vocab_size: int, block_size: int, settings: NeuralSettings):
        super().__init__(vocab_size, block_size, settings)
        self.order = None
        self.max_context = None
        self.wte = nn.Embedding(vocab_size, settings.n_embd)
        self.rnn = nn.GRU(settings.n_embd, settings.n_embd2, num_layers=settings.n_layer, batch_first=True,
                          dropout=settings.dropout if settings.n_layer > 1 else 0.0)
        self.drop = nn.Dropout(settings.dropout)
        self.lm_head = nn.Linear(settings.n_embd2, vocab_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.rnn(self.drop(self.wte(x)))
        return self.lm_head(self.drop(h))
