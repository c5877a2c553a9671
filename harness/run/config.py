"""Run configuration: one frozen dataclass for a run's grid, built and validated in one place.

The same keys come from CLI flags (`--batch-size`) and from a TOML grid file (`batch_size`);
`make_run_config` validates both, and every error names the key and its flag.
"""
from __future__ import annotations

import math
import os
import stat
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch

import kernels
from harness.core.constants import LECTURE_SEED
from harness.data.corpus import DEFAULT_CORPUS
from harness.core.errors import HarnessError
from harness.models.families import (FAMILIES, MIX, NEURAL_METHODS, NEURAL_SCALARS, NEURAL_SWEEPS, SMOOTHING_NAMES, TUNED_K,
                                     TUNED_ON_DEV)
from harness.models.neural.common import NeuralSettings
from harness.models.smoothed import METHODS as SMOOTHED_METHODS

K_GRID = (0.0, 0.001, 0.003, 0.01, 0.03, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 3.0, 10.0)
METHODS = tuple(m for m in FAMILIES if m != MIX)  # the mixture is --mix's, made of the others
LOSSES = kernels.BACKENDS
INPUTS = ("table", "index", "onehot", "counts")
SPLITS = ("seeded", "none")
_NN = NeuralSettings()  # the neural families' defaults, written once there


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
    threads: int = 0  # CPU threads of torch (0 = torch's own, at most 8); results do not depend on it
    # how each configuration's samples are drawn (harness.evaluation.sampling.SamplingControls)
    temperature: float = 1.0
    top_k: int = 0
    prefix: str = ""
    exclude_train: bool = False
    # neural families (mlp, cnn, gru, transformer): a list sweeps, one configuration per combination
    nn_embd: tuple[int, ...] = (_NN.n_embd,)
    nn_embd2: tuple[int, ...] = (_NN.n_embd2,)
    nn_layer: tuple[int, ...] = (_NN.n_layer,)
    nn_head: tuple[int, ...] = (_NN.n_head,)
    nn_block_size: tuple[int, ...] = (_NN.block_size,)  # 0 = the longest train/dev name + 1
    nn_dropout: tuple[float, ...] = (_NN.dropout,)
    nn_weight_decay: tuple[float, ...] = (_NN.weight_decay,)
    nn_batch_size: tuple[int, ...] = (_NN.batch_size,)
    nn_lr: tuple[float, ...] = (_NN.lr,)
    nn_steps: int = _NN.steps
    nn_warmup: int = _NN.warmup_steps
    nn_eval_interval: int = _NN.eval_interval
    nn_patience: int = _NN.patience  # dev scores without a new best before stopping, 0 = never
    time_budget: float = _NN.time_budget_seconds  # seconds per configuration, 0 = none
    nn_compile: bool = _NN.compile  # torch.compile the model
    # ARPA files (e.g. lmplz's), each evaluated as one configuration of method arpa at the order it declares
    arpa: tuple[str, ...] = ()
    # one more configuration: the best count model and the best neural model mixed, λ tuned on dev by EM
    mix: bool = False


DEFAULTS = RunConfig()
FLAGS = {  # TOML key -> CLI flag, for messages
    "corpus": "--corpus", "orders": "--orders", "methods": "--methods", "smoothing": "--smoothing",
    "split": "--split", "seed": "--seed", "samples": "--samples", "device": "--device", "k_grid": "--k-grid",
    "losses": "--loss", "steps": "--steps", "lr": "--lr", "regs": "--reg", "batch_size": "--batch-size",
    "input": "--input", "additive": "--additive", "casefold": "--casefold", "min_char_count": "--min-char-count",
    "expand": "--expand", "max_memory": "--max-memory", "threads": "--threads",
    "temperature": "--temperature", "top_k": "--top-k", "prefix": "--prefix", "exclude_train": "--exclude-train",
    **{key: "--" + key.replace("_", "-") for key in (*NEURAL_SWEEPS, *NEURAL_SCALARS)},  # --nn-lr, --time-budget
    "arpa": "--arpa", "mix": "--mix",
}
K_MAX = 1e9  # add-k past this is the uniform distribution to float64's digits on any corpus we load
SEED_LIMIT = 2**64  # torch generators take seeds in [0, 2^64)
MAX_ORDER = 63  # V^(n-1) contexts must fit int64 ids for any vocabulary (V >= 2); the corpus's V is checked later
BATCH_MAX = 2**40
MAX_SAMPLES = 1_000_000  # names drawn at once: 1 M x 64 characters of int64 is 512 MB; more would exhaust memory first
MAX_STEPS = 10**8  # full-batch gradient steps: past this a run would not end in any time worth waiting
MAX_THREADS = 1024
# neural keys: (number kind, minimum, minimum excluded)
NEURAL_BOUNDS = {"nn_embd": (int, 1, False), "nn_embd2": (int, 1, False), "nn_layer": (int, 1, False),
                 "nn_head": (int, 1, False), "nn_block_size": (int, 0, False), "nn_dropout": (float, 0.0, False),
                 "nn_weight_decay": (float, 0.0, False), "nn_batch_size": (int, 1, False), "nn_lr": (float, 0.0, True),
                 "nn_steps": (int, 1, False), "nn_warmup": (int, 0, False), "nn_eval_interval": (int, 1, False),
                 "nn_patience": (int, 0, False), "time_budget": (float, 0.0, False)}


