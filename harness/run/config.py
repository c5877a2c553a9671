"""Run configuration: one frozen dataclass for a run's grid, built and validated in one place.

The same keys come from CLI flags (`--batch-size`) and from a TOML grid file (`batch_size`);
`make_run_config` validates both, and every error names the key and its flag.
"""
from __future__ import annotations

import math
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch

import kernels
from harness.core.constants import LECTURE_SEED
from harness.data.corpus import DEFAULT_CORPUS
from harness.core.errors import HarnessError
from harness.models.families import FAMILIES, SMOOTHING_NAMES, TUNED_K, TUNED_ON_DEV
from harness.models.smoothed import METHODS as SMOOTHED_METHODS

K_GRID = (0.0, 0.001, 0.003, 0.01, 0.03, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 3.0, 10.0)
METHODS = tuple(FAMILIES)
LOSSES = kernels.BACKENDS
INPUTS = ("table", "index", "onehot", "counts")
SPLITS = ("seeded", "none")


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs; the defaults here are the CLI's and the TOML file's defaults."""

    corpus: str = DEFAULT_CORPUS
    orders: tuple[int, ...] = (2, 3)
    methods: tuple[str, ...] = ("count",)
    smoothing: tuple[str, ...] = (TUNED_K,)  # per count configuration: auto (add-k tuned on dev), k >= 0, kn, wb, interp
    split: str = "seeded"
    seed: int = LECTURE_SEED
    samples: int = 20
    device: str = "auto"
    k_grid: tuple[float, ...] = field(default=K_GRID)
    # gradient models (the lecture's defaults)
    losses: tuple[str, ...] = ("torch",)
    steps: int = 100
    lr: float = 50.0
    regs: tuple[float, ...] = (0.01,)
    batch_size: int = 0
    input: str = "table"
    additive: bool = False
    # corpus options and scale
    casefold: bool = False  # str.casefold every item (merging items that become equal)
    min_char_count: int = 0  # drop items with a character seen fewer than this many times
    expand: bool = False  # every copy of a weighted item a row, counted and scored in chunks
    max_memory: str = "auto"  # byte budget of chunked passes, e.g. 4G; auto = a quarter of the free device memory
    # ARPA files (e.g. lmplz's), each evaluated as one configuration of method arpa at the order it declares
    arpa: tuple[str, ...] = ()


DEFAULTS = RunConfig()
FLAGS = {  # TOML key -> CLI flag, for messages
    "corpus": "--corpus", "orders": "--orders", "methods": "--methods", "smoothing": "--smoothing",
    "split": "--split", "seed": "--seed", "samples": "--samples", "device": "--device", "k_grid": "--k-grid",
    "losses": "--loss", "steps": "--steps", "lr": "--lr", "regs": "--reg", "batch_size": "--batch-size",
    "input": "--input", "additive": "--additive", "casefold": "--casefold", "min_char_count": "--min-char-count",
    "expand": "--expand", "max_memory": "--max-memory", "arpa": "--arpa",
}


def _name(key: str) -> str:
    return f"{key} ({FLAGS[key]})"


def _as_list(key: str, value) -> list:
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def _number(key: str, value, kind=float, minimum=None, strict=False):
    try:
        x = kind(value)
    except (TypeError, ValueError):
        raise HarnessError(f"{_name(key)} must be a number, got {value!r}") from None
    if isinstance(x, float) and not math.isfinite(x):
        raise HarnessError(f"{_name(key)} must be a finite number, got {value!r}")
    if minimum is not None and (x < minimum or (strict and x == minimum)):
        raise HarnessError(f"{_name(key)} must be {'>' if strict else '>='} {minimum}, got {value!r}")
    return x


def _choice(key: str, value, choices) -> str:
    if value not in choices:
        raise HarnessError(f"{_name(key)}: unknown value {value!r}; choose from {', '.join(choices)}")
    return value


def _split(value) -> str:
    value = str(value)
    if value.startswith("files:"):
        from harness.data.splits import parse_split_files

        for path in parse_split_files(value):
            if not path.is_file():
                raise HarnessError(f"split (--split): file {str(path)!r} does not exist")
        return value
    return _choice("split", value, SPLITS + ("files:TRAIN,DEV,TEST",))


def validate_order(n) -> int:
    try:
        n = int(n)
    except (TypeError, ValueError):
        raise HarnessError(f"order {n!r} must be an integer, e.g. 2 for a bigram") from None
    if n < 1:
        raise HarnessError(f"order {n} is invalid: an n-gram order must be at least 1 (1 = unigram, 2 = bigram)")
    return n


def parse_smoothing(value) -> str:
    """One smoothing spec: auto, kn, wb, interp, or a finite float k >= 0 (kept as text)."""
    text = str(value).strip()
    if text in SMOOTHING_NAMES:
        return text
    k = _number("smoothing", text)
    if k < 0:
        raise HarnessError(f"smoothing (--smoothing) {text!r} is invalid: k must be a finite number >= 0 (0 = no smoothing)")
    return repr(k)


def make_run_config(values: dict) -> RunConfig:
    """Validate raw values (strings from flags or typed values from TOML) into a RunConfig.

    Missing keys take RunConfig's defaults; unknown keys are errors naming the key.
    """
    known = {f.name for f in fields(RunConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise HarnessError(f"unknown configuration key {unknown[0]!r}; known keys: {', '.join(sorted(known))}")
    v = {**asdict(DEFAULTS), **{k: val for k, val in values.items() if val is not None}}
    orders = tuple(validate_order(n) for n in _as_list("orders", v["orders"]))
    if not orders:
        raise HarnessError("orders (--orders) is empty; give e.g. 2,3")
    methods = tuple(_choice("methods", m, METHODS) for m in _as_list("methods", v["methods"]))
    losses = tuple(_choice("losses", m, LOSSES) for m in _as_list("losses", v["losses"]))
    smoothing = tuple(parse_smoothing(s) for s in _as_list("smoothing", v["smoothing"]))
    regs = tuple(_number("regs", r, minimum=0.0) for r in _as_list("regs", v["regs"]))
    k_grid = tuple(_number("k_grid", k, minimum=0.0) for k in _as_list("k_grid", v["k_grid"]))
    for key, seq in (("methods", methods), ("losses", losses), ("smoothing", smoothing), ("regs", regs), ("k_grid", k_grid)):
        if not seq:
            raise HarnessError(f"{_name(key)} is empty")
    for key in ("additive", "casefold", "expand"):
        if not isinstance(v[key], bool):
            raise HarnessError(f"{_name(key)} must be true or false, got {v[key]!r}")
    cfg = RunConfig(
        corpus=str(v["corpus"]),
        orders=orders,
        methods=methods,
        smoothing=smoothing,
        split=_split(v["split"]),
        seed=_number("seed", v["seed"], int),
        samples=_number("samples", v["samples"], int, minimum=0),
        device=str(v["device"]),
        k_grid=k_grid,
        losses=losses,
        steps=_number("steps", v["steps"], int, minimum=1),
        lr=_number("lr", v["lr"], minimum=0.0, strict=True),
        regs=regs,
        batch_size=_number("batch_size", v["batch_size"], int, minimum=0),
        input=_choice("input", v["input"], INPUTS),
        additive=v["additive"],
        casefold=v["casefold"],
        min_char_count=_number("min_char_count", v["min_char_count"], int, minimum=0),
        expand=v["expand"],
        max_memory=str(v["max_memory"]),
        arpa=tuple(str(a) for a in _as_list("arpa", v["arpa"])),
    )
    cfg = _with_arpa(cfg)
    from harness.core.memory import parse_bytes

    parse_bytes(cfg.max_memory, "max_memory (--max-memory)")  # a bad size fails here, before any work
    if cfg.expand and ("gradient" in cfg.methods or any(s in SMOOTHED_METHODS for s in cfg.smoothing)):
        raise HarnessError("expand (--expand) streams add-k count models only (methods count, smoothing auto or k); "
                           "the weighted corpus gives every other model the same data without expanding it")
    if cfg.input == "counts" and (cfg.additive or cfg.batch_size):
        raise HarnessError("input (--input) counts trains full-batch table models only (the exact sufficient-statistics step); drop batch_size/additive")
    no_dev = cfg.split == "none" or (cfg.split.startswith("files:") and cfg.split.count(",") == 0)
    if no_dev and "count" in cfg.methods and any(s in TUNED_ON_DEV for s in cfg.smoothing):
        raise HarnessError("smoothing (--smoothing) auto/interp tunes on the dev split, which this --split does not have; give a number k (the lecture's is 1) or kn/wb")
    return cfg


def _with_arpa(cfg: RunConfig) -> RunConfig:
    """ARPA files join the grid as method arpa; each must declare one of the run's orders."""
    from dataclasses import replace

    from harness.models.arpa import arpa_order

    if not cfg.arpa:
        if "arpa" in cfg.methods:
            raise HarnessError("methods (--methods) arpa needs ARPA files: give arpa (--arpa) FILE[,FILE]")
        return cfg
    for path in cfg.arpa:
        order = arpa_order(path)
        if order not in cfg.orders:
            raise HarnessError(f"arpa (--arpa) {path!r} is an order-{order} model, not among orders (--orders) {list(cfg.orders)}; add {order}")
    return cfg if "arpa" in cfg.methods else replace(cfg, methods=(*cfg.methods, "arpa"))


