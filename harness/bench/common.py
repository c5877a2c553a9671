"""What every benchmark suite shares: timing, sync, provenance, the long-format CSV and the command line.

Each suite (loss, train, counting, smoothing, static) measures and returns rows, one per
measurement; this module times them, stamps them with where they came from, and writes them;
harness.bench.markdown and harness.bench.plots render the saved files. No suite imports another.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import math
import re
import shlex
import sys
import time
from pathlib import Path
from typing import Callable

import torch

import kernels
from harness.core.env import (cpu_cores, environment, format_load, load_average, load_warning, parse_threads,
                              torch_threads)
from harness.core.errors import HarnessError
from harness.run.config import resolve_device

# re-exported: every suite resolves --device and sets --threads through them
__all__ = ["resolve_device", "torch_threads", "parse_threads"]

SPREAD_LIMIT = 1.5  # a timed row whose p80/p20 exceeds this is marked 'wide' in its report, not trusted as a figure
MAX_ELEMENTS = 2**40  # a size or a shape past this many elements is refused: it would not fit, and 10^10^8 would hang

# ---------------------------------------------------------------------------------------------
# timing


def sync(device: torch.device) -> None:
    """Wait for the device's queued work, so that a wall-clock interval covers it (a no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(step: Callable[[], object], device: torch.device, repetitions: int, warmup: int) -> tuple[float, float, float, int]:
    """Median, p20 and p80 milliseconds of `step` after `warmup` calls, and the repetitions timed.

    CUDA: triton.testing.do_bench with quantiles (it clears L2 before every repetition); its
    repetition window is sized from a first estimate so that at least `repetitions` run. CPU:
    torch.utils.benchmark, one block of calls per repetition (a block is one call unless a call
    is shorter than a millisecond), with torch's current threads (--threads sets them).
    """
    estimate_s = math.inf
    for _ in range(max(1, warmup)):  # the fastest warm-up call sizes the timing (a shared machine stalls some)
        t0 = time.perf_counter()
        step()
        sync(device)
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


def timed(step: Callable[[], object], device: torch.device, min_seconds: float,
          max_repeats: int = 50) -> tuple[float, int, float]:
    """Median seconds of `step` over repeats until `min_seconds` have passed, the repeats timed, and
    their p80/p20 spread (NaN below 3 repeats: one or two passes say nothing of their noise).

    For passes from milliseconds to minutes: one untimed call first, unless that call alone took
    `min_seconds` (a 60 s pass over an expanded corpus runs once and is its own figure).
    """
    t0 = time.perf_counter()
    step()
    sync(device)
    first = time.perf_counter() - t0
    if first >= min_seconds:
        return first, 1, float("nan")
    times, spent = [], 0.0
    while spent < min_seconds and len(times) < max_repeats:
        t0 = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - t0)
        spent += times[-1]
    seconds = torch.tensor(times, dtype=torch.float64)
    ratio = float("nan")
    if len(times) >= 3:
        p20, p80 = torch.quantile(seconds, torch.tensor([0.2, 0.8], dtype=torch.float64)).tolist()
        ratio = spread(p20, p80)
    return float(seconds.median()), len(times), ratio


def spread(low: float, high: float) -> float:
    """high / low of a row's timings (p80 / p20): 1 when every repetition took the same time; NaN when unknown."""
    if low is None or high is None or not (low > 0) or high != high:
        return float("nan")
    return high / low


def wide_spread(ratio: float) -> bool:
    """Whether a row's p80/p20 is too wide for its median to be read as the figure (SPREAD_LIMIT)."""
    return bool(ratio == ratio and ratio > SPREAD_LIMIT)


def recompile_limit_patch():
    """A scoped raise of dynamo's recompile limit, so that torch.compile(F.cross_entropy) does not
    silently fall back to eager after eight dtype / grad-mode / shape variants of the grid."""
    try:
        import torch._dynamo.config as dynamo_config

        name = "recompile_limit" if hasattr(dynamo_config, "recompile_limit") else "cache_size_limit"
        return dynamo_config.patch(**{name: 64})
    except Exception:  # noqa: BLE001 - an older or newer torch without these knobs: run with its defaults
        return contextlib.nullcontext()


def backend_unavailable(backend: str, device: torch.device) -> str:
    """Why a kernels backend cannot be timed on `device` ('' when it can)."""
    if backend == "triton" and device.type != "cuda":
        return "needs CUDA: the Triton kernel runs on a GPU (its CPU interpreter is for tests, not timing)"
    ok, why = kernels.backend_available(backend, device)
    return "" if ok else f"not available: {why}"


# ---------------------------------------------------------------------------------------------
# provenance


def load_avg() -> str:
    """The 1, 5 and 15 minute load averages as text: a shared machine's other work slows every measurement."""
    return format_load(load_average())


def parse_load(text) -> tuple[float, float, float] | None:
    """'3.08 4.95 4.08' (a CSV cell) -> floats; None for 'unknown' or an empty cell."""
    try:
        one, five, fifteen = (float(x) for x in str(text).split()[:3])
        return one, five, fifteen
    except ValueError:
        return None