def _name(key: str) -> str:
    return f"{key} ({FLAGS[key]})"


def _as_list(key: str, value) -> list:
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",")]
        if "" in items[:-1] or (len(items) > 1 and items[-1] == ""):  # "2,,3", ",2", "2,": a slip, not a choice
            raise HarnessError(f"{_name(key)} has an empty item in {value!r}; separate values by single commas")
        return [v for v in items if v]
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def _number(key: str, value, kind=float, minimum=None, strict=False, maximum=None):
    """A number from a flag's text or a TOML value, without coercion: a whole-number key refuses
    2.9, "2.9" and true alike (TOML's true is not 1), a float key refuses true and non-finite values."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise HarnessError(f"{_name(key)} must be a {'whole ' if kind is int else ''}number, got {value!r}")
    if kind is int:
        if isinstance(value, float) or (isinstance(value, str) and not value.strip().lstrip("+-").isdigit()):
            raise HarnessError(f"{_name(key)} must be a whole number, got {value!r}")
        x = int(value)
    else:
        try:
            x = float(value)
        except ValueError:
            raise HarnessError(f"{_name(key)} must be a number, got {value!r}") from None
        if not math.isfinite(x):
            raise HarnessError(f"{_name(key)} must be a finite number, got {value!r}")
        x += 0.0  # -0 is stored as 0.0
    if minimum is not None and (x < minimum or (strict and x == minimum)):
        raise HarnessError(f"{_name(key)} must be {'>' if strict else '>='} {minimum}, got {value!r}")
    if maximum is not None and x > maximum:
        limit = "2^64 - 1" if maximum == SEED_LIMIT - 1 else (f"{maximum:,}" if isinstance(maximum, int) else f"{maximum:g}")
        raise HarnessError(f"{_name(key)} must be at most {limit}, got {value!r}")
    return x


def _distinct(key: str, values: tuple) -> tuple:
    """Grid axes list each value once: a repeated one would run (and report) the same configuration twice."""
    seen = set()
    for v in values:
        if v in seen:
            raise HarnessError(f"{_name(key)} lists {v!r} twice; give each value once")
        seen.add(v)
    return values


def _text(key: str, value) -> str:
    if not isinstance(value, str):
        raise HarnessError(f"{_name(key)} must be a string, got {value!r}")
    return value


def validate_seed(seed) -> int:
    """A seed torch's generators take: a whole number in [0, 2^64) (score and sample use it too)."""
    return _number("seed", seed, int, minimum=0, maximum=SEED_LIMIT - 1)


def _choice(key: str, value, choices) -> str:
    if value not in choices:
        raise HarnessError(f"{_name(key)}: unknown value {value!r}; choose from {', '.join(choices)}")
    return value


def _split(value) -> str:
    value = str(value)
    if value.startswith("files:"):
        from harness.data.splits import parse_split_files

        for path in parse_split_files(value):
            if path.is_dir():
                raise HarnessError(f"split (--split): {str(path)!r} is a directory; give a text or CSV file")
            if not path.exists():
                raise HarnessError(f"split (--split): file {str(path)!r} does not exist")
        return value
    return _choice("split", value, SPLITS + ("files:TRAIN,DEV,TEST",))


def validate_order(n) -> int:
    """An n-gram order: a whole number from 1 to MAX_ORDER (2.5, "2.5" and true are refused, not rounded)."""
    if isinstance(n, bool) or isinstance(n, float) or (isinstance(n, str) and not n.strip().lstrip("+-").isdigit()) \
            or not isinstance(n, (int, str)):
        raise HarnessError(f"order {n!r} must be a whole number, e.g. 2 for a bigram")
    n = int(n)
    if n < 1:
        raise HarnessError(f"order {n} is invalid: an n-gram order must be at least 1 (1 = unigram, 2 = bigram)")
    if n > MAX_ORDER:
        raise HarnessError(f"order {n} is too high: its V^{n - 1} contexts overflow 64-bit ids; give at most {MAX_ORDER} "
                           "(names need far less: order 6 already sees most names whole)")
    return n


def _order_of(n) -> int:
    try:
        return validate_order(n)
    except HarnessError as exc:
        raise HarnessError(f"orders (--orders): {exc}") from None


