"""The neural families by name, in one place (a dict literal, as the style asks)."""
from __future__ import annotations

from harness.core.errors import HarnessError
from harness.models.neural.cnn import CNN
from harness.models.neural.common import NeuralModel, NeuralSettings
from harness.models.neural.gru import GRU
from harness.models.neural.mlp import MLP
from harness.models.neural.transformer import Transformer

FAMILIES: dict[str, type[NeuralModel]] = {"mlp": MLP, "cnn": CNN, "gru": GRU, "transformer": Transformer}


def build_model(family: str, vocab_size: int, block_size: int, settings: NeuralSettings) -> NeuralModel:
    """A freshly initialised model of `family` (torch's default init, from the global RNG: seed it
    or fork it first, as `harness.train.neural` does)."""
    if family not in FAMILIES:
        raise HarnessError(f"unknown neural family {family!r}; choose one of {', '.join(FAMILIES)}")
    if block_size < 1:
        raise HarnessError(f"{family}: block_size must be >= 1, got {block_size}")
    return FAMILIES[family](vocab_size, block_size, settings)