class MachineLoad:
    """The threads a suite measures with and the load average before and after: columns of every row.

    `with MachineLoad(threads, how) as machine:` sets torch's threads for the block and reads the
    load on entry and exit; `machine.columns()` is what each row carries, and `machine.warning()`
    says when other work competed for the cores (harness.core.env.load_warning).
    """

    def __init__(self, threads: int, how: str = "given"):
        self.threads, self.how, self.cores = threads, how, cpu_cores()
        self.start = self.end = None
        self._threads = None

    def __enter__(self):
        self.start = load_average()
        self._threads = torch_threads(self.threads)
        self._threads.__enter__()
        return self

    def __exit__(self, *exc):
        self.end = load_average()
        return self._threads.__exit__(*exc)

    def columns(self) -> dict:
        return {"threads": self.threads, "threads_how": self.how, "cores": self.cores,
                "load_avg_start": format_load(self.start),
                "load_avg_end": format_load(self.end if self.end is not None else load_average())}

    def warning(self) -> str:
        return load_warning(self.start, self.end, self.threads, self.cores)


LOAD_COLUMNS = ["threads", "threads_how", "cores", "load_avg_start", "load_avg_end"]


def nltk_version() -> str:
    try:
        import nltk

        return nltk.__version__
    except ImportError:
        return "not installed"


def now_utc() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def provenance(device: torch.device, *, nltk: bool = False) -> dict:
    """The environment block of every row: device, machine, library versions, git commit, load, time."""
    env = environment(device)
    prov = {"device": str(device), "device_name": env["device_name"], "driver": env.get("driver", "n/a"),
            "machine": env["machine"], "load_avg": load_avg(), "torch": env["torch"], "triton": env["triton"],
            "python": env["python"], "git_commit": env["git_commit"], "timestamp": now_utc()}
    if nltk:
        prov["nltk"] = nltk_version()
    return prov


def device_kind(device: torch.device) -> str:
    """A short name for run folders: 'cpu', or the GPU's model such as 'h100'."""
    if device.type != "cuda":
        return "cpu"
    words = [w for w in re.split(r"[^a-z0-9]+", torch.cuda.get_device_name(device).lower()) if w and w != "nvidia"]
    return words[0] if words else "cuda"


def out_dir_for(out: str | None, suite: str, device: torch.device) -> Path:
    """--out, or reports/<suite>-<device kind>-<UTC time>."""
    if out:
        return Path(out)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    return Path("reports") / f"{suite}-{device_kind(device)}-{stamp}"


def command_line() -> str:
    """The `python -m harness bench ...` command that is running, for the report; '' when not run so."""
    return "python -m harness " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["bench"] else ""


# ---------------------------------------------------------------------------------------------
# the long-format CSV: one row per measurement


def read_rows(csv_path: Path):
    """A saved CSV as a DataFrame; empty cells are NaN, text such as 'n/a' or 'None' stays text."""
    import pandas as pd

    return pd.read_csv(csv_path, keep_default_na=False, na_values=[""])


def write_rows(rows: list[dict], csv_path: Path, columns: list[str], key: list[str] | None = None) -> None:
    """Write rows to csv_path in `columns`' order (a missing value is an empty cell, other keys dropped).

    With `key`, rows already in the file are kept unless a new row has the same key values, so
    several runs (corpora, orders) share one report; without it the file is replaced.
    """
    import pandas as pd

    new = pd.DataFrame(rows).reindex(columns=columns)
    if key and csv_path.exists():
        old = read_rows(csv_path).reindex(columns=columns)
        new_keys = set(map(tuple, new[key].astype(str).values.tolist()))
        old = old[[tuple(k) not in new_keys for k in old[key].astype(str).values.tolist()]]
        new = pd.concat([old, new], ignore_index=True)
    new.to_csv(csv_path, index=False)


# ---------------------------------------------------------------------------------------------
# option parsing shared by the suites


def split_list(values: list[str] | None) -> list[str]:
    """['a,b', 'c'] -> ['a', 'b', 'c']: options that take comma or space separated lists."""
    if values is None:
        return []
    return [item for value in values for item in re.split(r"[,\s]+", value.strip()) if item]


def parse_size(text: str, option: str) -> int:
    """'4096', '2^12' or '2**12' -> int, at most MAX_ELEMENTS; anything else is the user's mistake.

    The bound is checked before the power is computed: 10^100000000 is refused, not evaluated.
    """
    text = text.strip()
    m = re.fullmatch(r"(\d+)\s*(?:\^|\*\*)\s*(\d+)", text)
    digits = [m.group(1), m.group(2)] if m else [text]
    if any(len(d.lstrip("0")) > 20 for d in digits):
        raise HarnessError(f"{option}: {text[:40]!r}{'...' if len(text) > 40 else ''} is too large "
                           f"(sizes go up to 2^{MAX_ELEMENTS.bit_length() - 1})")
    try:
        if m:
            base, exponent = int(m.group(1)), int(m.group(2))
            if base > 1 and exponent * math.log2(base) > math.log2(MAX_ELEMENTS):
                raise HarnessError(f"{option}: {text!r} is larger than 2^{MAX_ELEMENTS.bit_length() - 1}")
            value = base ** exponent
        else:
            value = int(text)
    except ValueError:
        raise HarnessError(f"{option}: {text!r} is not a whole number (write e.g. 4096 or 2^12)") from None
    if value < 1:
        raise HarnessError(f"{option}: sizes must be >= 1, got {value}")
    if value > MAX_ELEMENTS:
        raise HarnessError(f"{option}: {text!r} is larger than 2^{MAX_ELEMENTS.bit_length() - 1}")
    return value


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