def parse_smoothing(value) -> str:
    """One smoothing spec: auto, kn, wb, interp, or a finite float k >= 0 (kept as text)."""
    if isinstance(value, str) and value.strip() in SMOOTHING_NAMES:
        return value.strip()
    k = _number("smoothing", value.strip() if isinstance(value, str) else value)
    if k < 0 or k > K_MAX:
        raise HarnessError(f"smoothing (--smoothing) {value!r} is invalid: k must be a finite number from 0 to {K_MAX:g} "
                           "(0 = no smoothing)")
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
    orders = _distinct("orders", tuple(_order_of(n) for n in _as_list("orders", v["orders"])))
    if not orders:
        raise HarnessError("orders (--orders) is empty; give e.g. 2,3")
    methods = _distinct("methods", tuple(_choice("methods", m, METHODS) for m in _as_list("methods", v["methods"])))
    losses = _distinct("losses", tuple(_choice("losses", m, LOSSES) for m in _as_list("losses", v["losses"])))
    smoothing = _distinct("smoothing", tuple(parse_smoothing(s) for s in _as_list("smoothing", v["smoothing"])))
    regs = _distinct("regs", tuple(_number("regs", r, minimum=0.0) for r in _as_list("regs", v["regs"])))
    k_grid = _distinct("k_grid", tuple(_number("k_grid", k, minimum=0.0, maximum=K_MAX) for k in _as_list("k_grid", v["k_grid"])))
    for key in ("corpus", "split", "device", "input", "max_memory"):
        _text(key, v[key])
    for key, seq in (("methods", methods), ("losses", losses), ("smoothing", smoothing), ("regs", regs), ("k_grid", k_grid)):
        if not seq:
            raise HarnessError(f"{_name(key)} is empty")
    _text("prefix", v["prefix"])
    for key in ("additive", "casefold", "expand", "exclude_train", "mix"):
        if not isinstance(v[key], bool):
            raise HarnessError(f"{_name(key)} must be true or false, got {v[key]!r}")
    cfg = RunConfig(
        corpus=str(v["corpus"]),
        orders=orders,
        methods=methods,
        smoothing=smoothing,
        split=_split(v["split"]),
        seed=validate_seed(v["seed"]),
        samples=_number("samples", v["samples"], int, minimum=0, maximum=MAX_SAMPLES),
        device=str(v["device"]),
        k_grid=k_grid,
        losses=losses,
        steps=_number("steps", v["steps"], int, minimum=1, maximum=MAX_STEPS),
        lr=_number("lr", v["lr"], minimum=0.0, strict=True),
        regs=regs,
        batch_size=_number("batch_size", v["batch_size"], int, minimum=0, maximum=BATCH_MAX),
        input=_choice("input", v["input"], INPUTS),
        additive=v["additive"],
        casefold=v["casefold"],
        min_char_count=_number("min_char_count", v["min_char_count"], int, minimum=0),
        expand=v["expand"],
        max_memory=str(v["max_memory"]),
        threads=_number("threads", v["threads"], int, minimum=0, maximum=MAX_THREADS),
        temperature=_number("temperature", v["temperature"], minimum=0.0, strict=True),
        top_k=_number("top_k", v["top_k"], int, minimum=0),
        prefix=str(v["prefix"]),
        exclude_train=v["exclude_train"],
        **neural_values(v),
        arpa=_distinct("arpa", tuple(str(a) for a in _as_list("arpa", v["arpa"]))),
        mix=v["mix"],
    )
    cfg = _with_arpa(cfg)
    from harness.core.memory import parse_bytes

    parse_bytes(cfg.max_memory, "max_memory (--max-memory)")  # a bad size fails here, before any work
    if cfg.expand and ("gradient" in cfg.methods or any(m in NEURAL_METHODS for m in cfg.methods)
                       or any(s in SMOOTHED_METHODS for s in cfg.smoothing)):
        raise HarnessError("expand (--expand) streams add-k count models only (methods count, smoothing auto or k); "
                           "the weighted corpus gives every other model the same data without expanding it")
    if cfg.input == "counts" and (cfg.additive or cfg.batch_size):
        raise HarnessError("input (--input) counts trains full-batch table models only (the exact sufficient-statistics step); drop batch_size/additive")
    no_dev = cfg.split == "none" or (cfg.split.startswith("files:") and cfg.split.count(",") == 0)
    if no_dev and "count" in cfg.methods and any(s in TUNED_ON_DEV for s in cfg.smoothing):
        raise HarnessError("smoothing (--smoothing) auto/interp tunes on the dev split, which this --split does not have; give a number k (the lecture's is 1) or kn/wb")
    if cfg.mix:
        _check_mix(cfg, no_dev)
    return cfg


