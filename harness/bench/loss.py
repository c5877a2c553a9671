"""`python -m harness bench`: the loss backends against eager F.cross_entropy, measured and verified.

For every shape (N rows, vocabulary V) and dtype of the grid, and every backend variant, the
benchmark first checks the variant's loss and gradient against eager `F.cross_entropy` (in fp32)
on the very tensors it is about to time (a mismatch fails the run), then times forward and
forward+backward: `triton.testing.do_bench` with quantiles on CUDA (it clears L2 between
repetitions), `torch.utils.benchmark` on CPU. Each measurement becomes one row of a long-format
table with its provenance; bench.md and bench.png are rendered from the saved bench.csv.

Bytes that must move (what GB/s counts), `bytes_moved`:
    logits rows, forward:          read the (N, V) logits once, the N int64 targets, write the loss
    logits rows, forward+backward: the same, plus write the (N, V) gradient once
    table rows, forward:           read the (C, V) table once, the N int64 context ids and N targets,
                                   write the loss (the N x V logits table[context] need never exist)
    table rows, forward+backward:  the same, plus write the (C, V) table gradient once
(the benchmark's losses are unweighted: a weighted loss would read N weights more). table-torch,
which does build table[context], moves more than its row counts: its GB/s is what the problem
needs over the time it took.
The device's own ceiling is measured in the same run by a large device-to-device copy
(bytes read + bytes written), and every GB/s is also given as a fraction of it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

import kernels
from harness.bench.common import LOAD_COLUMNS, backend_unavailable, provenance, spread, sync, time_call, wide_spread
from harness.bench.config import DTYPES, VARIANTS, BenchConfig
from harness.core.errors import HarnessError

BASELINE = {"logits": "torch", "table": "table-torch"}
COMPILING = ("torch-compile", "compiled", "triton")  # backends whose first call on a shape may compile
MEMORY_FACTOR = 8  # device memory a shape needs, in multiples of its logits (clones, gradients, manual's temporaries)

# Verification tolerances against eager F.cross_entropy in the same dtype. Gradient entries are
# about 1/N, so their absolute tolerance is relative to the largest entry of the reference.
TOLERANCES = {  # dtype: (loss rtol, loss atol, grad rtol, grad atol as a fraction of max |grad|)
    "fp32": (1e-4, 1e-5, 1e-3, 1e-4),
    "bf16": (2e-2, 2e-2, 4e-2, 2e-2),
    "fp16": (5e-3, 5e-3, 1e-2, 5e-3),
}

CSV_COLUMNS = [
    "run", "backend", "problem", "pass", "dtype", "N", "V", "C",
    "status", "note", "verified", "loss_err", "grad_err",
    "median_ms", "p20_ms", "p80_ms", "spread", "wide_spread", "reps", "bytes", "gbps", "copy_gbps", "frac_of_copy",
    "speedup_vs_eager", "peak_extra_mib", "compile_s",
    "device", "device_name", "driver", "machine", *LOAD_COLUMNS, "torch", "triton", "python", "git_commit", "timestamp",
]


def peak_extra_mib(step: Callable[[], object], device: torch.device) -> float:
    """Peak memory one call allocates beyond what existed before it, in MiB (NaN where unmeasurable).

    CUDA: torch.cuda.max_memory_allocated. CPU: the running total of the allocations and frees
    that torch's profiler records for one call (tensors only; buffers a backend keeps between
    calls existed before the call and are not counted).
    """
    if device.type == "cuda":
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        step()
        sync(device)
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
    backend = VARIANTS[name].backend
    return "" if backend == "torch-compile" else backend_unavailable(backend, device)


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
    """The bytes a row's problem must move (module docstring): logits rows read and write (N, V);
    table rows read the (C, V) table and write its (C, V) gradient, plus the N ids of each index."""
    index_bytes = 8 * n * (1 if problem == "logits" else 2)  # int64 targets (and context ids)
    rows = n if problem == "logits" else c  # the logits' rows, or the table's
    total = rows * v * elem + index_bytes + 4  # read the rows once, the indices, write a scalar loss
    if pass_ == "fwd+bwd":
        total += rows * v * elem  # write the gradient once
    return total


def run_bench(config: BenchConfig, log: Callable[[str], None] = print) -> tuple[list[dict], dict]:
    """Verify and time every (shape, dtype, variant, pass) of `config`; return the rows and the environment."""
    device = torch.device(config.device)
    prov = provenance(device)
    started = time.perf_counter()
    copy_gbps, copy_bytes = copy_bandwidth(device, config.copy_mib, config.repetitions)
    log(f"copy bandwidth on {prov['device_name']}: {copy_gbps:.1f} GB/s ({copy_bytes / 2**20:.0f} MiB copied)")
    prov.update(run=config.run_name, copy_gbps=copy_gbps, C=config.table_contexts)
    rows = [dict(prov, backend="copy", problem="copy", **{"pass": "copy"}, dtype="fp32", N=copy_bytes // 4, V=1,
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
            shape = dict(prov, dtype=dtype, N=n, V=v)
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
    env = dict(prov, copy_mib=copy_bytes / 2**20, failures=failures, seconds=time.perf_counter() - started)
    return rows, env


class _Mismatch(Exception):
    pass


def _measure(row: dict, name: str, pass_: str, prob: Problem, torch_compiled, config: BenchConfig,
             device: torch.device, dtype: str, copy_gbps: float) -> None:
    """Verify one variant on the benchmark tensors, then time it; fills `row`."""
    step, check = make_step(name, pass_, prob, torch_compiled)
    t0 = time.perf_counter()
    got = check()  # the first call: includes any compilation
    sync(device)
    first_s = time.perf_counter() - t0
    loss_err, grad_err, wrong = compare(got, prob.ref[VARIANTS[name].problem], dtype, pass_)
    del got
    if wrong:
        raise _Mismatch(wrong)
    median, p20, p80, reps = time_call(step, device, config.repetitions, config.warmup)
    gbps = row["bytes"] / (median * 1e-3) / 1e9
    ratio = spread(p20, p80)
    row.update(status="ok", note="", verified="yes", loss_err=loss_err, grad_err=grad_err,
               median_ms=median, p20_ms=p20, p80_ms=p80, spread=ratio, wide_spread=wide_spread(ratio), reps=reps, gbps=gbps, frac_of_copy=gbps / copy_gbps,
               peak_extra_mib=peak_extra_mib(step, device), compile_s=max(0.0, first_s - median * 1e-3))


def _add_speedups(rows: list[dict]) -> None:
    """speedup_vs_eager = the problem's baseline median / this median, within (dtype, N, V, pass)."""
    base = {(r["problem"], r["dtype"], r["N"], r["V"], r["pass"]): r["median_ms"]
            for r in rows if r.get("status") == "ok" and r["backend"] == BASELINE.get(r["problem"])}
    for r in rows:
        key = (r["problem"], r["dtype"], r["N"], r["V"], r["pass"])
        if r.get("status") == "ok" and key in base and r["backend"] != "copy":
            r["speedup_vs_eager"] = base[key] / r["median_ms"]


