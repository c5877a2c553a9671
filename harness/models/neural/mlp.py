"""The MLP of Bengio et al. 2003 (lecture part 2): the last block_size tokens' embeddings,
concatenated, through one tanh hidden layer to the next-token logits."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from harness.data.corpus import BOUNDARY
from harness.models.neural.common import NeuralModel, NeuralSettings


def last_tokens(x: torch.Tensor, width: int) -> torch.Tensor:
    """(B, T, width) the `width` tokens ending at each position of x (B, T), oldest first, the
    positions before the item's start filled with the boundary (the n-gram models' padding)."""
    padded = F.pad(x, (width - 1, 0), value=BOUNDARY)
    return padded.unfold(1, width, 1)


class MLP(NeuralModel):
    """Embeddings of the last block_size tokens -> Linear -> tanh -> Linear to V logits."""

    family = "mlp"

    def __init__(self, vocab_size: int, block_size: int, settings: NeuralSettings):
        super().__init__(vocab_size, block_size, settings)
        self.order = block_size + 1
        self.max_context = block_size
        self.wte = nn.Embedding(vocab_size, settings.n_embd)
        self.hidden = nn.Linear(block_size * settings.n_embd, settings.n_embd2)
        self.drop = nn.Dropout(settings.dropout)
        self.lm_head = nn.Linear(settings.n_embd2, vocab_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T = x.shape
        context = last_tokens(x, self.block_size)  # (B, T, block_size)
        emb = self.wte(context).view(B, T, -1)  # concatenated embeddings (B, T, block_size * n_embd)
        h = torch.tanh(self.hidden(self.drop(emb)))
        return self.lm_head(self.drop(h))
