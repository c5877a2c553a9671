"""Provenance of a run: the machine, the device, library versions and the git commit."""
from __future__ import annotations

import contextlib
import math
import os
import platform
import subprocess
from pathlib import Path

import torch

from harness.core.errors import HarnessError


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo where Linux has it, else platform's answer."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_cores() -> int:
    """CPU cores this process may run on (its affinity where Linux says, else os.cpu_count())."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def load_average() -> tuple[float, float, float] | None:
    """The 1, 5 and 15 minute load averages (runnable threads, ours included), or None where unknown."""
    try:
        one, five, fifteen = (float(x) for x in Path("/proc/loadavg").read_text().split()[:3])
        return one, five, fifteen
    except (OSError, ValueError):
        try:
            return os.getloadavg()
        except (AttributeError, OSError):
            return None


def format_load(load: tuple[float, float, float] | None) -> str:
    """'3.08 4.95 4.08', or 'unknown'."""
    return "unknown" if load is None else " ".join(f"{x:.2f}" for x in load)


def free_cores(cores: int, load_1min: float | None) -> int:
    """Cores the other work leaves free: cores minus the 1-minute load, rounded, at least 1 and at most cores."""
    if load_1min is None:
        return cores
    return max(1, min(cores, math.floor(cores - load_1min + 0.5)))


def parse_threads(text: str | int | None, default: str | int = "auto", option: str = "--threads") -> tuple[int, str]:
    """--threads N or 'auto' -> (threads, how it was chosen).

    'auto' takes the cores the load average leaves free (free_cores), so that on a shared
    machine torch's intra-op threads do not wait for cores other work holds: on a 2-core
    machine with a load of 1 or more that is 1 thread, on an idle one 2.
    """
    text = default if text is None else text
    if str(text).strip().lower() == "auto":
        cores, load = cpu_cores(), load_average()
        threads = free_cores(cores, None if load is None else load[0])
        return threads, f"auto: {cores} cores, load {format_load(load)}"
    try:
        threads = int(str(text).strip())
    except ValueError:
        raise HarnessError(f"{option}: {text!r} is not a whole number or 'auto'") from None
    if threads < 1 or threads > 4096:
        raise HarnessError(f"{option} must be between 1 and 4096 (or auto), got {threads}")
    return threads, "given"


@contextlib.contextmanager
def torch_threads(threads: int, option: str = "--threads"):
    """torch's intra-op CPU threads set to `threads` inside the block, restored after it."""
    if threads < 1:
        raise HarnessError(f"{option} must be >= 1, got {threads}")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def load_warning(load_start: tuple | None, load_end: tuple | None, threads: int, cores: int) -> str:
    """A sentence when other work competed for the cores a measurement used, else ''.

    Other work is the 1-minute load before the measurement, and after it the load less our own
    threads; it competes when it exceeds the cores our threads leave free (cores - threads).
    """
    free = cores - threads
    others = [x for x in ((load_start or (None,))[0], None if load_end is None else load_end[0] - threads) if x is not None]
    worst = max(others, default=None)
    if worst is None or worst <= free:
        return ""
    return (f"other work competed for the cores: a load of {worst:.2f} besides this run's {threads} thread(s) on "
            f"{cores} cores ({max(free, 0)} free); timings may be slower and more spread than on an idle machine")


def device_name(device: torch.device | str) -> str:
    """A human name for a torch device: the GPU's name, or the CPU model and core count."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_name()} ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"


def git_commit(path: Path | None = None) -> str:
    """The short git commit of the source tree (with -dirty when it has changes), or 'unknown'."""
    where = path or Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=10"],
            cwd=where, capture_output=True, text=True, timeout=10,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def triton_version() -> str:
    try:
        import triton

        return triton.__version__
    except Exception as exc:  # noqa: BLE001 - any import failure means "not available"
        return f"not available ({type(exc).__name__})"


def environment(device: torch.device | str) -> dict:
    """Everything a report needs to say where its figures came from."""
    device = torch.device(device)
    info = {
        "hostname": platform.node(),
        "machine": f"{platform.system()} {platform.machine()}, {cpu_name()}, {os.cpu_count()} cores",
        "device": str(device),
        "device_name": device_name(device),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "triton": triton_version(),
        "git_commit": git_commit(),
    }
    if device.type == "cuda":
        info["cuda"] = torch.version.cuda
        try:
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True, text=True, timeout=10,
            )
            info["driver"] = out.stdout.strip().splitlines()[0] if out.stdout.strip() else "unknown"
        except (OSError, subprocess.SubprocessError):
            info["driver"] = "unknown"
    return info
