"""`python -m harness bench --static`: static compile facts of the Triton kernels, no GPU needed.

Compiles every launch the launchers would make on the GPU bench grid (kernels.static) for
each requested architecture and writes static.csv (long format, one row per launch x arch)
and static.md rendered from it. Nothing here is a GPU time.
"""
from __future__ import annotations

import datetime as dt
import platform
import time
from pathlib import Path
from typing import Callable

from harness.core.env import cpu_name, git_commit, triton_version
from harness.core.errors import HarnessError

KERNEL_ORDER = ["_ce_rows_kernel", "_ce_flat_kernel", "_ce_loop_kernel",
                "_table_logsumexp_kernel", "_table_rows_kernel", "_table_grad_kernel"]
# Columns that tell launches apart in the markdown; launches equal in all of these but N share a row.
GROUP = ["V", "tiling", "chosen", "block", "num_warps", "num_stages", "dtype", "mode", "weights"]
FACTS = ["registers", "spilled_bytes", "spill_instructions", "smem_per_block", "warps_per_sm", "occupancy",
         "occupancy_limiter", "logits_load_bits", "grad_store_bits", "specialisation", "compile_s"]


def parse_archs(text: str) -> list[str]:
    """'sm_80,sm_90' -> ['sm_80', 'sm_90'], each checked against kernels.static.ARCH_LIMITS."""
    from kernels.static import ARCH_LIMITS

    archs = [a.strip() for a in text.replace(" ", ",").split(",") if a.strip()]
    unknown = [a for a in archs if a not in ARCH_LIMITS]
    if not archs or unknown:
        raise HarnessError(f"--arch: unknown architecture {', '.join(unknown) or '(none)'}; "
                           f"choose from {', '.join(ARCH_LIMITS)}, comma separated")
    return archs


