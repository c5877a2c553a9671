"""What the neural families share: their settings, the padded-batch encoding, and the protocol glue.

Every family is a torch module whose `forward(x)` maps a (B, T) int64 batch of inputs to
(B, T, V) logits, position t predicting the token after x[:, :t+1]. The inputs of an item are
its start token then its characters, the targets its characters then its end token (makemore's
CharDataset), so one forward pass scores every predicted token of a batch of whole items. A
family is causal: position t never sees x[:, t+1:], which is why padding after an item's end can
be anything and why `token_log_probs` and `prefix_next_probs` are written once, here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
import torch.nn as nn

from harness.core.constants import LECTURE_SEED
from harness.core.errors import HarnessError
from harness.data.corpus import BOUNDARY, Corpus
from harness.models.protocol import LanguageModel

IGNORE = -100  # target of a padding position: kernels.cross_entropy counts it for nothing
EVAL_POSITIONS = 32768  # positions (rows x T) scored per forward pass in exact evaluation


@dataclass(frozen=True)
class NeuralSettings:
    """How a neural family is shaped and trained; makemore.py's sizes and optimiser by default.

    n_embd: token (and position) embedding size; n_embd2: hidden width (MLP, CNN, GRU);
    n_layer: Transformer blocks and stacked GRU layers; n_head: attention heads;
    block_size: context length, 0 = the longest train/dev item + 1 (a whole name for every
    family; the MLP and CNN see the last block_size tokens, padded with the boundary).
    Training: AdamW(lr, weight_decay) on minibatches of batch_size items, lr warmed up linearly
    over warmup_steps then cosine-decayed to min_lr_ratio * lr at the last step; dev is scored
    every eval_interval steps and training stops after `patience` scores without a new best
    (0 = never), after `steps`, or after time_budget_seconds (0 = none). loss: the
    kernels.cross_entropy backend (auto, torch, compiled, triton, manual); compile: torch.compile
    the model; bf16: autocast to bfloat16 on CUDA (ignored on CPU); threads: torch intra-op
    threads while training on CPU, 0 = `default_threads()`.
    """

    n_embd: int = 64
    n_embd2: int = 64
    n_layer: int = 4
    n_head: int = 4
    block_size: int = 0
    dropout: float = 0.0
    weight_decay: float = 0.01
    batch_size: int = 32
    lr: float = 5e-4
    min_lr_ratio: float = 0.1
    steps: int = 20_000
    warmup_steps: int = 200
    eval_interval: int = 500
    patience: int = 10
    time_budget_seconds: float = 0.0
    seed: int = LECTURE_SEED
    loss: str = "auto"
    compile: bool = False
    bf16: bool = True
    threads: int = 0

    def __post_init__(self):
        positive = ("n_embd", "n_embd2", "n_layer", "n_head", "batch_size", "steps", "eval_interval")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise HarnessError(f"neural setting {name} must be a positive integer, got {value!r}")
        for name in ("block_size", "warmup_steps", "patience", "threads"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise HarnessError(f"neural setting {name} must be an integer >= 0, got {value!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise HarnessError(f"neural setting dropout must be in [0, 1), got {self.dropout!r}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise HarnessError(f"neural setting lr must be a positive number, got {self.lr!r}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise HarnessError(f"neural setting min_lr_ratio must be in [0, 1], got {self.min_lr_ratio!r}")
        if self.weight_decay < 0:
            raise HarnessError(f"neural setting weight_decay must be >= 0, got {self.weight_decay!r}")
        if self.time_budget_seconds < 0:
            raise HarnessError(f"neural setting time_budget_seconds must be >= 0 (0 = no budget), got {self.time_budget_seconds!r}")
        losses = ("auto", "torch", "compiled", "triton", "manual")
        if self.loss not in losses:
            raise HarnessError(f"neural setting loss must be one of {', '.join(losses)}, got {self.loss!r}")

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def longest_item(*corpora: Corpus) -> int:
    """The most characters of any item of the corpora (0 for none)."""
    return max((int(c.lengths.max()) for c in corpora if c.num_unique), default=0)


def encode_batch(corpus: Corpus, rows: torch.Tensor, T: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) (B, T) int64 inputs and targets of the items `rows` of `corpus`, on its device.

    x = the start token then the characters, y = the characters then the end token, IGNORE
    after it; x after an item's end is the boundary (a causal model never looks at it). T
    defaults to the longest chosen item + 1 (one host sync); pass it to keep shapes static.
    """
    device = corpus.device
    rows = rows.to(device)
    lengths = corpus.lengths[rows]
    if T is None:
        T = int(lengths.max()) + 1 if len(rows) else 1
    pos = torch.arange(T, device=device)
    inside = pos < lengths.unsqueeze(1)  # (B, T): position holds a character
    # items are never empty, so every clamped index is a real code; positions past an item's end
    # read a neighbour's character and are masked to the boundary
    where = (corpus.offsets[:-1][rows].unsqueeze(1) + pos).clamp_(max=corpus.codes.numel() - 1)
    chars = torch.where(inside, corpus.codes[where].long(), BOUNDARY)
    y = torch.where(pos <= lengths.unsqueeze(1), chars, IGNORE)  # the end token sits at pos == length
    x = torch.zeros_like(chars)
    x[:, 1:] = chars[:, :-1]
    return x, y


