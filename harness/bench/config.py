"""The loss and training benchmarks' configuration: the grid, the backend variants, BenchConfig.

`bench` (and `bench --suite loss|train`) options become one frozen BenchConfig through
`make_bench_config`, which validates every field; the loss suite, the training suite and the
static report (which compiles the GPU grid defined here) read it.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import torch

from harness.bench.common import MAX_ELEMENTS, out_dir_for, parse_size, parse_threads, resolve_device, split_list
from harness.core.constants import LECTURE_SEED
from harness.core.errors import HarnessError

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
PASSES = ("fwd", "fwd+bwd")
SUITES = ("loss", "train")


@dataclass(frozen=True)
class Variant:
    """One row label of the benchmark: which problem, which kernels backend, in place or not."""

    problem: str  # "logits": loss of an (N, V) tensor; "table": loss of table[context], table (C, V)
    backend: str  # a kernels backend, or "torch-compile" for torch.compile(F.cross_entropy)
    inplace: bool
    what: str


# The order here is the order of rows in the report. The first variant of each problem is its
# baseline (speed-ups are relative to it).
VARIANTS = {
    "torch": Variant("logits", "torch", False, "eager F.cross_entropy (the baseline)"),
    "torch-compile": Variant("logits", "torch-compile", False,
                             "torch.compile(F.cross_entropy), default settings (automatic dynamic shapes)"),
    "compiled": Variant("logits", "compiled", False,
                        "ours: one-pass loss and gradient through torch.compile, gradient into a reused buffer"),
    "compiled-inplace": Variant("logits", "compiled", True, "ours compiled, gradient written over the logits"),
    "triton": Variant("logits", "triton", False, "ours: fused Triton kernel, gradient into a new tensor"),
    "triton-inplace": Variant("logits", "triton", True, "ours: fused Triton kernel, gradient written over the logits"),
    "manual": Variant("logits", "manual", False, "the lecture's exp / normalise / log / mean"),
    "table-torch": Variant("table", "torch", False, "F.cross_entropy(table[context]) (the table baseline)"),
    "table-compiled": Variant("table", "compiled", False, "kernels.table_cross_entropy, compiled backend"),
    "table-triton": Variant("table", "triton", False, "kernels.table_cross_entropy, Triton backend"),
}

CPU_ELEMENTS = 2**24  # default CPU grid: N x V = 2^24 (64 MiB of fp32 logits) for each V
CPU_VS = (27, 729, 4096, 32768)
QUICK_CPU_SHAPES = ((2**18 // 729, 729),)  # --quick on CPU: one shape, every backend once (README)
QUICK_REPETITIONS = 10  # --quick's timed repetitions, unless --repetitions is given
QUICK_PASSES = ("fwd+bwd",)  # --quick's passes, unless --passes is given: each backend compiles once
# --quick's CPU backends, unless --backends is given: torch.compile(F.cross_entropy)'s first compile on a
# machine took 32-59 s of a cold --quick's 82-109 s here, past the minute --quick is for
QUICK_CPU_BACKENDS = tuple(name for name in VARIANTS if name != "torch-compile")
GPU_NS = tuple(2**k for k in range(12, 25))
GPU_VS = (27, 4096, 32768, 729, 131072)  # the headline vocabularies first (see run_bench's loop)


@dataclass(frozen=True)
class BenchConfig:
    """Everything one benchmark run needs; built and validated by `make_bench_config`."""

    device: str = "auto"  # auto, cpu, cuda or cuda:<i>; resolved to a concrete device by make_bench_config
    shapes: tuple[tuple[int, int], ...] = ()  # (N, V) pairs; empty = the device's default grid
    dtypes: tuple[str, ...] = ("fp32", "bf16")
    backends: tuple[str, ...] = tuple(VARIANTS)
    passes: tuple[str, ...] = PASSES
    repetitions: int = 20  # timed repetitions per measurement (at least)
    warmup: int = 3  # untimed calls before timing (after the verification call)
    quick: bool = False
    out_dir: Path | None = None  # None = reports/<run_name>
    run_name: str = ""
    seed: int = LECTURE_SEED
    table_contexts: int = 729  # C, rows of the table for the table_cross_entropy rows (27^2: a trigram's contexts)
    max_logits_mib: float = 0.0  # shapes with bigger logits are skipped; 0 = the device's default
    copy_mib: int = 1024  # size of the copy that measures the device's bandwidth
    max_seconds: float = 0.0  # stop timing (rows skipped, report still written) after this; 0 = no limit
    keep_going: bool = False  # a verification mismatch or backend error becomes a failed row instead of stopping
    suites: tuple[str, ...] = ("loss", "train")  # the loss-kernel benchmark, the training benchmark
    corpus: str = "ssa"  # training benchmark: corpus spec (a built-in name or a file of one name per line)
    orders: tuple[int, ...] = (2, 3)  # training benchmark: n-gram orders
    train_steps: int = 20  # training benchmark: full-batch steps per timed fit
    train_repeats: int = 3  # training benchmark: timed fits per variant (the median is reported)
    threads: int = 1  # torch's intra-op CPU threads while measuring (make_bench_config resolves --threads auto)
    threads_how: str = "given"  # how `threads` was chosen: "given", or "auto: <cores> cores, load <1 5 15 min>"


DEFAULTS = BenchConfig()  # the options' defaults (main.add_bench_arguments reads them here)


def default_shapes(device: torch.device, quick: bool, ns: list[int], vs: list[int]) -> list[tuple[int, int]]:
    """The grid: explicit N and V cross; otherwise the device's default (CPU: N x V = 2^24 for each V of
    CPU_VS; CUDA: every N of GPU_NS for each V of GPU_VS; with --quick, QUICK_CPU_SHAPES on CPU and a
    smaller cross on CUDA)."""
    if device.type == "cuda":
        vs = vs or ([27, 4096, 32768] if quick else list(GPU_VS))
        ns = ns or ([2**12, 2**16, 2**20] if quick else list(GPU_NS))
        return [(n, v) for v in vs for n in ns]
    if quick and not ns and not vs:
        return list(QUICK_CPU_SHAPES)
    vs = vs or list(CPU_VS)
    if ns:
        return [(n, v) for v in vs for n in ns]
    elements = 2**18 if quick else CPU_ELEMENTS
    return [(max(1, elements // v), v) for v in vs]


def make_bench_config(args: argparse.Namespace) -> BenchConfig:
    """Turn parsed `bench` arguments into a BenchConfig, validating every field (HarnessError names it)."""
    device = resolve_device(args.device)
    ns = list(dict.fromkeys(parse_size(x, "--n") for x in split_list(args.n)))
    vs = list(dict.fromkeys(parse_size(x, "--v") for x in split_list(args.v)))
    if any(v < 2 for v in vs):
        raise HarnessError("--v: a vocabulary needs at least 2 tokens")
    shapes = tuple(default_shapes(device, args.quick, ns, vs))
    too_big = [(n, v) for n, v in shapes if n * v > MAX_ELEMENTS]
    if too_big:
        n, v = too_big[0]
        raise HarnessError(f"--n/--v: N x V = {n:,} x {v:,} is more than 2^{MAX_ELEMENTS.bit_length() - 1} elements")
    threads, threads_how = parse_threads(args.threads, "auto")
    repetitions = args.repetitions if args.repetitions is not None else (
        QUICK_REPETITIONS if args.quick else DEFAULTS.repetitions)

    dtypes = tuple(dict.fromkeys(split_list(args.dtype))) if args.dtype else (("fp32",) if args.quick else DEFAULTS.dtypes)
    bad = [d for d in dtypes if d not in DTYPES]
    if bad or not dtypes:
        raise HarnessError(f"--dtype: unknown {', '.join(bad) or '(none given)'}; choose among {', '.join(DTYPES)}")
    if args.backends is None:
        backends = QUICK_CPU_BACKENDS if args.quick and device.type == "cpu" else tuple(VARIANTS)
    else:
        backends = tuple(dict.fromkeys(split_list(args.backends)))
    if backends == ("all",):
        backends = tuple(VARIANTS)
    bad = [b for b in backends if b not in VARIANTS]
    if bad or not backends:
        raise HarnessError(f"--backends: unknown {', '.join(bad) or '(none given)'}; choose among all, {', '.join(VARIANTS)}")
    # keep the report's row order, whatever order the user typed
    backends = tuple(b for b in VARIANTS if b in backends)
    passes = tuple(dict.fromkeys(split_list(args.passes))) if args.passes else (
        QUICK_PASSES if args.quick else DEFAULTS.passes)
    bad = [p for p in passes if p not in PASSES]
    if bad or not passes:
        raise HarnessError(f"--passes: unknown {', '.join(bad) or '(none given)'}; choose among {', '.join(PASSES)}")
    passes = tuple(p for p in PASSES if p in passes)

    for option, value, minimum, why in (("--repetitions", repetitions, 1, " (20 or more for a report)"),
                                        ("--warmup", args.warmup, 0, ""),
                                        ("--table-contexts", args.table_contexts, 1, ""),
                                        ("--max-logits-mib", args.max_logits_mib, 0, " (0 = the device's default)"),
                                        ("--copy-mib", args.copy_mib, 1, ""),
                                        ("--max-seconds", args.max_seconds, 0, " (0 = no limit)"),
                                        ("--train-steps", args.train_steps, 1, ""),
                                        ("--train-repeats", args.train_repeats, 1, "")):
        if value < minimum:
            raise HarnessError(f"{option} must be >= {minimum}{why}, got {value}")

    suites = tuple(dict.fromkeys(split_list(args.suite))) if args.suite else (("loss",) if args.quick else DEFAULTS.suites)
    bad = [x for x in suites if x not in SUITES]
    if bad or not suites:
        raise HarnessError(f"--suite: unknown {', '.join(bad) or '(none given)'}; choose among {', '.join(SUITES)}, or scoring "
                           "alone (--counting, --smoothing and --static are flags of their own)")
    orders = tuple(dict.fromkeys(parse_size(x, "--orders") for x in (split_list(args.orders) or map(str, DEFAULTS.orders))))
    if not orders or any(o < 2 or o > 4 for o in orders):
        raise HarnessError(f"--orders: the training benchmark takes orders 2 to 4 (a table of V^(n-1) rows), got {args.orders}")
    max_logits_mib = args.max_logits_mib or (2048.0 if device.type == "cuda" else 1024.0)
    copy_mib = args.copy_mib
    if args.quick and copy_mib == DEFAULTS.copy_mib:
        copy_mib = 256
    out_dir = out_dir_for(args.out, "bench", device)
    run_name = out_dir.name
    return BenchConfig(
        device=str(device), shapes=shapes, dtypes=dtypes, backends=backends, passes=passes,
        repetitions=repetitions, warmup=args.warmup, quick=args.quick, out_dir=out_dir, run_name=run_name,
        seed=args.seed, table_contexts=args.table_contexts, max_logits_mib=max_logits_mib, copy_mib=copy_mib,
        max_seconds=args.max_seconds, keep_going=args.keep_going, suites=suites, corpus=args.corpus, orders=orders,
        train_steps=args.train_steps, train_repeats=args.train_repeats, threads=threads, threads_how=threads_how,
    )

