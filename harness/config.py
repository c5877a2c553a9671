"""Run configuration: one frozen dataclass for a run's grid, built and validated in one place."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from harness.corpus import DEFAULT_CORPUS
from harness.errors import HarnessError

K_GRID = (0.0, 0.001, 0.003, 0.01, 0.03, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 3.0, 10.0)
METHODS = ("count", "gradient")
LOSSES = ("triton", "compiled", "torch", "manual")
INPUTS = ("table", "index", "onehot", "counts")
SPLITS = ("seeded", "none")


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs; the defaults here are the CLI's defaults."""

    corpus: str = DEFAULT_CORPUS
    orders: tuple[int, ...] = (2, 3)
    methods: tuple[str, ...] = ("count",)
    smoothing: str = "auto"  # "auto" (tune k on dev) or a float k >= 0, as text
    split: str = "seeded"
    seed: int = 2147483647
    samples: int = 20
    device: str = "auto"
    k_grid: tuple[float, ...] = field(default=K_GRID)
    # gradient models (the lecture's defaults)
    losses: tuple[str, ...] = ("torch",)
    steps: int = 100
    lr: float = 50.0
    reg: float = 0.01
    batch_size: int = 0
    input: str = "table"
    additive: bool = False

    def smoothing_value(self) -> float | None:
        """k as a float, or None for auto."""
        return None if self.smoothing == "auto" else float(self.smoothing)


def resolve_device(name: str) -> torch.device:
    """'auto' is CUDA when present, else CPU; 'cuda' without CUDA is a HarnessError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise HarnessError(f"--device {name!r} is not a device; use auto, cpu or cuda") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise HarnessError("--device cuda was asked for, but this machine has no CUDA device torch can use; use --device cpu or auto")
    if device.type not in ("cpu", "cuda"):
        raise HarnessError(f"--device {name!r} is not supported; use auto, cpu or cuda")
    return device


def parse_orders(text: str) -> tuple[int, ...]:
    try:
        orders = tuple(int(x) for x in str(text).split(",") if x.strip())
    except ValueError:
        raise HarnessError(f"--orders {text!r} must be comma-separated integers, e.g. 2,3") from None
    if not orders:
        raise HarnessError("--orders is empty; give e.g. 2,3")
    for n in orders:
        validate_order(n)
    return orders


def validate_order(n: int) -> int:
    if n < 1:
        raise HarnessError(f"order {n} is invalid: an n-gram order must be at least 1 (1 = unigram, 2 = bigram)")
    return n


def parse_smoothing(text: str) -> str:
    """'auto' or a float k >= 0 (kept as text so the config stays printable)."""
    text = str(text).strip()
    if text == "auto":
        return text
    try:
        k = float(text)
    except ValueError:
        raise HarnessError(f"--smoothing {text!r} must be 'auto' or a number k >= 0") from None
    if not k >= 0 or k == float("inf"):
        raise HarnessError(f"--smoothing {text!r} is invalid: k must be a finite number >= 0 (0 = no smoothing)")
    return repr(k)


def parse_methods(text: str) -> tuple[str, ...]:
    methods = tuple(m.strip() for m in str(text).split(",") if m.strip())
    for m in methods:
        if m not in METHODS:
            raise HarnessError(f"--methods: unknown method {m!r}; choose from {', '.join(METHODS)}")
    if not methods:
        raise HarnessError("--methods is empty; give e.g. count")
    return methods


def parse_losses(text: str) -> tuple[str, ...]:
    losses = tuple(m.strip() for m in str(text).split(",") if m.strip())
    for m in losses:
        if m not in LOSSES:
            raise HarnessError(f"--loss: unknown loss backend {m!r}; choose from {', '.join(LOSSES)}")
    if not losses:
        raise HarnessError("--loss is empty; give e.g. torch or triton,torch")
    return losses


_D = RunConfig()


def make_run_config(*, corpus=_D.corpus, orders=_D.orders, methods=_D.methods, smoothing=_D.smoothing,
                    split=_D.split, seed=_D.seed, samples=_D.samples, device=_D.device, losses=_D.losses,
                    steps=_D.steps, lr=_D.lr, reg=_D.reg, batch_size=_D.batch_size, input=_D.input,
                    additive=_D.additive) -> RunConfig:
    """Validate raw CLI values into a RunConfig; every error names its flag."""
    if int(steps) < 1:
        raise HarnessError(f"--steps must be >= 1, got {steps}")
    if not (float(lr) > 0 and float(lr) != float("inf")):
        raise HarnessError(f"--lr must be a finite number > 0, got {lr}")
    if not (float(reg) >= 0 and float(reg) != float("inf")):
        raise HarnessError(f"--reg must be a finite number >= 0, got {reg}")
    if int(batch_size) < 0:
        raise HarnessError(f"--batch-size must be >= 0 (0 = full batch), got {batch_size}")
    if input not in INPUTS:
        raise HarnessError(f"--input {input!r} is unknown; choose from {', '.join(INPUTS)}")
    if input == "counts" and (additive or int(batch_size)):
        raise HarnessError("--input counts (sufficient statistics) trains full-batch table models only; drop --batch-size/--additive")
    if split not in SPLITS:
        raise HarnessError(f"--split {split!r} is unknown; use seeded (80/10/10 by unique item) or none")
    if int(samples) < 0:
        raise HarnessError(f"--samples must be >= 0, got {samples}")
    cfg = RunConfig(
        corpus=corpus,
        orders=parse_orders(orders) if isinstance(orders, str) else tuple(validate_order(int(n)) for n in orders),
        methods=parse_methods(methods) if isinstance(methods, str) else tuple(methods),
        smoothing=parse_smoothing(smoothing),
        split=split,
        seed=int(seed),
        samples=int(samples),
        device=device,
        losses=parse_losses(losses) if isinstance(losses, str) else tuple(losses),
        steps=int(steps),
        lr=float(lr),
        reg=float(reg),
        batch_size=int(batch_size),
        input=input,
        additive=bool(additive),
    )
    if cfg.smoothing == "auto" and cfg.split == "none":
        raise HarnessError("--smoothing auto tunes k on the dev split, which --split none does not have; give --smoothing K (the lecture's is 1)")
    return cfg
