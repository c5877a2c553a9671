"""Device memory: how much is free, the working budget of chunked passes, and the peak a run reached.

psutil is not a dependency: on CPU the free memory is MemAvailable of /proc/meminfo (Linux),
on CUDA torch.cuda.mem_get_info. A chunked pass (expanding a corpus, counting or scoring its
windows) sizes its chunks so that its temporaries stay within the budget. torch is imported where
a device is asked about, so parse_bytes serves the torch-free `score --arpa` path (harness.cli_fast).
"""
from __future__ import annotations

import re
import resource
import sys
from pathlib import Path

from harness.core.errors import HarnessError

DEFAULT_FRACTION = 0.25  # of the free memory: the chunk temporaries; the corpus and tables live outside it
FALLBACK_FREE_BYTES = 4 * 1024**3  # where the free memory cannot be read
MIN_BUDGET_BYTES = 16 * 1024**2
_UNITS = {"": 1, "B": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def free_bytes(device: torch.device | str) -> int:
    """Free memory of a device in bytes: MemAvailable on a CPU (Linux), mem_get_info on CUDA."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return FALLBACK_FREE_BYTES


def parse_bytes(text: str | int | None, option: str = "--max-memory") -> int:
    """'4G', '512M', '1.5G', '300000000' or 'auto'/0/None (-> 0, meaning the default) to bytes."""
    if text is None or text == 0 or (isinstance(text, str) and text.strip().lower() in ("", "auto", "0")):
        return 0
    if isinstance(text, int):
        value = text
    else:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*", text, flags=re.IGNORECASE)
        if not m:
            raise HarnessError(f"{option}: {text!r} is not a size; write e.g. 4G, 512M or auto")
        value = int(float(m.group(1)) * _UNITS[m.group(2).upper()])
    if value < MIN_BUDGET_BYTES:
        raise HarnessError(f"{option}: {value:,} bytes is too small; give at least {MIN_BUDGET_BYTES // 1024**2}M (or auto)")
    return value


def memory_budget(device: torch.device | str, max_bytes: int = 0) -> int:
    """The byte budget of a chunked pass: `max_bytes` when given, else a fraction of the free memory."""
    if max_bytes:
        return int(max_bytes)
    return max(MIN_BUDGET_BYTES, int(DEFAULT_FRACTION * free_bytes(device)))


def peak_bytes(device: torch.device | str) -> int:
    """Peak memory so far: torch.cuda.max_memory_allocated on CUDA, the process's max RSS on CPU."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)  # bytes on macOS, KiB on Linux
