"""static.md, rendered from the static.csv that `bench --static` saved: what a GPU would run, read without one."""
from __future__ import annotations

from pathlib import Path

from harness.bench.static import FACTS, GROUP, KERNEL_ORDER


def render_static(csv_path: Path, archs: list[str], contexts: int, unique_compiles: int) -> str:
    """static.md from static.csv: header, limits, the small-V choice, one table per kernel x arch."""
    import pandas as pd

    from kernels import static, triton_ce  # triton's import waits until a static report is rendered

    df = pd.read_csv(csv_path)
    first = df.iloc[0]
    lines = [
        f"# Static compile facts: {', '.join(archs)}",
        "",
        "What a GPU would run, read on a machine without one. Every kernel launch the launchers "
        "(`kernels.triton_ce.kernel_calls`, `logsumexp_call` / `rows_call` / `grad_call` of `kernels.triton_table`) would make on the "
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
        "launched only when asked for, with `tiling=\"flat\"`."
    )


