"""`python -m harness bench`: the loss backends against eager F.cross_entropy, measured and verified.

For every shape (N rows, vocabulary V) and dtype of the grid, and every backend variant, the
benchmark first checks the variant's loss and gradient against eager `F.cross_entropy` (in fp32)
on the very tensors it is about to time (a mismatch fails the run), then times forward and
forward+backward: `triton.testing.do_bench` with quantiles on CUDA (it clears L2 between
repetitions), `torch.utils.benchmark` on CPU. Each measurement becomes one row of a long-format
table with its provenance; bench.md and bench.png are rendered from the saved bench.csv.

Bytes that must move (what GB/s counts):
    forward:           read the logits once, read the targets, write the loss
    forward+backward:  the same, plus write the gradient once (N x V)
The device's own ceiling is measured in the same run by a large device-to-device copy
(bytes read + bytes written), and every GB/s is also given as a fraction of it.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

import kernels
from harness.core.env import environment
from harness.run.config import resolve_device  # noqa: F401 - also used by the other bench suites
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
BASELINE = {"logits": "torch", "table": "table-torch"}
COMPILING = ("torch-compile", "compiled", "triton")  # backends whose first call on a shape may compile

# Verification tolerances against eager F.cross_entropy in the same dtype. Gradient entries are
# about 1/N, so their absolute tolerance is relative to the largest entry of the reference.
TOLERANCES = {  # dtype: (loss rtol, loss atol, grad rtol, grad atol as a fraction of max |grad|)
    "fp32": (1e-4, 1e-5, 1e-3, 1e-4),
    "bf16": (2e-2, 2e-2, 4e-2, 2e-2),
    "fp16": (5e-3, 5e-3, 1e-2, 5e-3),
}

CPU_ELEMENTS = 2**24  # default CPU grid: N x V = 2^24 (64 MiB of fp32 logits) for each V
CPU_VS = (27, 729, 4096, 32768)
GPU_NS = tuple(2**k for k in range(12, 25))
GPU_VS = (27, 4096, 32768, 729, 131072)  # the headline vocabularies first (see run_bench's loop)
MEMORY_FACTOR = 8  # device memory a shape needs, in multiples of its logits (clones, gradients, manual's temporaries)

CSV_COLUMNS = [
    "run", "backend", "problem", "pass", "dtype", "N", "V", "C",
    "status", "note", "verified", "loss_err", "grad_err",
    "median_ms", "p20_ms", "p80_ms", "reps", "bytes", "gbps", "copy_gbps", "frac_of_copy",
    "speedup_vs_eager", "peak_extra_mib", "compile_s",
    "device", "device_name", "driver", "machine", "torch", "triton", "python", "git_commit", "timestamp",
]


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
    seed: int = 2147483647
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


_DEFAULTS = BenchConfig()


# ---------------------------------------------------------------------------------------------
# configuration


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    """The `bench` subcommand's options; defaults come from BenchConfig."""
    p = parser
    p.add_argument("--device", default=_DEFAULTS.device, help="auto, cpu or cuda (default %(default)s)")
    p.add_argument("--quick", action="store_true", help="a small grid (under a minute on CPU)")
    p.add_argument("--out", default=None, help="report folder (default reports/bench-<device>-<UTC time>)")
    p.add_argument("--n", nargs="+", default=None, metavar="N",
                   help="rows N, comma or space separated, 2^k allowed (default: the device's grid)")
    p.add_argument("--v", nargs="+", default=None, metavar="V", help="vocabulary sizes V (default: the device's grid)")
    p.add_argument("--dtype", nargs="+", default=None, metavar="DTYPE",
                   help=f"dtypes among {', '.join(DTYPES)} (default {','.join(_DEFAULTS.dtypes)}; fp32 with --quick)")
    p.add_argument("--backends", nargs="+", default=[",".join(_DEFAULTS.backends)], metavar="NAME",
                   help="backend variants (default: all): " + ", ".join(VARIANTS))
    p.add_argument("--passes", nargs="+", default=[",".join(_DEFAULTS.passes)], metavar="PASS",
                   help="fwd and/or fwd+bwd (default %(default)s)")
    p.add_argument("--repetitions", type=int, default=_DEFAULTS.repetitions,
                   help="timed repetitions per measurement, after warm-up (default %(default)s)")
    p.add_argument("--warmup", type=int, default=_DEFAULTS.warmup, help="untimed warm-up calls (default %(default)s)")
    p.add_argument("--seed", type=int, default=_DEFAULTS.seed, help="seed of the random logits (default %(default)s)")
    p.add_argument("--table-contexts", type=int, default=_DEFAULTS.table_contexts,
                   help="rows C of the table for the table_cross_entropy rows (default %(default)s)")
    p.add_argument("--max-logits-mib", type=float, default=_DEFAULTS.max_logits_mib,
                   help="skip shapes whose logits exceed this many MiB (default: 2048 on CUDA, 1024 on CPU)")
    p.add_argument("--copy-mib", type=int, default=_DEFAULTS.copy_mib,
                   help="MiB copied to measure the device's bandwidth (default %(default)s; 256 with --quick)")
    p.add_argument("--max-seconds", type=float, default=_DEFAULTS.max_seconds,
                   help="time budget: measurements after it are skipped, the report is still written (default: none)")
    p.add_argument("--keep-going", action="store_true",
                   help="record a verification mismatch or a backend error as a failed row and go on (exit 1)")
    p.add_argument("--suite", nargs="+", default=None, metavar="SUITE",
                   help="loss and/or train (default loss,train; loss with --quick)")
    p.add_argument("--corpus", default=_DEFAULTS.corpus,
                   help="training benchmark corpus: built-in name or file path (default %(default)s)")
    p.add_argument("--orders", nargs="+", default=None, metavar="ORDER",
                   help=f"training benchmark n-gram orders (default {','.join(map(str, _DEFAULTS.orders))}; "
                        "with --counting 2,3,4,5; with --smoothing 2,3,4)")
    p.add_argument("--train-steps", type=int, default=_DEFAULTS.train_steps,
                   help="training benchmark: full-batch steps per timed fit (default %(default)s)")
    p.add_argument("--train-repeats", type=int, default=_DEFAULTS.train_repeats,
                   help="training benchmark: timed fits per variant, median reported (default %(default)s)")
    from harness.bench.counting import add_counting_arguments

    add_counting_arguments(p)
    from harness.bench.smoothing import add_smoothing_arguments

    add_smoothing_arguments(p)
    p.add_argument("--static", action="store_true",
                   help="compile every Triton kernel configuration for GPUs and report registers, spills, occupancy "
                        "and load widths (no GPU needed, nothing timed)")
    p.add_argument("--arch", default="sm_80,sm_90", help="with --static: architectures, comma separated (default %(default)s)")


def parse_orders(values: list[str] | None, default: tuple[int, ...]) -> tuple[int, ...]:
    """--orders of the counting and smoothing suites: whole numbers >= 1, comma or space separated,
    duplicates dropped in order; `default` when none are given."""
    given = ",".join(values or [])
    if not given:
        return default
    try:
        orders = tuple(dict.fromkeys(int(x) for x in re.split(r"[,\s]+", given.strip()) if x))
    except ValueError:
        raise HarnessError(f"--orders: {given!r} is not a list of whole numbers, e.g. 2,3,4") from None
    if not orders or any(o < 1 for o in orders):
        raise HarnessError(f"--orders: orders must be >= 1, got {given!r}")
    return orders


