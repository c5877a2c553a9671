"""A decoder-only Transformer (lecture part 7, makemore's default model): token and position
embeddings, n_layer pre-norm blocks of causal multi-head self-attention and a 4x GELU MLP, a
final LayerNorm and a linear head. Its context is the whole prefix up to block_size tokens."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from harness.core.errors import HarnessError
from harness.models.neural.common import NeuralModel, NeuralSettings


class CausalSelfAttention(nn.Module):
    def __init__(self, settings: NeuralSettings):
        super().__init__()
        self.n_head = settings.n_head
        self.qkv = nn.Linear(settings.n_embd, 3 * settings.n_embd)
        self.proj = nn.Linear(settings.n_embd, settings.n_embd)
        self.dropout = settings.dropout
        self.resid_drop = nn.Dropout(settings.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        # (B, T, 3C) -> three (B, n_head, T, head size)
        q, k, v = self.qkv(x).view(B, T, 3, self.n_head, C // self.n_head).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0)
        return self.resid_drop(self.proj(y.transpose(1, 2).reshape(B, T, C)))


class Block(nn.Module):
    def __init__(self, settings: NeuralSettings):
        super().__init__()
        self.ln_1 = nn.LayerNorm(settings.n_embd)
        self.attn = CausalSelfAttention(settings)
        self.ln_2 = nn.LayerNorm(settings.n_embd)
        self.mlp = nn.Sequential(
            nn.Linear(settings.n_embd, 4 * settings.n_embd),
            nn.GELU(approximate="tanh"),  # makemore's NewGELU
            nn.Linear(4 * settings.n_embd, settings.n_embd),
            nn.Dropout(settings.dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class Transformer(NeuralModel):
    """wte + wpe -> n_layer Blocks -> LayerNorm -> Linear (no bias) to V logits."""

    family = "transformer"
    positions_limited = True

    def __init__(self, vocab_size: int, block_size: int, settings: NeuralSettings):
        if settings.n_embd % settings.n_head:
            raise HarnessError(f"transformer: n_embd ({settings.n_embd}) must be a multiple of n_head ({settings.n_head})")
        super().__init__(vocab_size, block_size, settings)
        self.order = None
        self.max_context = block_size
        self.wte = nn.Embedding(vocab_size, settings.n_embd)
        self.wpe = nn.Embedding(block_size, settings.n_embd)
        self.drop = nn.Dropout(settings.dropout)
        self.blocks = nn.ModuleList(Block(settings) for _ in range(settings.n_layer))
        self.ln_f = nn.LayerNorm(settings.n_embd)
        self.lm_head = nn.Linear(settings.n_embd, vocab_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T = x.shape[1]
        pos = torch.arange(T, device=x.device)
        h = self.drop(self.wte(x) + self.wpe(pos))
        for block in self.blocks:
            h = block(h)
        return self.lm_head(self.ln_f(h))