def _check_mix(cfg: RunConfig, no_dev: bool) -> None:
    """--mix needs what it mixes, and a dev split to tune λ on: refused before any training otherwise."""
    if "count" not in cfg.methods:
        raise HarnessError("mix (--mix) mixes the run's best count model with its best neural one, but methods (--methods) "
                           "has no count; add count (e.g. --methods count,mlp --smoothing kn)")
    if not any(m in NEURAL_METHODS for m in cfg.methods):
        raise HarnessError("mix (--mix) mixes the run's best count model with its best neural one, but methods (--methods) "
                           f"has no neural family; add one of {', '.join(NEURAL_METHODS)}")
    if no_dev:
        raise HarnessError("mix (--mix) tunes its weight on the dev split, which this --split does not have; use seeded or files:TRAIN,DEV,TEST")


def neural_values(v: dict) -> dict:
    """The neural keys of raw values, validated: each swept key a non-empty list, each scalar one number."""
    if not isinstance(v["nn_compile"], bool):
        raise HarnessError(f"{_name('nn_compile')} must be true or false, got {v['nn_compile']!r}")
    out = {"nn_compile": v["nn_compile"]}
    for key, (kind, minimum, strict) in NEURAL_BOUNDS.items():
        if key in NEURAL_SWEEPS:
            out[key] = tuple(_number(key, x, kind, minimum=minimum, strict=strict) for x in _as_list(key, v[key]))
            if not out[key]:
                raise HarnessError(f"{_name(key)} is empty")
        else:
            out[key] = _number(key, v[key], kind, minimum=minimum, strict=strict)
    if any(d >= 1.0 for d in out["nn_dropout"]):
        raise HarnessError(f"{_name('nn_dropout')} must be below 1, got {max(out['nn_dropout'])!r}")
    if "transformer" in _as_list("methods", v["methods"]):
        bad = [(e, h) for e in out["nn_embd"] for h in out["nn_head"] if e % h]
        if bad:
            raise HarnessError(f"{_name('nn_embd')} {bad[0][0]} is not a multiple of {_name('nn_head')} {bad[0][1]}: "
                               "a transformer splits its embedding into equal heads")
    return out
def _with_arpa(cfg: RunConfig) -> RunConfig:
    """ARPA files join the grid as method arpa; each must declare one of the run's orders. Each is read whole
    here (numpy, 0.1 s for 70k n-grams): a truncated or malformed file is refused before anything is fitted,
    not found broken after the rest of the grid has trained."""
    from dataclasses import replace

    from harness.models.arpa_text import read_arpa_tables

    if not cfg.arpa:
        if "arpa" in cfg.methods:
            raise HarnessError("methods (--methods) arpa needs ARPA files: give arpa (--arpa) FILE[,FILE]")
        return cfg
    for path in cfg.arpa:
        order = read_arpa_tables(path).order
        if order not in cfg.orders:
            raise HarnessError(f"arpa (--arpa) {path!r} is an order-{order} model, not among orders (--orders) {list(cfg.orders)}; add {order}")
    return cfg if "arpa" in cfg.methods else replace(cfg, methods=(*cfg.methods, "arpa"))


def load_grid_file(path: str | Path) -> dict:
    """Raw values from a TOML grid file (keys as in RunConfig), validated later with the flags."""
    path = Path(path)
    if path.is_dir():
        raise HarnessError(f"grid file {str(path)!r} is a directory; give a TOML file with keys like orders = [2, 3]")
    if not path.exists():
        raise HarnessError(f"grid file {str(path)!r} does not exist; give a TOML file with keys like orders = [2, 3]")
    try:
        data = tomllib.loads(read_text_nonblocking(path))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise HarnessError(f"grid file {str(path)!r} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise HarnessError(f"cannot read grid file {str(path)!r}: {exc.strerror or exc}") from None
    data = data.get("run", data)  # a [run] table or top-level keys
    nested = [k for k, val in data.items() if isinstance(val, dict)]
    if nested:
        raise HarnessError(f"grid file {str(path)!r}: unknown table [{nested[0]}]; put the keys at the top level or under [run]")
    return data


def read_text_nonblocking(path: Path) -> str:
    """A file's UTF-8 text; also a pipe such as bash's `<(...)` (/dev/fd/N). A named FIFO nobody
    writes to is refused instead of waited on forever (opened non-blocking, then read blocking)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        fifo = stat.S_ISFIFO(os.fstat(fd).st_mode)
        if fifo:
            os.set_blocking(fd, True)
        with os.fdopen(fd, "rb") as handle:
            fd = None
            data = handle.read()
    finally:
        if fd is not None:
            os.close(fd)
    if fifo and not data:
        raise HarnessError(f"{str(path)!r} is a pipe that gave no text (nothing writes to it); give a file or <(command)")
    return data.decode("utf-8-sig")  # a byte-order mark (Windows editors) is not TOML's business


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