def _split_list(values: list[str] | None) -> list[str]:
    if values is None:
        return []
    return [item for value in values for item in re.split(r"[,\s]+", value.strip()) if item]


def _parse_size(text: str, option: str) -> int:
    """'4096', '2^12' or '2**12' -> int; anything else is the user's mistake."""
    m = re.fullmatch(r"(\d+)\s*(?:\^|\*\*)\s*(\d+)", text)
    try:
        value = int(m.group(1)) ** int(m.group(2)) if m else int(text)
    except ValueError:
        raise HarnessError(f"{option}: {text!r} is not a whole number (write e.g. 4096 or 2^12)") from None
    if value < 1:
        raise HarnessError(f"{option}: sizes must be >= 1, got {value}")
    return value


def device_kind(device: torch.device) -> str:
    """A short name for run folders: 'cpu', or the GPU's model such as 'h100'."""
    if device.type != "cuda":
        return "cpu"
    words = [w for w in re.split(r"[^a-z0-9]+", torch.cuda.get_device_name(device).lower()) if w and w != "nvidia"]
    return words[0] if words else "cuda"


def default_shapes(device: torch.device, quick: bool, ns: list[int], vs: list[int]) -> list[tuple[int, int]]:
    """The grid: explicit N and V cross; otherwise the device's default (see the module docstring)."""
    if device.type == "cuda":
        vs = vs or ([27, 4096, 32768] if quick else list(GPU_VS))
        ns = ns or ([2**12, 2**16, 2**20] if quick else list(GPU_NS))
        return [(n, v) for v in vs for n in ns]
    vs = vs or ([27, 729, 4096] if quick else list(CPU_VS))
    if ns:
        return [(n, v) for v in vs for n in ns]
    elements = 2**18 if quick else CPU_ELEMENTS
    return [(max(1, elements // v), v) for v in vs]


def make_bench_config(args: argparse.Namespace) -> BenchConfig:
    """Turn parsed `bench` arguments into a BenchConfig, validating every field (HarnessError names it)."""
    device = resolve_device(args.device)
    ns = list(dict.fromkeys(_parse_size(x, "--n") for x in _split_list(args.n)))
    vs = list(dict.fromkeys(_parse_size(x, "--v") for x in _split_list(args.v)))
    if any(v < 2 for v in vs):
        raise HarnessError("--v: a vocabulary needs at least 2 tokens")
    shapes = tuple(default_shapes(device, args.quick, ns, vs))

    dtypes = tuple(dict.fromkeys(_split_list(args.dtype))) if args.dtype else (("fp32",) if args.quick else _DEFAULTS.dtypes)
    bad = [d for d in dtypes if d not in DTYPES]
    if bad or not dtypes:
        raise HarnessError(f"--dtype: unknown {', '.join(bad) or '(none given)'}; choose among {', '.join(DTYPES)}")
    backends = tuple(dict.fromkeys(_split_list(args.backends)))
    if backends == ("all",):
        backends = tuple(VARIANTS)
    bad = [b for b in backends if b not in VARIANTS]
    if bad or not backends:
        raise HarnessError(f"--backends: unknown {', '.join(bad) or '(none given)'}; choose among all, {', '.join(VARIANTS)}")
    # keep the report's row order, whatever order the user typed
    backends = tuple(b for b in VARIANTS if b in backends)
    passes = tuple(dict.fromkeys(_split_list(args.passes)))
    bad = [p for p in passes if p not in PASSES]
    if bad or not passes:
        raise HarnessError(f"--passes: unknown {', '.join(bad) or '(none given)'}; choose among {', '.join(PASSES)}")
    passes = tuple(p for p in PASSES if p in passes)

    if args.repetitions < 1:
        raise HarnessError(f"--repetitions must be >= 1 (20 or more for a report), got {args.repetitions}")
    if args.warmup < 0:
        raise HarnessError(f"--warmup must be >= 0, got {args.warmup}")
    if args.table_contexts < 1:
        raise HarnessError(f"--table-contexts must be >= 1, got {args.table_contexts}")
    if args.max_logits_mib < 0:
        raise HarnessError(f"--max-logits-mib must be >= 0 (0 = the device's default), got {args.max_logits_mib}")
    if args.copy_mib < 1:
        raise HarnessError(f"--copy-mib must be >= 1, got {args.copy_mib}")
    if args.max_seconds < 0:
        raise HarnessError(f"--max-seconds must be >= 0 (0 = no limit), got {args.max_seconds}")

    suites = tuple(dict.fromkeys(_split_list(args.suite))) if args.suite else (("loss",) if args.quick else _DEFAULTS.suites)
    bad = [x for x in suites if x not in SUITES]
    if bad or not suites:
        raise HarnessError(f"--suite: unknown {', '.join(bad) or '(none given)'}; choose among {', '.join(SUITES)}")
    orders = tuple(dict.fromkeys(_parse_size(x, "--orders") for x in (_split_list(args.orders) or map(str, _DEFAULTS.orders))))
    if not orders or any(o < 2 or o > 4 for o in orders):
        raise HarnessError(f"--orders: the training benchmark takes orders 2 to 4 (a table of V^(n-1) rows), got {args.orders}")
    if args.train_steps < 1:
        raise HarnessError(f"--train-steps must be >= 1, got {args.train_steps}")
    if args.train_repeats < 1:
        raise HarnessError(f"--train-repeats must be >= 1, got {args.train_repeats}")
    max_logits_mib = args.max_logits_mib or (2048.0 if device.type == "cuda" else 1024.0)
    copy_mib = args.copy_mib
    if args.quick and copy_mib == _DEFAULTS.copy_mib:
        copy_mib = 256
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    run_name = Path(args.out).name if args.out else f"bench-{device_kind(device)}-{stamp}"
    out_dir = Path(args.out) if args.out else Path("reports") / run_name
    return BenchConfig(
        device=str(device), shapes=shapes, dtypes=dtypes, backends=backends, passes=passes,
        repetitions=args.repetitions, warmup=args.warmup, quick=args.quick, out_dir=out_dir, run_name=run_name,
        seed=args.seed, table_contexts=args.table_contexts, max_logits_mib=max_logits_mib, copy_mib=copy_mib,
        max_seconds=args.max_seconds, keep_going=args.keep_going, suites=suites, corpus=args.corpus, orders=orders,
        train_steps=args.train_steps, train_repeats=args.train_repeats,
    )


# ---------------------------------------------------------------------------------------------
# timing and memory


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(step: Callable[[], object], device: torch.device, repetitions: int, warmup: int) -> tuple[float, float, float, int]:
    """Median, p20 and p80 milliseconds of `step` after `warmup` calls, and the repetitions timed.

    CUDA: triton.testing.do_bench with quantiles (it clears L2 before every repetition); its
    repetition window is sized from a first estimate so that at least `repetitions` run. CPU:
    torch.utils.benchmark, one block of calls per repetition (a block is one call unless a call
    is shorter than a millisecond), with all of torch's threads.
    """
    estimate_s = math.inf
    for _ in range(max(1, warmup)):  # the fastest warm-up call sizes the timing (a shared machine stalls some)
        t0 = time.perf_counter()
        step()
        _sync(device)
        estimate_s = min(estimate_s, time.perf_counter() - t0)
    if device.type == "cuda":
        from triton.testing import do_bench

        rep_ms = max(25.0, 1.5 * repetitions * estimate_s * 1e3)
        median, p20, p80 = do_bench(step, warmup=5, rep=rep_ms, quantiles=[0.5, 0.2, 0.8])
        return float(median), float(p20), float(p80), max(repetitions, int(rep_ms / max(median, 1e-6)))
    from torch.utils.benchmark import Timer

    number = max(1, int(1e-3 / max(estimate_s, 1e-9)))
    timer = Timer(stmt="step()", globals={"step": step}, num_threads=torch.get_num_threads())
    times_ms = torch.tensor([timer.timeit(number).median * 1e3 for _ in range(repetitions)], dtype=torch.float64)
    q = torch.quantile(times_ms, torch.tensor([0.5, 0.2, 0.8], dtype=torch.float64))
    return float(q[0]), float(q[1]), float(q[2]), repetitions


def peak_extra_mib(step: Callable[[], object], device: torch.device) -> float:
    """Peak memory one call allocates beyond what existed before it, in MiB (NaN where unmeasurable).

    CUDA: torch.cuda.max_memory_allocated. CPU: the running total of the allocations and frees
    that torch's profiler records for one call (tensors only; buffers a backend keeps between
    calls existed before the call and are not counted).
    """
    if device.type == "cuda":
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        step()
        _sync(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20
    try:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            step()
        events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]")
    except Exception:  # noqa: BLE001 - the profiler's internals vary across versions: then say n/a
        return float("nan")
    running = peak = 0
    for _, nbytes in events:
        running += nbytes
        peak = max(peak, running)
    return peak / 2**20


def available_bytes(device: torch.device) -> int:
    """Free memory of the device: CUDA's free memory, or MemAvailable on Linux (else a large number)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 1 << 62


def copy_bandwidth(device: torch.device, mib: int, repetitions: int) -> tuple[float, int]:
    """GB/s of a large device-to-device copy (bytes read + bytes written) and the bytes copied."""
    nbytes = min(mib * 2**20, available_bytes(device) // 4)
    numel = max(1, nbytes // 4)
    src = torch.ones(numel, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    median_ms, _, _, _ = time_call(lambda: dst.copy_(src), device, max(repetitions, 10), warmup=2)
    return 2 * numel * 4 / (median_ms * 1e-3) / 1e9, numel * 4


# ---------------------------------------------------------------------------------------------
# the measurements


def variant_unavailable(name: str, device: torch.device) -> str:
    """Why a variant cannot run on `device` ('' when it can)."""
    variant = VARIANTS[name]
    if variant.backend == "torch-compile":
        return ""
    if variant.backend == "triton" and device.type != "cuda":
        return "needs CUDA: the Triton kernel runs on a GPU (its CPU interpreter is for tests, not timing)"
    try:
        ok, why = kernels.backend_available(variant.backend, device)
    except ImportError as exc:  # the backend's module is not there (yet)
        return f"not available: {exc}"
    return "" if ok else f"not available: {why}"


@dataclass
class Problem:
    """The tensors of one shape and dtype, and eager F.cross_entropy's loss and gradient on them."""

    logits: torch.Tensor  # (N, V)
    target: torch.Tensor  # (N,) int64
    table: torch.Tensor  # (C, V)
    context: torch.Tensor  # (N,) int64
    ref: dict  # problem -> (fp32 truth loss, fp32 truth grad, (eager's own loss error, grad error) in this dtype)


def make_problem(n: int, v: int, c: int, dtype: torch.dtype, device: torch.device, seed: int, problems: set[str]) -> Problem:
    g = torch.Generator(device=device).manual_seed(seed)
    logits = torch.randn(n, v, generator=g, device=device, dtype=torch.float32).to(dtype) if "logits" in problems else None
    target = torch.randint(0, v, (n,), generator=g, device=device)
    table = torch.randn(c, v, generator=g, device=device, dtype=torch.float32).to(dtype) if "table" in problems else None
    context = torch.randint(0, c, (n,), generator=g, device=device)
    ref = {}
    for problem in problems:
        source = logits if problem == "logits" else table
        truth_loss, truth_grad = _eager(source.float(), target, context, problem)
        eager_err = (0.0, 0.0)
        if dtype != torch.float32:  # eager F.cross_entropy's own low-precision error against the fp32 truth
            loss, grad = _eager(source, target, context, problem)
            eager_err = (float((loss.float() - truth_loss).abs()), float((grad.float() - truth_grad).abs().max()))
            del loss, grad
        ref[problem] = (truth_loss, truth_grad, eager_err)
    return Problem(logits, target, table, context, ref)


def _eager(source: torch.Tensor, target: torch.Tensor, context: torch.Tensor, problem: str) -> tuple:
    """Eager F.cross_entropy's loss and gradient, of the logits or of the table through table[context]."""
    leaf = source.detach().requires_grad_(True)
    loss = F.cross_entropy(leaf if problem == "logits" else leaf[context], target)
    (grad,) = torch.autograd.grad(loss, leaf)
    return loss.detach(), grad


def loss_fn(name: str, torch_compiled: Callable) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    """loss(x, target, context) for a variant; x is the logits, or the table for the table variants."""
    variant = VARIANTS[name]
    if variant.problem == "table":
        if variant.backend == "torch":
            return lambda table, target, context: F.cross_entropy(table[context], target)
        return lambda table, target, context: kernels.table_cross_entropy(table, context, target, backend=variant.backend)
    if variant.backend == "torch":
        return lambda x, target, context: F.cross_entropy(x, target)
    if variant.backend == "torch-compile":
        return lambda x, target, context: torch_compiled(x, target)
    return lambda x, target, context: kernels.cross_entropy(
        x, target, backend=variant.backend, overwrite_logits=variant.inplace)


def make_step(name: str, pass_: str, prob: Problem, torch_compiled: Callable) -> tuple[Callable[[], object], Callable[[], tuple]]:
    """(step, check): `step` is what is timed; `check` returns (loss, grad or None) from a fresh input.

    Forward+backward takes the gradient with torch.autograd.grad, so nothing accumulates into
    `.grad` between repetitions and the gradient is freed after each call, as in a training step.
    In-place variants overwrite their own copy of the logits, never the shared tensors.
    """
    variant = VARIANTS[name]
    fn = loss_fn(name, torch_compiled)
    source = prob.logits if variant.problem == "logits" else prob.table
    target, context = prob.target, prob.context
    if pass_ == "fwd":
        def step():
            with torch.no_grad():
                return fn(source, target, context)

        def check():
            return step().detach(), None
        return step, check

    x = (source.clone() if variant.inplace else source.detach()).requires_grad_(True)

    def step():
        return torch.autograd.grad(fn(x, target, context), x)

    def check():
        fresh = (source.clone() if variant.inplace else source.detach()).requires_grad_(True)
        loss = fn(fresh, target, context)
        (grad,) = torch.autograd.grad(loss, fresh)
        return loss.detach(), grad
    return step, check


def compare(got: tuple, ref: tuple, dtype: str, pass_: str) -> tuple[float, float, str]:
    """Max |loss error|, max |grad error| against the fp32 truth, and '' when acceptable, else what is wrong.

    Acceptable: within the dtype's tolerance, or (bf16, fp16) no more than twice eager
    F.cross_entropy's own error in that dtype: eager bf16 accumulates a table's gradient in bf16,
    and a kernel that accumulates in fp32 must not be failed for being closer to the truth.
    """
    rtol_l, atol_l, rtol_g, atol_g = TOLERANCES[dtype]
    loss, grad = got
    ref_loss, ref_grad, (eager_loss_err, eager_grad_err) = ref
    loss = loss.float()
    loss_err = float((loss - ref_loss).abs())
    problems = []
    within = loss_err <= atol_l + rtol_l * float(ref_loss.abs()) or loss_err <= 2 * eager_loss_err
    if not bool(torch.isfinite(loss)) or not within:
        problems.append(f"loss {float(loss):.6g} against {float(ref_loss):.6g}")
    grad_err = float("nan")
    if pass_ == "fwd+bwd":
        if grad is None or grad.shape != ref_grad.shape:
            problems.append("no gradient of the right shape")
        else:
            g, r = grad.float(), ref_grad
            diff = (g - r).abs()
            grad_err = float(diff.max()) if diff.numel() else 0.0
            bound = atol_g * float(r.abs().max()) + rtol_g * r.abs()
            within = not bool((diff > bound).any()) or grad_err <= 2 * eager_grad_err
            if not bool(torch.isfinite(g).all()) or not within:
                problems.append(f"gradient off by up to {grad_err:.3g} (largest reference entry {float(r.abs().max()):.3g}, "
                                f"eager {dtype}'s own error {eager_grad_err:.3g})")
    return loss_err, grad_err, "; ".join(problems)


def bytes_moved(problem: str, pass_: str, n: int, v: int, c: int, elem: int) -> int:
    """The bytes that must move (module docstring). Table rows count the rows they read from the
    table as if they were logits (N x V), so they compare with the dense rows; their gradient is
    the table's (C x V)."""
    index_bytes = 8 * n * (1 if problem == "logits" else 2)  # int64 targets (and contexts)
    total = n * v * elem + index_bytes + 4  # read the rows once, the indices, write a scalar loss
    if pass_ == "fwd+bwd":
        total += (n if problem == "logits" else c) * v * elem
    return total


def run_bench(config: BenchConfig, log: Callable[[str], None] = print) -> tuple[list[dict], dict]:
    """Verify and time every (shape, dtype, variant, pass) of `config`; return the rows and the environment."""
    device = torch.device(config.device)
    env = environment(device)
    stamp = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    started = time.perf_counter()
    copy_gbps, copy_bytes = copy_bandwidth(device, config.copy_mib, config.repetitions)
    log(f"copy bandwidth on {env['device_name']}: {copy_gbps:.1f} GB/s ({copy_bytes / 2**20:.0f} MiB copied)")
    provenance = {
        "run": config.run_name, "device": str(device), "device_name": env["device_name"],
        "driver": env.get("driver", "n/a"), "machine": env["machine"], "torch": env["torch"],
        "triton": env["triton"], "python": env["python"], "git_commit": env["git_commit"], "timestamp": stamp,
        "copy_gbps": copy_gbps, "C": config.table_contexts,
    }
    rows = [dict(provenance, backend="copy", problem="copy", **{"pass": "copy"}, dtype="fp32", N=copy_bytes // 4, V=1,
                 status="ok", note="device-to-device copy, bytes read + written", verified="n/a", bytes=2 * copy_bytes,
                 gbps=copy_gbps, frac_of_copy=1.0)]
    unavailable = {name: variant_unavailable(name, device) for name in config.backends}
    problems = {VARIANTS[name].problem for name in config.backends}
    torch_compiled = torch.compile(F.cross_entropy)
    budget_mib = config.max_logits_mib
    failures = []

    # shapes outside, dtypes inside: when a time budget stops the run, what is lost is the end of
    # the grid (the GPU default puts the headline vocabularies first), in both dtypes alike
    for n, v in config.shapes:
        for dtype in config.dtypes:
            torch_dtype = DTYPES[dtype]
            elem = torch.finfo(torch_dtype).bits // 8
            shape = dict(provenance, dtype=dtype, N=n, V=v)
            logits_mib = n * v * elem / 2**20
            need = MEMORY_FACTOR * max(n, config.table_contexts) * v * elem
            skip = ""
            if logits_mib > budget_mib:
                skip = f"logits of {logits_mib:.0f} MiB exceed the budget of {budget_mib:.0f} MiB (--max-logits-mib)"
            elif need > available_bytes(device):
                skip = f"needs about {need / 2**30:.1f} GiB, {available_bytes(device) / 2**30:.1f} GiB free"
            if skip:
                rows.append(dict(shape, backend="*", problem="*", **{"pass": "*"}, status="skipped", note=skip, verified="n/a"))
                continue
            log(f"{dtype} N={n} V={v}")
            try:
                prob = make_problem(n, v, config.table_contexts, torch_dtype, device, config.seed, problems)
            except torch.OutOfMemoryError:
                rows.append(dict(shape, backend="*", problem="*", **{"pass": "*"}, status="skipped",
                                 note="out of memory building the tensors", verified="n/a"))
                continue
            for name in config.backends:
                variant = VARIANTS[name]
                for pass_ in config.passes:
                    row = dict(shape, backend=name, problem=variant.problem, **{"pass": pass_}, verified="no")
                    row["bytes"] = bytes_moved(variant.problem, pass_, n, v, config.table_contexts, elem)
                    rows.append(row)
                    if unavailable[name]:
                        row.update(status="skipped", note=unavailable[name])
                        continue
                    if pass_ == "fwd" and variant.inplace:
                        base = name.replace("-inplace", "")
                        row.update(status="skipped", note=f"same as {base}: a forward without gradient writes nothing over the logits")
                        continue
                    if config.max_seconds and time.perf_counter() - started > config.max_seconds:
                        row.update(status="skipped", note=f"time budget of {config.max_seconds:.0f} s spent (--max-seconds)")
                        continue
                    try:
                        _measure(row, name, pass_, prob, torch_compiled, config, device, dtype, copy_gbps)
                    except torch.OutOfMemoryError:
                        row.update(status="skipped", note="out of memory")
                        if device.type == "cuda":
                            torch.cuda.empty_cache()
                    except _Mismatch as exc:
                        message = f"{name} {pass_} {dtype} N={n} V={v} disagrees with eager F.cross_entropy: {exc}"
                        if not config.keep_going:
                            raise HarnessError(message) from None
                        row.update(status="failed", note=f"verification: {exc}")
                        failures.append(message)
                    except Exception as exc:  # noqa: BLE001 - with --keep-going a broken backend must not lose the run
                        if not config.keep_going:
                            raise
                        row.update(status="failed", note=f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
                        failures.append(f"{name} {pass_} {dtype} N={n} V={v}: {row['note']}")
                    if row.get("status") == "ok":
                        log(f"  {name:16s} {pass_:8s} {row['median_ms']:9.3f} ms  {row['gbps']:7.1f} GB/s")
            del prob
            if device.type == "cuda":
                torch.cuda.empty_cache()
    _add_speedups(rows)
    env.update(copy_gbps=copy_gbps, copy_mib=copy_bytes / 2**20, failures=failures,
               seconds=time.perf_counter() - started)
    return rows, env


class _Mismatch(Exception):
    pass


def _measure(row: dict, name: str, pass_: str, prob: Problem, torch_compiled, config: BenchConfig,
             device: torch.device, dtype: str, copy_gbps: float) -> None:
    """Verify one variant on the benchmark tensors, then time it; fills `row`."""
    step, check = make_step(name, pass_, prob, torch_compiled)
    t0 = time.perf_counter()
    got = check()  # the first call: includes any compilation
    _sync(device)
    first_s = time.perf_counter() - t0
    loss_err, grad_err, wrong = compare(got, prob.ref[VARIANTS[name].problem], dtype, pass_)
    del got
    if wrong:
        raise _Mismatch(wrong)
    median, p20, p80, reps = time_call(step, device, config.repetitions, config.warmup)
    gbps = row["bytes"] / (median * 1e-3) / 1e9
    row.update(status="ok", note="", verified="yes", loss_err=loss_err, grad_err=grad_err,
               median_ms=median, p20_ms=p20, p80_ms=p80, reps=reps, gbps=gbps, frac_of_copy=gbps / copy_gbps,
               peak_extra_mib=peak_extra_mib(step, device), compile_s=max(0.0, first_s - median * 1e-3))


def _add_speedups(rows: list[dict]) -> None:
    """speedup_vs_eager = the problem's baseline median / this median, within (dtype, N, V, pass)."""
    base = {(r["problem"], r["dtype"], r["N"], r["V"], r["pass"]): r["median_ms"]
            for r in rows if r.get("status") == "ok" and r["backend"] == BASELINE.get(r["problem"])}
    for r in rows:
        key = (r["problem"], r["dtype"], r["N"], r["V"], r["pass"])
        if r.get("status") == "ok" and key in base and r["backend"] != "copy":
            r["speedup_vs_eager"] = base[key] / r["median_ms"]


# ---------------------------------------------------------------------------------------------
# the training benchmark: full-batch gradient descent on an n-gram table model


@dataclass(frozen=True)
class TrainVariant:
    input: str  # how the logits reach the loss (harness.train.fit.GradientSettings.input)
    loss: str  # the kernels backend
    what: str


# The first is the baseline of the speed-ups and of the loss check.
TRAIN_VARIANTS = {
    "index-torch": TrainVariant("index", "torch", "logits = W[context], eager F.cross_entropy (the baseline)"),
    "onehot-torch": TrainVariant("onehot", "torch", "the lecture's one_hot(context) @ W, eager F.cross_entropy"),
    "index-manual": TrainVariant("index", "manual", "W[context], the lecture's exp / normalise / log / mean"),
    "index-compiled": TrainVariant("index", "compiled", "W[context], our compiled loss (gradient over the logits)"),
    "index-triton": TrainVariant("index", "triton", "W[context], our Triton kernel (gradient over the logits)"),
    "table-compiled": TrainVariant("table", "compiled", "table_cross_entropy, compiled backend (no N x V logits)"),
    "table-triton": TrainVariant("table", "triton", "table_cross_entropy, Triton backend (no N x V logits)"),
    "counts": TrainVariant("counts", "torch", "sufficient statistics: loss and gradient from the (C, V) target counts"),
}
ONEHOT_MAX_BYTES = 256 * 2**20  # the lecture's one-hot matrix is N x C floats: past this it is not worth timing
TRAIN_CSV_COLUMNS = [
    "run", "variant", "input", "loss", "order", "corpus", "N", "C", "V", "status", "note", "verified",
    "loss_err", "grad_err", "steps", "repeats", "ms_per_step", "min_ms_per_step", "max_ms_per_step", "steps_per_s",
    "speedup_vs_eager", "first_loss", "last_loss", "compile_s",
    "device", "device_name", "driver", "machine", "torch", "triton", "python", "git_commit", "timestamp",
]


def train_variant_unavailable(name: str, device: torch.device) -> str:
    variant = TRAIN_VARIANTS[name]
    if variant.loss == "triton" and device.type != "cuda":
        return "needs CUDA: the Triton kernel runs on a GPU (its CPU interpreter is for tests, not timing)"
    try:
        ok, why = kernels.backend_available(variant.loss, device)
    except ImportError as exc:
        return f"not available: {exc}"
    return "" if ok else f"not available: {why}"


def check_counts_step(train, device: torch.device, seed: int) -> tuple[float, float]:
    """The sufficient-statistics loss and gradient against the per-row computation at the initial table.

    Returns (loss error, gradient error); raises HarnessError when they disagree.
    """
    from harness.models.count import GradientModel
    from kernels.reference import torch_cross_entropy
    from kernels.suffstats import count_cross_entropy, target_counts

    (W,) = GradientModel.init(train.order, train.vocab_size, seed, device).tables
    # the per-row truth in float64: in float32 its gradient sums thousands of rows per context
    # and is itself the less accurate of the two
    W64 = W.detach().double().requires_grad_(True)
    per_row = torch_cross_entropy(W64[train.context], train.target, train.weight.double())
    (per_row_grad,) = torch.autograd.grad(per_row, W64)
    counts = target_counts(train.context, train.target, train.num_contexts, train.vocab_size, train.weight.float())
    from_counts = count_cross_entropy(W, counts)
    (counts_grad,) = torch.autograd.grad(from_counts, W)
    loss_err = float((from_counts.detach().double() - per_row.detach()).abs())
    grad_err = float((counts_grad.double() - per_row_grad).abs().max())
    scale = float(per_row_grad.abs().max())
    if loss_err > 1e-4 * float(per_row.detach().abs()) + 1e-6 or grad_err > 1e-4 * scale + 1e-9:
        raise HarnessError(f"sufficient statistics disagree with the per-row loss (order {train.order}): "
                           f"loss off by {loss_err:.3g}, gradient by {grad_err:.3g}")
    return loss_err, grad_err


def run_train_bench(config: BenchConfig, log: Callable[[str], None] = print) -> list[dict]:
    """Steps per second of full-batch gradient training of each order with each variant; one row each.

    The whole corpus is the training set (no split: this measures speed). Each variant first
    trains two steps untimed (compilation), then `train_repeats` fits of `train_steps` steps are
    timed by harness.train.fit.fit_gradient (a step includes loss.item(), as the harness trains).
    Every variant's loss at every step must match the baseline's (rtol 1e-3), and the
    sufficient-statistics step is checked against the per-row loss and gradient first.
    """
    from harness.data.corpus import load_corpus
    from harness.data.ngrams import windows
    from harness.train.fit import GradientSettings, fit_gradient

    device = torch.device(config.device)
    env = environment(device)
    stamp = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    provenance = {
        "run": config.run_name, "device": str(device), "device_name": env["device_name"],
        "driver": env.get("driver", "n/a"), "machine": env["machine"], "torch": env["torch"],
        "triton": env["triton"], "python": env["python"], "git_commit": env["git_commit"], "timestamp": stamp,
    }
    corpus = load_corpus(config.corpus, device)
    kernel_backends = {VARIANTS[b].backend for b in config.backends} | {"torch"}
    names = [n for n, v in TRAIN_VARIANTS.items() if v.loss in kernel_backends or v.input == "counts"]
    started = time.perf_counter()
    rows = []
    for order in config.orders:
        train = windows(corpus, order)
        n, c, v = int(train.target.numel()), train.num_contexts, train.vocab_size
        log(f"train: {corpus.name} order {order}: {n:,} rows, {c:,} contexts x {v} tokens")
        baseline_losses = None
        for name in names:
            variant = TRAIN_VARIANTS[name]
            row = dict(provenance, variant=name, input=variant.input, loss=variant.loss, order=order,
                       corpus=corpus.name, N=n, C=c, V=v, steps=config.train_steps, repeats=config.train_repeats,
                       verified="no")
            rows.append(row)
            why = train_variant_unavailable(name, device)
            if not why and variant.input == "onehot" and n * c * 4 > ONEHOT_MAX_BYTES:
                why = f"the one-hot matrix would be N x C = {n:,} x {c:,} floats ({n * c * 4 / 2**30:.1f} GiB)"
            if not why and config.max_seconds and time.perf_counter() - started > config.max_seconds:
                why = f"time budget of {config.max_seconds:.0f} s spent (--max-seconds)"
            if why:
                row.update(status="skipped", note=why)
                continue
            settings = GradientSettings(steps=config.train_steps, loss=variant.loss, input=variant.input, seed=config.seed)
            try:
                if variant.input == "counts":
                    row["loss_err"], row["grad_err"] = check_counts_step(train, device, config.seed)
                t0 = time.perf_counter()
                fit_gradient(train, dataclasses.replace(settings, steps=2), device)  # compile, warm caches
                warm_s = time.perf_counter() - t0
                fits = [fit_gradient(train, settings, device) for _ in range(config.train_repeats)]
            except torch.OutOfMemoryError:
                row.update(status="skipped", note="out of memory")
                continue
            except Exception as exc:  # noqa: BLE001 - with --keep-going a broken backend must not lose the run
                if not config.keep_going or isinstance(exc, HarnessError):
                    raise
                row.update(status="failed", note=f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
                continue
            ms = sorted(f.fit_seconds / config.train_steps * 1e3 for f in fits)
            median_ms = ms[len(ms) // 2]
            losses = fits[0].losses
            if baseline_losses is None:
                baseline_losses = losses
            err = max(abs(a - b) for a, b in zip(losses, baseline_losses))
            if any(abs(a - b) > 1e-3 * abs(b) + 1e-5 for a, b in zip(losses, baseline_losses)):
                message = (f"training with {name} (order {order}) leaves the baseline's losses: "
                           f"off by up to {err:.3g} over {config.train_steps} steps")
                if not config.keep_going:
                    raise HarnessError(message)
                row.update(status="failed", note=message)
                continue
            row.update(status="ok", note="", verified="yes", ms_per_step=median_ms, min_ms_per_step=ms[0],
                       max_ms_per_step=ms[-1], steps_per_s=1e3 / median_ms, first_loss=losses[0],
                       last_loss=losses[-1], compile_s=max(0.0, warm_s - 2 * median_ms * 1e-3))
            row["loss_err"] = max(row.get("loss_err") or 0.0, err)
            log(f"  {name:16s} {median_ms:9.3f} ms/step  {1e3 / median_ms:9.1f} steps/s  final loss {losses[-1]:.4f}")
    for order in config.orders:
        base = [r for r in rows if r["order"] == order and r["variant"] == "index-torch" and r.get("status") == "ok"]
        for r in rows:
            if r["order"] == order and r.get("status") == "ok" and base:
                r["speedup_vs_eager"] = base[0]["ms_per_step"] / r["ms_per_step"]
    return rows


def render_train_markdown(csv_path: Path) -> list[str]:
    """The training section of bench.md, from train.csv."""
    import pandas as pd

    df = pd.read_csv(csv_path, keep_default_na=False, na_values=[""])
    if df.empty:
        return []
    first = df.iloc[0]
    lines = ["## Training: full-batch gradient descent, steps per second", "",
             f"Corpus {first['corpus']} (all of it, no split), {int(first['steps'])} steps of W -= 50 * grad with the "
             f"lecture's regulariser 0.01 * mean(W**2), median of {int(first['repeats'])} fits; a step includes "
             "loss.item(). Every variant's loss at every step was checked against the baseline's (rtol 1e-3), and the "
             "sufficient-statistics step's loss and gradient against the per-row F.cross_entropy(W[context]) before "
             "timing. The fastest variant of each order is in bold.", ""]
    for order, group in df.groupby("order"):
        g0 = group.iloc[0]
        ok = group[group["status"] == "ok"]
        best = ok["ms_per_step"].idxmin() if len(ok) else None
        out = []
        for idx, r in group.iterrows():
            bold = (lambda x: f"**{x}**") if idx == best else (lambda x: x)
            out.append({
                "variant": bold(r.variant), "ms/step": bold(_fmt(r.ms_per_step, ".3f", "—")),
                "min–max ms": "—" if r.status != "ok" else f"{r.min_ms_per_step:.3f}–{r.max_ms_per_step:.3f}",
                "steps/s": _fmt(r.steps_per_s, ".1f", "—"), "× eager": _fmt(r.speedup_vs_eager, ".2f", "—"),
                "final loss": _fmt(r.last_loss, ".6f", "—"), "max loss diff": _fmt(r.loss_err, ".2g", "—"),
                "compile s": _fmt(r.compile_s, ".2f", "—"),
                "status": "ok" if r.status == "ok" else (f"{r.status}: {r.note}" if r.status == "failed" else r.note),
            })
        lines += [f"### order {order}: N = {int(g0.N):,} rows, C = {int(g0.C):,} contexts, V = {int(g0.V)}", "",
                  pd.DataFrame(out).to_markdown(index=False), ""]
    lines += [f"- `{k}`: {v.what}" for k, v in TRAIN_VARIANTS.items() if k in set(df["variant"])] + [""]
    return lines


# ---------------------------------------------------------------------------------------------
# output: CSV first, then markdown and the plot rendered from the saved CSV


def write_csv(rows: list[dict], path: Path) -> None:
    pd_frame(rows, CSV_COLUMNS).to_csv(path, index=False)


def _fmt(x, spec: str, empty: str = "") -> str:
    return empty if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def render_markdown(out_dir: Path, command: str = "") -> str:
    """bench.md from the saved bench.csv and/or train.csv of `out_dir`: environment block,
    headline, one table per dtype and V, the training section, notes."""
    import pandas as pd

    read = lambda name: pd.read_csv(out_dir / name, keep_default_na=False, na_values=[""])  # noqa: E731
    train_lines = render_train_markdown(out_dir / "train.csv") if (out_dir / "train.csv").exists() else []
    if not (out_dir / "bench.csv").exists():
        first = read("train.csv").iloc[0]
        return "\n".join(_environment_lines(first, command) + train_lines) + "\n"
    df = read("bench.csv")
    copy = df[df["backend"] == "copy"].iloc[0]
    first = df.iloc[0]
    lines = _environment_lines(first, command)
    lines[-1:-1] = [f"- copy bandwidth measured in this run: **{copy['gbps']:.1f} GB/s** "
                    f"({copy['N'] * 4 / 2**20:.0f} MiB device-to-device copy, bytes read + written)"]
    if str(first["device"]).startswith("cpu"):
        lines += ["On CPU the Triton rows are listed as needing CUDA; the fused kernel is timed on a GPU "
                  "(scripts/gpu-check.sh).", ""]
    measured = df[df["status"] == "ok"]
    measured = measured[measured["backend"] != "copy"]
    n_verified = int((measured["verified"] == "yes").sum())
    lines += [
        f"Verification: before timing, each of the {len(measured)} measured rows' loss and gradient were checked "
        f"against eager F.cross_entropy on the benchmarked tensors, computed in fp32 ({n_verified} passed; in bf16 "
        "and fp16 a row also passes when its error is at most twice eager F.cross_entropy's own error in that "
        "dtype; tolerances per dtype: "
        + ", ".join(f"{d} loss rtol {t[0]:g}, gradient rtol {t[2]:g} + {t[3]:g}·max|grad|" for d, t in TOLERANCES.items()
                    if d in set(df["dtype"])) + ").", "",
    ]
    failed = df[df["status"] == "failed"]
    if len(failed):
        lines += ["**Failed rows:**", ""] + [f"- {r.backend} {r['pass']} {r.dtype} N={r.N} V={r.V}: {r.note}"
                                            for _, r in failed.iterrows()] + [""]

    lines += _headline(df)
    lines += ["## Results", "",
              "Median and p20–p80 of the timed repetitions; GB/s counts the bytes that must move (forward: read "
              "the logits once, the targets, write the loss; forward+backward adds writing the gradient once); "
              "'of copy' is that as a fraction of the copy bandwidth above; '× eager' is the speed-up over eager "
              "F.cross_entropy on the same problem; 'peak MiB' is the memory one call allocates beyond what "
              "existed before it; 'compile s' is how much longer the first call took than a steady one. "
              "The fastest backend of each problem, pass and N is in bold.", ""]
    shapes = df[~df["backend"].isin(["copy"]) & (df["backend"] != "*")]
    dtype_order = {d: i for i, d in enumerate(dict.fromkeys(shapes["dtype"]))}
    for (dtype, v), group in sorted(shapes.groupby(["dtype", "V"]), key=lambda kv: (dtype_order[kv[0][0]], kv[0][1])):
        lines += [f"### {dtype}, V = {v}", "", _table(group), ""]

    skipped_shapes = df[df["backend"] == "*"]
    if len(skipped_shapes):
        lines += ["## Shapes not run", ""] + [f"- {r.dtype} N={r.N} V={r.V}: {r.note}" for _, r in skipped_shapes.iterrows()] + [""]
    lines += ["## Backends", ""] + [f"- `{k}`: {v.what}" for k, v in VARIANTS.items() if k in set(df["backend"])]
    lines += ["", "Table rows (`table-*`) compute the loss of `table[context]` with a table of C = "
              f"{int(first['C'])} rows; their GB/s counts the N × V rows read from the table as if they were "
              "logits (so they compare with the dense rows) and the C × V table gradient written; rows read "
              "from cache can make it exceed the copy bandwidth.", ""]
    return "\n".join(lines + train_lines) + "\n"


def _environment_lines(first, command: str) -> list[str]:
    lines = [f"# Benchmark: {first['run']}", ""]
    if command:
        lines += [f"`{command}`", ""]
    return lines + [
        "## Environment", "",
        f"- device: {first['device']} — {first['device_name']}",
        f"- machine: {first['machine']}",
        f"- driver: {first['driver']}",
        f"- torch {first['torch']}, triton {first['triton']}, python {first['python']}",
        f"- git commit: {first['git_commit']}; started {first['timestamp']}",
        "",
    ]


def _headline(df) -> list[str]:
    """Forward+backward at the largest N of each dtype and V: GB/s, fraction of copy, × eager."""
    ok = df[(df["status"] == "ok") & (df["pass"] == "fwd+bwd") & (df["problem"] != "copy")]
    if ok.empty:
        return []
    largest = ok.groupby(["dtype", "V"])["N"].transform("max")
    ok = ok[ok["N"] == largest]
    cells = ok.assign(cell=[f"{r.gbps:.1f} GB/s · {r.frac_of_copy:.0%} · {r.speedup_vs_eager:.2f}×" for r in ok.itertuples()])
    table = cells.pivot_table(index="backend", columns=["dtype", "V"], values="cell", aggfunc="first")
    table = table.reindex([b for b in VARIANTS if b in table.index])
    dtype_order = list(dict.fromkeys(df.loc[df["backend"] != "copy", "dtype"]))
    table = table[sorted(table.columns, key=lambda c: (dtype_order.index(c[0]), c[1]))]
    table.columns = [f"{d} V={v} (N={int(ok[(ok.dtype == d) & (ok.V == v)].N.max())})" for d, v in table.columns]
    return ["## Headline: forward+backward at the largest N", "",
            "GB/s · fraction of copy bandwidth · speed-up over eager F.cross_entropy.", "",
            table.fillna("—").to_markdown(), ""]


def _table(group) -> str:
    import pandas as pd

    order = {b: i for i, b in enumerate(VARIANTS)}
    group = group.assign(_o=group["backend"].map(order)).sort_values(["N", "pass", "_o"], kind="stable")
    ok = group[group["status"] == "ok"]
    best = set(ok.loc[ok.groupby(["problem", "pass", "N"])["median_ms"].idxmin()].index) if len(ok) else set()
    out = []
    for idx, r in group.iterrows():
        bold = (lambda s: f"**{s}**") if idx in best else (lambda s: s)
        status = "ok" if r.status == "ok" else (f"{r.status}: {r.note}" if r.status == "failed" else r.note)
        out.append({
            "backend": bold(r.backend), "pass": r["pass"], "N": int(r.N),
            "median ms": bold(_fmt(r.median_ms, ".3f", "—")),
            "p20–p80 ms": "—" if r.status != "ok" else f"{r.p20_ms:.3f}–{r.p80_ms:.3f}",
            "GB/s": _fmt(r.gbps, ".1f", "—"), "of copy": _fmt(r.frac_of_copy, ".0%", "—"),
            "× eager": _fmt(r.speedup_vs_eager, ".2f", "—"), "peak MiB": _fmt(r.peak_extra_mib, ".0f", "n/a" if r.status == "ok" else "—"),
            "compile s": _fmt(r.compile_s, ".2f", "—") if VARIANTS[r.backend].backend in COMPILING else "—",
            "status": status,
        })
    return pd.DataFrame(out).to_markdown(index=False)


def plot(csv_path: Path, png_path: Path) -> None:
    """bench.png from bench.csv: forward+backward GB/s per backend, the copy bandwidth as a dashed ceiling.

    A grid with several N per V: one panel per dtype and V, GB/s against N (log-log), one line
    per backend. A grid with one N per V (the CPU default): one panel per dtype, grouped bars
    per V, so that single points do not float in empty axes.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    df = pd.read_csv(csv_path, keep_default_na=False, na_values=[""])
    copy_gbps = float(df.loc[df["backend"] == "copy", "gbps"].iloc[0])
    grid = df[~df["backend"].isin(["copy", "*"])]
    ok = grid[(grid["status"] == "ok") & (grid["pass"] == "fwd+bwd")]
    dtypes = list(dict.fromkeys(grid["dtype"])) or ["fp32"]
    vs = sorted(set(grid["V"])) or [0]
    backends = [b for b in VARIANTS if b in set(ok["backend"])]
    colors = {b: plt.get_cmap("tab10")(i % 10) for i, b in enumerate(VARIANTS)}
    one_n = grid.groupby(["dtype", "V"])["N"].nunique().max() <= 1 if len(grid) else True

    if one_n:
        fig, axes = plt.subplots(len(dtypes), 1, figsize=(max(7.0, 1.1 * len(vs) * max(1, len(backends)) ** 0.5 + 4), 3.4 * len(dtypes) + 0.9),
                                 squeeze=False, sharey=True)
        width = 0.8 / max(1, len(backends))
        for i, dtype in enumerate(dtypes):
            ax = axes[i][0]
            panel = ok[ok["dtype"] == dtype]
            for k, backend in enumerate(backends):
                bars = panel[panel["backend"] == backend].set_index("V")["gbps"]
                xs = [j + (k - (len(backends) - 1) / 2) * width for j, v in enumerate(vs) if v in bars.index]
                drawn = ax.bar(xs, [bars[v] for v in vs if v in bars.index], width=width * 0.95, color=colors[backend],
                               label=backend, hatch="//" if backend.startswith("table") else None, edgecolor="white")
                ax.bar_label(drawn, fmt="%.1f", fontsize=7, padding=1)
            ax.axhline(copy_gbps, color="black", linestyle="--", linewidth=1, label=f"copy bandwidth ({copy_gbps:.1f} GB/s)")
            ns = grid[grid["dtype"] == dtype].groupby("V")["N"].first()
            ax.set_xticks(range(len(vs)), [f"V = {v}\nN = {ns.get(v, 0):,}" for v in vs])
            ax.set_title(dtype, fontsize=10)
            ax.set_ylabel("GB/s (fwd+bwd)")
            ax.set_ylim(0, 1.12 * max([copy_gbps] + list(ok["gbps"])))  # room for the bar labels
            ax.grid(True, axis="y", alpha=0.3)
    else:
        fig, axes = plt.subplots(len(dtypes), len(vs), figsize=(3.6 * len(vs) + 1.5, 3.2 * len(dtypes) + 0.9),
                                 squeeze=False, sharey=True)
        for i, dtype in enumerate(dtypes):
            for j, v in enumerate(vs):
                ax = axes[i][j]
                panel = ok[(ok["dtype"] == dtype) & (ok["V"] == v)]
                for backend in backends:
                    line = panel[panel["backend"] == backend].sort_values("N")
                    if len(line):
                        ax.plot(line["N"], line["gbps"], marker="o", ms=4, color=colors[backend], label=backend,
                                linestyle="--" if backend.startswith("table") else "-")
                ax.axhline(copy_gbps, color="black", linestyle="--", linewidth=1,
                           label=f"copy bandwidth ({copy_gbps:.0f} GB/s)")
                ax.set_xscale("log", base=2)
                ax.set_yscale("log")
                ax.set_title(f"{dtype}, V = {v}", fontsize=10)
                ax.grid(True, which="both", alpha=0.3)
                if i == len(dtypes) - 1:
                    ax.set_xlabel("rows N")
                if j == 0:
                    ax.set_ylabel("GB/s (fwd+bwd)")
    handles = {}
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    rows_of_legend = math.ceil(len(handles) / 6)
    fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=min(6, len(handles)), fontsize=8, frameon=False)
    fig.suptitle(f"Cross-entropy forward+backward, achieved GB/s (bytes that must move) — {df['device_name'].iloc[0]}",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0.04 + 0.035 * rows_of_legend, 1, 0.96))
    fig.savefig(png_path, dpi=110)
    plt.close(fig)


def bench_main(args: argparse.Namespace) -> int:
    """Run the `bench` subcommand: verify, time, write bench.csv (+ train.csv), bench.md and bench.png."""
    import shlex
    import sys

    if getattr(args, "static", False):
        from pathlib import Path

        from harness.bench.static import parse_archs, static_main

        archs = parse_archs(args.arch)
        out = Path(args.out) if args.out else Path("reports") / ("static-" + "-".join(archs))
        return static_main(archs, out, log=lambda line: print(line, flush=True))
    if getattr(args, "counting", False):
        from harness.bench.counting import counting_main

        return counting_main(args)
    if getattr(args, "smoothing", False):
        from harness.bench.smoothing import smoothing_main

        return smoothing_main(args)
    config = make_bench_config(args)
    config.out_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(config.device)
    if "loss" in config.suites:
        print(f"bench loss: {len(config.shapes)} shapes x {len(config.dtypes)} dtypes x {len(config.backends)} backends "
              f"on {device}", flush=True)
        for name in config.backends:
            why = variant_unavailable(name, device)
            if why:
                print(f"  {name}: skipped ({why})", flush=True)
    if "train" in config.suites:
        print(f"bench train: {config.corpus}, orders {', '.join(map(str, config.orders))}, {config.train_steps} steps "
              f"x {config.train_repeats} fits on {device}", flush=True)
    log = lambda line: print(line, flush=True)  # noqa: E731
    started = time.perf_counter()
    failures = []
    with _recompile_limit_patch():
        if "loss" in config.suites:
            rows, env = run_bench(config, log=log)
            write_csv(rows, config.out_dir / "bench.csv")
            plot(config.out_dir / "bench.csv", config.out_dir / "bench.png")
            failures += env["failures"]
        if "train" in config.suites:
            train_rows = run_train_bench(config, log=log)
            pd_frame(train_rows, TRAIN_CSV_COLUMNS).to_csv(config.out_dir / "train.csv", index=False)
            failures += [f"train {r['variant']} order {r['order']}: {r['note']}" for r in train_rows if r.get("status") == "failed"]
    command = "python -m harness " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["bench"] else ""
    (config.out_dir / "bench.md").write_text(render_markdown(config.out_dir, command))
    print(f"report: {config.out_dir / 'bench.md'} ({time.perf_counter() - started:.0f} s)", flush=True)
    if failures:
        print(f"{len(failures)} measurement(s) failed:", flush=True)
        for line in failures:
            print(f"  {line}", flush=True)
        return 1
    return 0


def pd_frame(rows: list[dict], columns: list[str]):
    import pandas as pd

    return pd.DataFrame(rows).reindex(columns=columns)


def _recompile_limit_patch():
    """A scoped raise of dynamo's recompile limit, so that torch.compile(F.cross_entropy) does not
    silently fall back to eager after eight dtype / grad-mode / shape variants of the grid."""
    import contextlib

    try:
        import torch._dynamo.config as dynamo_config

        name = "recompile_limit" if hasattr(dynamo_config, "recompile_limit") else "cache_size_limit"
        return dynamo_config.patch(**{name: 64})
    except Exception:  # noqa: BLE001 - an older or newer torch without these knobs: run with its defaults
        return contextlib.nullcontext()


__all__ = ["BenchConfig", "VARIANTS", "add_bench_arguments", "bench_main", "make_bench_config", "run_bench",
           "render_markdown", "plot", "write_csv"]