def static_main(archs: list[str], out_dir: Path, log: Callable[[str], None] = print) -> int:
    """Compile every launch of the bench grid for `archs`; write static.csv and static.md under out_dir."""
    from harness.bench.loss import GPU_NS, GPU_VS, BenchConfig
    from kernels import static

    if not static.HAS_TRITON:
        raise HarnessError(f"bench --static needs Triton, which does not import here ({static.TRITON_IMPORT_ERROR})")
    archs = parse_archs(",".join(archs))
    out_dir.mkdir(parents=True, exist_ok=True)
    contexts = BenchConfig().table_contexts
    vs = sorted(GPU_VS)
    launches = static.bench_launches(list(GPU_NS), vs, list(static.DTYPES), contexts)
    log(f"bench --static: {len(launches)} launches on N {GPU_NS[0]}..{GPU_NS[-1]} x V {vs} x fp32/fp16/bf16, "
        f"for {', '.join(archs)} (identical specialisations compile once)")
    started = time.perf_counter()
    rows = static.static_rows(archs, launches, log=log)
    env = dict(machine=f"{cpu_name()}, {platform.system()} {platform.machine()}", python=platform.python_version(),
               torch=_torch_version(), triton=triton_version(), git_commit=git_commit(),
               timestamp=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
    for row in rows:
        row.update(env)
    import pandas as pd

    frame = pd.DataFrame(rows).drop(columns=["compile_key"])
    frame.to_csv(out_dir / "static.csv", index=False)
    unique = len({r["compile_key"] for r in rows})
    (out_dir / "static.md").write_text(render_markdown(out_dir / "static.csv", archs, contexts, unique))
    bad = frame[(frame["spilled_bytes"] > 0) | (frame["spill_instructions"] > 0) | (frame["warps_per_sm"] == 0)]
    log(f"report: {out_dir / 'static.md'} ({unique} compiles, {time.perf_counter() - started:.0f} s)")
    if len(bad):
        log(f"{len(bad)} launch(es) spill or cannot launch; see the report")
        return 1
    return 0


def _torch_version() -> str:
    import torch

    return torch.__version__


def render_markdown(csv_path: Path, archs: list[str], contexts: int, unique_compiles: int) -> str:
    """static.md from static.csv: header, limits, the small-V choice, one table per kernel x arch."""
    import pandas as pd

    from kernels import static, triton_ce

    df = pd.read_csv(csv_path)
    first = df.iloc[0]
    lines = [
        f"# Static compile facts: {', '.join(archs)}",
        "",
        "What a GPU would run, read on a machine without one. Every kernel launch the launchers "
        "(`kernels.triton_ce.kernel_calls`, the three launch helpers of `kernels.triton_table`) would make on the "
        "GPU bench grid was specialised as Triton's JIT would specialise it (pointers 16-byte aligned, "
        "integers that are multiples of 16 marked divisible: a row stride of 4096 is, one of 27 or 729 is not), "
        "compiled with `triton.compile` for each architecture, and read back with the tools in Triton's wheel "
        "(`cuobjdump --dump-resource-usage`, `nvdisasm`). **No kernel ran and nothing here is a GPU time**; "
        "occupancy is theoretical, from the limits below.",
        "",
        f"- machine: {first['machine']}; python {first['python']}, torch {first['torch']}, triton {first['triton']}; "
        f"git {first['git_commit']}; {first['timestamp']}",
        f"- grid: N = 2^12 .. 2^24, V = {', '.join(str(v) for v in sorted(df['V'].unique()))}; fp32, fp16, bf16; "
        f"cross_entropy with the gradient into a new buffer, over the logits, or none (forward only), with and "
        f"without weights; table_cross_entropy with C = {contexts} contexts. Targets int64, weights fp32.",
        f"- {len(df)} launch x architecture rows, {unique_compiles} distinct compiles (the same configuration for "
        "many N, or in place and not, specialises identically: Triton does not see aliasing). Tables below merge "
        "rows that differ only in N. `compile s` is a cold compile on this (shared, 2-core) machine.",
        "",
        "## Architecture limits used for occupancy",
        "",
        "| arch | registers / SM | max registers / thread | register allocation | max warps / SM | "
        "max blocks / SM | max threads / block | shared memory / SM | shared allocation |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for arch in archs:
        lim = static.ARCH_LIMITS[arch]
        lines.append(f"| {arch} | {lim.regs_per_sm} | {lim.max_regs_per_thread} | {lim.reg_alloc_unit} per warp "
                     f"(8 per thread), warps in groups of {lim.warp_alloc_granularity} | {lim.max_warps_per_sm} | "
                     f"{lim.max_blocks_per_sm} | {lim.max_threads_per_block} | {lim.smem_per_sm // 1024} KB | "
                     f"{lim.smem_alloc_unit} B units + {lim.smem_reserved_per_block} B reserved per block |")
    lines += [
        "",
        "Shared memory per block = Triton's dynamic shared memory + cuobjdump's static `SHARED` + the runtime's "
        "1 KB reserve (sm_90 builds already list 1 KB as static shared, taken to be that reserve; sm_80 builds list "
        "0). Warps per SM = whole blocks that fit by registers, shared memory, 64 warps and 32 blocks, times "
        "warps per block. Spilled bytes = cuobjdump's STACK + LOCAL; spill instructions = LDL/STL in the SASS.",
        "",
        "Load and store widths are bits per thread per instruction (128 = `LDG.E.128`, 64 = `LDG.E.64`, "
        "32 = `LDG.E`, 16 = `LDG.E.U16`): the widest global load through the logits (or table) pointer and the "
        "widest store through the gradient pointer, traced in Triton's LLVM IR from the kernel argument to each "
        "`ld.global`/`st.global` and checked to exist at that width in the SASS. 0 = no such access "
        "(forward only, or a kernel that does not touch it). `divisible by 16` lists the arguments Triton's JIT "
        "specialised as multiples of 16.",
        "",
        "## Small vocabularies: which layout the launcher picks",
        "",
        _small_v_paragraph(df, triton_ce.SMALL_V_TILING),
        "",
    ]
    for arch in archs:
        for kernel in KERNEL_ORDER:
            part = df[(df["arch"] == arch) & (df["kernel"] == kernel)]
            if len(part):
                lines += [f"## `{kernel}` on {arch} ({part['problem'].iloc[0]})", "", _table(part), ""]
    return "\n".join(lines)


def _n_range(ns) -> str:
    ns = sorted(set(int(n) for n in ns))
    text = lambda n: f"2^{n.bit_length() - 1}" if n & (n - 1) == 0 else str(n)  # noqa: E731
    return text(ns[0]) if len(ns) == 1 else f"{text(ns[0])}..{text(ns[-1])}"


def _table(part) -> str:
    grouped = part.groupby(GROUP, sort=False, dropna=False).agg(
        N=("N", _n_range), **{f: (f, "first") for f in FACTS}).reset_index()
    grouped["occupancy"] = [f"{w} ({o:.0%}, {lim})" for w, o, lim in
                            zip(grouped["warps_per_sm"], grouped["occupancy"], grouped["occupancy_limiter"])]
    grouped["spilled"] = [f"{b} B / {i}" for b, i in zip(grouped["spilled_bytes"], grouped["spill_instructions"])]
    grouped["chosen"] = grouped["chosen"].map({True: "yes", False: "no (alternative)"})
    grouped["compile_s"] = grouped["compile_s"].map(lambda s: f"{s:.2f}")
    columns = {"V": "V", "N": "N", "tiling": "tiling", "chosen": "launcher picks", "block": "block",
               "num_warps": "warps", "num_stages": "stages", "dtype": "dtype", "mode": "mode", "weights": "weights",
               "registers": "regs/thread", "spilled": "spilled (bytes / LDL+STL)", "smem_per_block": "smem/block B",
               "occupancy": "warps/SM (occupancy, limiter)", "logits_load_bits": "logits load bits",
               "grad_store_bits": "grad store bits", "specialisation": "divisible by 16", "compile_s": "compile s"}
    return grouped[list(columns)].rename(columns=columns).to_markdown(index=False)


def _small_v_paragraph(df, tiling: str) -> str:
    """The small-V comparison, with the numbers of this very report."""
    ce = df[df["problem"] == "cross_entropy"]
    facts = []
    for arch in sorted(ce["arch"].unique()):
        for v in (27, 729):
            for dtype in ("fp32", "bf16"):
                pick = ce[(ce["arch"] == arch) & (ce["V"] == v) & (ce["dtype"] == dtype) & (ce["mode"] == "grad new")
                          & ~ce["weights"]]
                cells = []
                for layout in ("rows", "flat"):
                    r = pick[pick["tiling"] == layout]
                    if len(r):
                        r = r.iloc[0]
                        cells.append(f"{layout} {r['registers']} regs, {r['warps_per_sm']} warps/SM, "
                                     f"{r['logits_load_bits']}-bit loads, {r['smem_per_block']} B smem")
                if cells:
                    facts.append(f"{arch} V={v} {dtype}: " + "; ".join(cells))
    return (
        "A tile of whole rows (`rows`, a ROWS x next_pow2(V) tile) with row stride 27 or 729 has no row start "
        "Triton can prove 16-byte aligned, so each thread loads and stores one element at a time. The `flat` "
        "layout reads the same rows as one contiguous run of ROWS x V elements whose start is 16-byte aligned "
        "(ROWS a multiple of 4 for fp32, 8 for fp16/bf16) and regroups it into rows with `tl.gather` through "
        "shared memory, and the gradient back: 128-bit loads and stores for every dtype. Both are compiled above "
        "for every small-V shape (`launcher picks` says which one launches). Gradient into a new buffer, no weights: "
        + " | ".join(facts) + ". "
        f"The launcher picks **{tiling}** (`kernels.triton_ce.SMALL_V_TILING`): both layouts move the same bytes "
        "per thread in coalesced warps, and rows has equal or higher theoretical occupancy at V = 27 with no "
        "shared-memory round trip; flat's gain, 4x (fp32) to 8x (bf16) fewer load and store instructions, "
        "matters only where issuing memory instructions rather than DRAM bandwidth limits the kernel, which only a "
        "GPU timing can show, and none has been taken. The flat layout is tested under the interpreter and "
        "selectable by setting SMALL_V_TILING = \"flat\"."
    )


def main(argv: list[str] | None = None) -> int:
    """`python -m harness.bench.static [--arch sm_80,sm_90] [--out DIR]`: the same as `bench --static`."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m harness.bench.static", description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="sm_80,sm_90", help="architectures, comma separated (default %(default)s)")
    parser.add_argument("--out", default=None, help="report folder (default reports/static-<archs>)")
    args = parser.parse_args(argv)
    try:
        archs = parse_archs(args.arch)
        out = Path(args.out) if args.out else Path("reports") / ("static-" + "-".join(archs))
        return static_main(archs, out, log=lambda line: print(line, flush=True))
    except HarnessError as exc:
        print(f"error: {exc}", flush=True)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
