"""`python -m harness bench --static`: static compile facts of the Triton kernels, no GPU needed.

Compiles every launch the launchers would make on the GPU bench grid (kernels.static) for
each requested architecture and writes static.csv (long format, one row per launch x arch)
and static.md rendered from it (harness.bench.static_markdown). Nothing here is a GPU time.
"""
from __future__ import annotations

from typing import Callable

import torch

from harness.bench.common import provenance
from harness.bench.config import GPU_NS, GPU_VS
from harness.core.errors import HarnessError

KERNEL_ORDER = ["_ce_rows_kernel", "_ce_flat_kernel", "_ce_loop_kernel",
                "_table_logsumexp_kernel", "_table_rows_kernel", "_table_grad_kernel"]
# Columns that tell launches apart in the markdown; launches equal in all of these but N share a row.
GROUP = ["V", "tiling", "chosen", "block", "num_warps", "num_stages", "dtype", "mode", "weights"]
FACTS = ["registers", "spilled_bytes", "spill_instructions", "smem_per_block", "warps_per_sm", "occupancy",
         "occupancy_limiter", "logits_load_bits", "grad_store_bits", "specialisation", "compile_s"]
PROVENANCE = ["machine", "python", "torch", "triton", "git_commit", "timestamp"]  # the columns after kernels.static's


def parse_archs(text: str) -> list[str]:
    """'sm_80,sm_90' -> ['sm_80', 'sm_90'], each checked against kernels.static.ARCH_LIMITS."""
    from kernels.static import ARCH_LIMITS

    archs = [a.strip() for a in text.replace(" ", ",").split(",") if a.strip()]
    unknown = [a for a in archs if a not in ARCH_LIMITS]
    if not archs or unknown:
        raise HarnessError(f"--arch: unknown architecture {', '.join(unknown) or '(none)'}; "
                           f"choose from {', '.join(ARCH_LIMITS)}, comma separated")
    return archs


def run_static(archs: list[str], contexts: int, log: Callable[[str], None] = print) -> tuple[list[dict], int]:
    """Compile every launch of the GPU bench grid for `archs`: rows with provenance, and the distinct compiles."""
    from kernels import static

    if not static.HAS_TRITON:
        raise HarnessError(f"bench --static needs Triton, which does not import here ({static.TRITON_IMPORT_ERROR})")
    vs = sorted(GPU_VS)
    launches = static.bench_launches(list(GPU_NS), vs, list(static.DTYPES), contexts)
    log(f"bench --static: {len(launches)} launches on N {GPU_NS[0]}..{GPU_NS[-1]} x V {vs} x fp32/fp16/bf16, "
        f"for {', '.join(archs)} (identical specialisations compile once)")
    rows = static.static_rows(archs, launches, log=log)
    prov = provenance(torch.device("cpu"))
    env = {k: prov[k] for k in PROVENANCE}
    unique = len({r["compile_key"] for r in rows})
    for row in rows:
        row.update(env)
        del row["compile_key"]
    return rows, unique