class NeuralModel(nn.Module, LanguageModel):
    """Base of the four families: the protocol's methods from `forward(x) -> (B, T, V)` logits.

    `max_context`: the most input tokens one position may depend on (MLP, CNN: block_size;
    Transformer: its position table), or None (GRU). Longer inputs are scored by sliding a window
    of that many tokens, as makemore's generate crops its context; a family whose forward cannot
    take them at all (`positions_limited`) must be trained with block_size >= the longest item + 1.
    """

    family: str = ""
    max_context: int | None = None
    positions_limited = False  # forward cannot take more than max_context columns (a position table)

    def __init__(self, vocab_size: int, block_size: int, settings: NeuralSettings):
        super().__init__()
        self.vocab_size = vocab_size
        self.block_size = block_size
        self.settings = settings

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def windowed_logits(self, x: torch.Tensor) -> torch.Tensor:
        """forward(x), also where T exceeds max_context: a window of the last max_context tokens per
        later position (a loop over those positions only; never taken for names within block_size)."""
        limit = self.max_context
        if limit is None or x.shape[1] <= limit:
            return self(x)
        head = self(x[:, :limit])
        tail = [self(x[:, t - limit + 1:t + 1])[:, -1:] for t in range(limit, x.shape[1])]
        return torch.cat([head, *tail], dim=1)

    @torch.no_grad()
    def token_log_probs(self, corpus: Corpus) -> torch.Tensor:
        """(N,) float64 log p of every predicted token, item by item (characters then the end
        token), from fp32 log-softmax over padded batches of items of similar length."""
        was_training = self.training
        self.eval()
        try:
            device = self.device
            lengths = corpus.lengths.to(device)
            first = torch.zeros_like(lengths)
            first[1:] = torch.cumsum(lengths + 1, 0)[:-1]
            out = torch.empty(int((lengths + 1).sum()), dtype=torch.float64, device=device)
            order = torch.argsort(lengths, stable=True)  # similar lengths together: little padding
            sorted_lengths = lengths[order].tolist()
            start = 0
            while start < len(order):
                # lengths ascend, so at most `guess` rows fit; the longest of those bounds T
                guess = max(1, EVAL_POSITIONS // (sorted_lengths[start] + 1))
                bound = sorted_lengths[min(len(order), start + guess) - 1] + 1
                stop = min(len(order), start + max(1, EVAL_POSITIONS // bound))
                T = sorted_lengths[stop - 1] + 1
                rows = order[start:stop]
                x, y = encode_batch(corpus, rows.to(corpus.device), T)
                x, y = x.to(device), y.to(device)
                log_probs = torch.log_softmax(self.windowed_logits(x).float(), dim=-1)
                valid = y != IGNORE
                picked = log_probs.gather(-1, y.clamp(min=0).unsqueeze(-1)).squeeze(-1)
                place = first[rows].unsqueeze(1) + torch.arange(T, device=device)
                out[place[valid]] = picked[valid].double()
                start = stop
            return out
        finally:
            self.train(was_training)

    @torch.no_grad()
    def prefix_next_probs(self, prefix: torch.Tensor) -> torch.Tensor:
        """(B, V) float32 next-token probabilities after (B, t) prefixes (no start token in them)."""
        was_training = self.training
        self.eval()
        try:
            prefix = prefix.to(self.device, torch.int64)
            start = torch.full((prefix.shape[0], 1), BOUNDARY, dtype=torch.int64, device=prefix.device)
            x = torch.cat([start, prefix], dim=1)
            if self.max_context is not None:
                x = x[:, -self.max_context:]
            return torch.softmax(self(x)[:, -1].float(), dim=-1)
        finally:
            self.train(was_training)