def load_grid_file(path: str | Path) -> dict:
    """Raw values from a TOML grid file (keys as in RunConfig), validated later with the flags."""
    path = Path(path)
    if not path.is_file():
        raise HarnessError(f"grid file {str(path)!r} does not exist; give a TOML file with keys like orders = [2, 3]")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise HarnessError(f"grid file {str(path)!r} is not valid TOML: {exc}") from None
    data = data.get("run", data)  # a [run] table or top-level keys
    nested = [k for k, val in data.items() if isinstance(val, dict)]
    if nested:
        raise HarnessError(f"grid file {str(path)!r}: unknown table [{nested[0]}]; put the keys at the top level or under [run]")
    return data


def grid_toml(cfg: RunConfig) -> str:
    """The effective grid as TOML, written into every run folder so the run can be repeated exactly."""
    lines = ["# the effective grid of this run: python -m harness run --config grid.toml repeats it", "[run]"]
    for f in fields(RunConfig):
        val = getattr(cfg, f.name)
        lines.append(f"{f.name} = {_toml_value(val)}")
    return "\n".join(lines) + "\n"


def _toml_value(val) -> str:
    if isinstance(val, bool):
        return "true" if val else "false"
    if isinstance(val, (int, float)):
        return repr(val)
    if isinstance(val, str):
        return '"' + val.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return "[" + ", ".join(_toml_value(x) for x in val) + "]"


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
