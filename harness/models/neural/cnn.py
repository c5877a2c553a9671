"""The WaveNet-style hierarchical model of lecture part 5: the embeddings of the last 2^L tokens
are fused pair by pair, level by level (8 -> 4 -> 2 -> 1 for L = 3), so each level sees twice the
span of the one below it, the dilated causal convolution of WaveNet evaluated at one position.

The lecture normalises each level with BatchNorm; here it is LayerNorm, because a batch of whole
items holds padding positions whose statistics BatchNorm would mix into every real one, and
because a position's log-probability should not depend on which other items share its batch.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from harness.models.neural.common import NeuralModel, NeuralSettings
from harness.models.neural.mlp import last_tokens


def levels_for(block_size: int) -> int:
    """Fusion levels L, the smallest with 2^L >= block_size (at least 1)."""
    return max(1, (block_size - 1).bit_length())


class FusePairs(nn.Module):
    """(B, T, S, C) -> (B, T, S/2, width): each pair of neighbouring slots concatenated, then
    Linear -> LayerNorm -> tanh (the lecture's FlattenConsecutive(2), Linear, BatchNorm1d, Tanh)."""

    def __init__(self, in_features: int, width: int):
        super().__init__()
        self.linear = nn.Linear(2 * in_features, width, bias=False)  # the norm's shift is the bias
        self.norm = nn.LayerNorm(width)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        B, T, S, C = h.shape
        return torch.tanh(self.norm(self.linear(h.reshape(B, T, S // 2, 2 * C))))


class CNN(NeuralModel):
    """Embeddings of the last 2^L >= block_size tokens, L levels of pair fusion, Linear to V logits.

    The slots before the last block_size tokens are always the boundary, so the model's context
    is block_size tokens (its order block_size + 1) even where 2^L is larger.
    """

    family = "cnn"

    def __init__(self, vocab_size: int, block_size: int, settings: NeuralSettings):
        super().__init__(vocab_size, block_size, settings)
        self.order = block_size + 1
        self.max_context = block_size
        self.span = 2 ** levels_for(block_size)
        self.wte = nn.Embedding(vocab_size, settings.n_embd)
        widths = [settings.n_embd] + [settings.n_embd2] * levels_for(block_size)
        self.levels = nn.ModuleList(FusePairs(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.drop = nn.Dropout(settings.dropout)
        self.lm_head = nn.Linear(settings.n_embd2, vocab_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # only the last block_size tokens are read; the older slots of the span stay boundary
        context = last_tokens(x, self.block_size)
        if self.span > self.block_size:
            context = nn.functional.pad(context, (self.span - self.block_size, 0))
        h = self.wte(context)  # (B, T, span, n_embd)
        for level in self.levels:
            h = self.drop(level(h))
        return self.lm_head(h.squeeze(2))
