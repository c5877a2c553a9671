"""Static compile facts of the Triton kernels: what a GPU would run, read on a machine without one.

For every launch the launchers would make on a grid of shapes, this module asks Triton's own
JIT binder for the specialisation it would apply (argument types, and `tt.divisibility` 16 on
pointers and integers that are multiples of 16: a row stride of 4096 is, one of 27 is not),
compiles that with `triton.compile(ASTSource(...), target=GPUTarget("cuda", cc, 32))`, and
reads the cubin with the tools in Triton's wheel (triton/backends/nvidia/bin):

    cuobjdump --dump-resource-usage   registers per thread, stack, local memory, static shared
    nvdisasm (SASS)                   the width of every global load and store (LDG.E.128,
                                      LDG.E.64, LDG.E, LDG.E.U16, ...)

The widths of the logits' loads and of the gradient's stores are found in Triton's LLVM IR,
where each ld.global / st.global traces back through getelementptr to the kernel argument it
came from (line info cannot do this: LLVM moves a load's debug line to its first use), and
each is checked to exist at that width in the SASS.

plus Triton's own dynamic shared-memory size, and a theoretical occupancy from the
architecture limits in ARCH_LIMITS. Nothing here runs a kernel or times anything.

The launches come from the launchers' own plans, fed meta tensors: kernels.triton_ce.kernel_calls
for the cross-entropy (both small-V layouts: the default "rows" and the "flat" one a caller
asks for with tiling="flat"), and kernels.triton_table's logsumexp_call / rows_call /
grad_call with its buffer helpers for the table. Identical specialisations compile once (the
same CEConfig for many N, in place or not).
"""
from __future__ import annotations

import re
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from kernels import triton_ce, triton_table
from kernels.availability import triton_import
from kernels.triton_ce import HAS_TRITON, TRITON_IMPORT_ERROR

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class ArchLimits:
    """The per-SM limits the occupancy estimate uses (CUDA C Programming Guide, compute capability table)."""

    cc: int
    regs_per_sm: int = 65536
    max_regs_per_thread: int = 255
    reg_alloc_unit: int = 256  # registers are allocated per warp in units of 256 (8 per thread)
    warp_alloc_granularity: int = 4  # warps a register file is carved for, in multiples of 4
    max_warps_per_sm: int = 64
    max_blocks_per_sm: int = 32
    max_threads_per_block: int = 1024
    smem_per_sm: int = 0  # bytes, the largest carve-out
    smem_alloc_unit: int = 128
    smem_reserved_per_block: int = 1024  # the CUDA runtime's reserve per block (sm_80 and later)


ARCH_LIMITS = {
    "sm_80": ArchLimits(cc=80, smem_per_sm=164 * 1024),
    "sm_90": ArchLimits(cc=90, smem_per_sm=228 * 1024),
}


def check_archs(archs: list[str]) -> None:
    unknown = [a for a in archs if a not in ARCH_LIMITS]
    if unknown:
        raise ValueError(f"unknown architecture(s) {', '.join(unknown)}; choose from {', '.join(ARCH_LIMITS)}")


def _round_up(x: int, unit: int) -> int:
    return -(-x // unit) * unit


def occupancy(limits: ArchLimits, regs_per_thread: int, smem_per_block: int, num_warps: int) -> tuple[int, str]:
    """(resident warps per SM, what limits it) for a block of num_warps warps.

    Registers: a warp takes round_up(regs * 32, 256) registers; the warps the register file holds
    are rounded down to a multiple of 4, then to whole blocks. Shared memory: a block takes its
    bytes plus the runtime's 1 KB reserve, in 128-byte units (the sm_90 builds already list that
    1 KB as static shared; it is then not added twice, see static_rows). Then the 64-warp and
    32-block limits. Returns (0, why) if a block cannot launch at all.
    """
    threads = num_warps * 32
    if threads > limits.max_threads_per_block:
        return 0, "threads per block"
    if regs_per_thread > limits.max_regs_per_thread:
        return 0, "registers per thread"
    regs_per_warp = _round_up(max(regs_per_thread, 1) * 32, limits.reg_alloc_unit)
    warps_by_regs = (limits.regs_per_sm // regs_per_warp) // limits.warp_alloc_granularity * limits.warp_alloc_granularity
    blocks = {
        "registers": warps_by_regs // num_warps,
        "shared memory": limits.smem_per_sm // _round_up(max(smem_per_block, 1), limits.smem_alloc_unit),
        "warps": limits.max_warps_per_sm // num_warps,
        "blocks": limits.max_blocks_per_sm,
    }
    limiter = min(blocks, key=lambda k: blocks[k])
    return blocks[limiter] * num_warps, limiter


# ---------------------------------------------------------------------------------------------
# what the launchers would launch


@dataclass
class Launch:
    """One kernel launch of a launcher, described: the compile inputs and the labels of the report."""

    problem: str  # "cross_entropy" or "table_cross_entropy"
    kernel: object  # the JITFunction
    args: tuple  # as the launcher passes them (meta tensors stand for device tensors)
    options: dict  # constexprs and num_warps / num_stages, as the launcher passes them
    tiling: str
    dtype: str
    mode: str  # what the launch is for: "grad new", "grad in place", "forward only", ...
    weights: bool
    V: int
    N: int
    chosen: bool = True  # False: an alternative layout the launcher does not pick for this shape

    @property
    def kernel_name(self) -> str:
        return self.kernel.fn.__name__


def _meta(*shape, dtype=torch.float32) -> torch.Tensor:
    # Meta tensors have data_ptr 0 (+ any view offset): as aligned as a fresh CUDA allocation.
    return torch.empty(*shape, dtype=dtype, device="meta")


def _ce_launches(n: int, v: int, dtype_name: str, mode: str, weights: bool, tiling: str | None = None) -> list[Launch]:
    """The cross-entropy launches for contiguous (n, v) logits, from the launcher's kernel_calls.

    tiling: None = what choose_config picks; "rows" or "flat" = that small-V layout instead
    (for the report's comparison; marked chosen=False when it is not the launcher's pick).
    """
    dtype = DTYPES[dtype_name]
    logits = _meta(n, v, dtype=dtype)
    grad = {"grad new": _meta(n, v, dtype=dtype), "grad in place": logits, "forward only": None}[mode]
    weight = _meta(n) if weights else None
    chosen = tiling is None or tiling == triton_ce.choose_config(n, v, dtype, row_stride=v).tiling
    calls = triton_ce.kernel_calls(logits, grad, _meta(n, dtype=torch.int64), weight, _meta(1), _meta(n), -100,
                                   tiling=tiling)
    names = {triton_ce._ce_rows_kernel: "rows", triton_ce._ce_flat_kernel: "flat", triton_ce._ce_loop_kernel: "loop"}
    return [Launch("cross_entropy", kernel, args, options, names[kernel], dtype_name, mode, weights, v, n,
                   chosen=chosen) for kernel, _, args, options in calls]


def _table_launches(n: int, v: int, contexts: int, dtype_name: str) -> list[Launch]:
    """The table launches, from kernels.triton_table's launch plan (logsumexp_call, rows_call, grad_call)."""
    dtype = DTYPES[dtype_name]
    config = triton_table.choose_table_config(contexts, v)
    table = _meta(contexts, v, dtype=dtype)
    context, target = _meta(n, dtype=torch.int64), _meta(n, dtype=torch.int64)
    row_max, row_logsum, counts, scale = _meta(contexts), _meta(contexts), _meta(contexts, v), _meta(1)
    common = dict(dtype=dtype_name, V=v, N=n)

    def launch(call, tiling, mode, weights):
        kernel, _, args, options = call
        return Launch("table_cross_entropy", kernel, args, options, tiling, mode=mode, weights=weights, **common)

    launches = [launch(triton_table.logsumexp_call(table, row_max, row_logsum, config), config.tiling,
                       "forward", False)]
    # The row kernel: forward with a gradient ("mean"/"sum": partial sums + counts), forward
    # without one, forward of "none" (per-row losses), each with and without weights; and
    # backward of "none" (counts only, weighted by w * grad_output: always a weight).
    row_modes = [("forward + counts", True, True, False), ("forward only", True, False, False),
                 ("forward, none", True, False, True), ("backward, none", False, True, False)]
    for mode, write_loss, scatter, row_loss in row_modes:
        for weights in ((True,) if mode == "backward, none" else (False, True)):
            losses = dict(row_max=row_max, row_logsum=row_logsum, row_loss=row_loss,
                          loss=triton_table.rows_loss_buffer(n, row_loss, config, "meta")) if write_loss else {}
            call = triton_table.rows_call(table, context, target, _meta(n) if weights else None, -100, config,
                                          counts=counts if scatter else None, **losses)
            launches.append(launch(call, "rows", mode, weights))
    grad = triton_table.grad_buffer(table, counts)
    launches.append(launch(triton_table.grad_call(table, row_max, row_logsum, counts, grad, scale, config),
                           config.tiling, "backward (over the counts)" if grad is counts else "backward", False))
    return launches


def bench_launches(ns: list[int], vs: list[int], dtypes: list[str], table_contexts: int) -> list[Launch]:
    """Every launch the launchers would make on the grid N x V x dtype x mode x weights.

    Cross-entropy: gradient into a new buffer, over the logits, or none (forward only), with
    and without weights; for unaligned small V both the launcher's small-V layout and the
    other one (chosen=False). Table: the three kernels with C = table_contexts contexts.
    """
    launches = []
    for v in vs:
        for n in ns:
            for dtype in dtypes:
                for weights in (False, True):
                    for mode in ("grad new", "grad in place", "forward only"):
                        launches += _ce_launches(n, v, dtype, mode, weights)
                        if triton_ce.flat_applies(n, v, DTYPES[dtype]):
                            other = "rows" if triton_ce.choose_config(n, v, DTYPES[dtype]).tiling == "flat" else "flat"
                            launches += _ce_launches(n, v, dtype, mode, weights, tiling=other)
                launches += _table_launches(n, v, table_contexts, dtype)
    return launches


# ---------------------------------------------------------------------------------------------
# compiling and reading the cubin


def tool(name: str) -> str:
    """Path of one of the CUDA tools Triton's wheel carries (ptxas, cuobjdump, nvdisasm)."""
    import triton

    return str(Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / name)


def specialise(kernel, args: tuple, options: dict, cc: int):
    """(compile options, signature, constexprs, attrs) exactly as Triton's JIT would build them for this call."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import make_backend
    from triton.runtime.jit import create_function_from_signature

    backend = make_backend(GPUTarget("cuda", cc, 32))
    binder = create_function_from_signature(kernel.signature, kernel.params, backend)
    bound, specialization, kwargs = binder(*args, **options)
    return kernel._pack_args(backend, kwargs, bound, specialization, kwargs)


_DEFINE_ARGS = re.compile(r"define[^(]*\((.*)\)")
_VALUE = re.compile(r"%[\w.]+")
_PTR_DEF = re.compile(r"^\s*(%[\w.]+) = (?:getelementptr|select|phi|bitcast|addrspacecast)\b(.*)$")
_PTX_ACCESS = re.compile(r"\b(ld|st)\.global[\w.]*?(?:\.v(\d))?\.b(\d+)\b")


def ptx_accesses(llir: str, kernel_args: list[str]) -> list[tuple[str, str, int]]:
    """(kernel argument, "ld"/"st", bits per thread) of every global load/store in Triton's LLVM IR.

    Each ld.global / st.global (inline asm) is traced back through getelementptr/select/phi
    to the kernel argument its pointer derives from. kernel_args: the non-constexpr argument
    names, in order (they are the LLVM function's parameters %0, %1, ...).
    """
    define = next(line for line in llir.splitlines() if line.startswith("define"))
    params = [_VALUE.findall(p)[-1] for p in _DEFINE_ARGS.search(define).group(1).split(",") if "%" in p]
    origin = {param: name for param, name in zip(params, kernel_args)}
    lines = llir.splitlines()
    changed = True
    while changed:  # to a fixpoint: a phi may name a pointer defined further down
        changed = False
        for line in lines:
            m = _PTR_DEF.match(line)
            if m and m.group(1) not in origin:
                roots = {origin[v] for v in _VALUE.findall(m.group(2)) if v in origin}
                if len(roots) == 1:
                    origin[m.group(1)] = roots.pop()
                    changed = True
    found = []
    for line in lines:
        access = _PTX_ACCESS.search(line) if " asm " in line else None
        if access:
            bits = int(access.group(2) or 1) * int(access.group(3))
            for pointer in re.findall(r"ptr addrspace\(1\) (%[\w.]+)", line):
                if pointer in origin:
                    found.append((origin[pointer], access.group(1), bits))
    return found

def access_width_bits(opcode: str) -> int:
    """Bits one thread moves in a SASS LDG/STG: LDG.E.128 -> 128, LDG.E.64 -> 64, LDG.E.U16 -> 16, LDG.E -> 32."""
    parts = set(opcode.split(".")[1:])
    for token, bits in (("128", 128), ("64", 64), ("U16", 16), ("S16", 16), ("U8", 8), ("S8", 8)):
        if token in parts:
            return bits
    return 32


LOGITS_POINTERS = {"logits_ptr", "table_ptr"}
GRAD_POINTERS = {"grad_ptr"}


def compile_facts(launch: Launch, arch: str) -> dict:
    """Compile one launch for `arch` and read its resources and memory-access widths from the cubin."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    cc = ARCH_LIMITS[arch].cc
    options, signature, constexprs, attrs = specialise(launch.kernel, launch.args, launch.options, cc)
    started = time.perf_counter()
    compiled = triton.compile(ASTSource(launch.kernel, signature, constexprs, attrs),
                              target=GPUTarget("cuda", cc, 32), options=options.__dict__)
    seconds = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as tmp:
        cubin = Path(tmp) / "kernel.cubin"
        cubin.write_bytes(compiled.asm["cubin"])
        usage = subprocess.run([tool("cuobjdump"), "--dump-resource-usage", str(cubin)],
                               check=True, capture_output=True, text=True).stdout
        sass = subprocess.run([tool("nvdisasm"), "-c", str(cubin)], check=True, capture_output=True,
                              text=True).stdout
    resources = {k: int(v) for k, v in re.findall(r"\b(REG|STACK|SHARED|LOCAL):(\d+)", usage)}
    kernel_args = [name for name, kind in signature.items() if kind != "constexpr"]
    accesses = ptx_accesses(compiled.asm["llir"], kernel_args)
    sass_widths = {"LDG": set(), "STG": set()}
    for op in re.findall(r"\b((?:LDG|STG)\.\S+)", sass):
        sass_widths[op[:3]].add(access_width_bits(op))

    def widest(pointers: set[str], kind: str) -> int:
        """Widest access through these pointers (from the IR), checked to exist as an LDG/STG in the SASS."""
        bits = max((b for arg, k, b in accesses if arg in pointers and k == kind), default=0)
        sass_op = "LDG" if kind == "ld" else "STG"
        if bits and bits not in sass_widths[sass_op]:
            raise RuntimeError(f"{launch.kernel_name}: the IR has a {bits}-bit {kind} through {pointers}, "
                               f"the SASS no {bits}-bit {sass_op}")
        return bits

    spill_ops = len(re.findall(r"\b(?:LDL|STL)\b", sass))
    return dict(
        registers=resources.get("REG", 0), stack_bytes=resources.get("STACK", 0),
        local_bytes=resources.get("LOCAL", 0), spill_instructions=spill_ops,
        static_shared_bytes=resources.get("SHARED", 0), dynamic_shared_bytes=int(compiled.metadata.shared),
        logits_load_bits=widest(LOGITS_POINTERS, "ld"), grad_store_bits=widest(GRAD_POINTERS, "st"),
        widest_sass_load_bits=max(sass_widths["LDG"], default=0),
        specialisation=_specialisation_text(launch, signature, attrs), compile_s=seconds,
    )


def _specialisation_text(launch: Launch, signature: dict, attrs: dict) -> str:
    """The divisible-by-16 arguments, e.g. 'logits_ptr grad_ptr n_rows' (what Triton could prove aligned)."""
    names = list(signature)
    divisible = [names[k[0]] for k, v in attrs.items() if ["tt.divisibility", 16] in v]
    return " ".join(divisible)


def _compile_key(launch: Launch, arch: str) -> str:
    options, signature, constexprs, attrs = specialise(launch.kernel, launch.args, launch.options,
                                                       ARCH_LIMITS[arch].cc)
    return repr((launch.kernel_name, arch, sorted(signature.items()), sorted(constexprs.items()),
                 sorted(attrs.items()), options.num_warps, options.num_stages))


def static_rows(archs: list[str], launches: list[Launch], log: Callable[[str], None] = print) -> list[dict]:
    """One row per (launch, arch): labels, compile facts and occupancy; identical compiles done once."""
    if not HAS_TRITON:
        raise RuntimeError(f"Triton does not import here ({TRITON_IMPORT_ERROR})")
    import triton

    check_archs(archs)
    if triton_import().interpreted:
        raise RuntimeError("triton was imported under TRITON_INTERPRET=1, so its language library was built for "
                           "the CPU interpreter and cannot compile for a GPU: run without TRITON_INTERPRET")
    # A fresh Triton cache: compile seconds are cold compiles, and line info matches today's source
    # (Triton's cache key is the kernel's text, not where it sits in the file).
    with tempfile.TemporaryDirectory() as cache_dir, triton.knobs.cache.scope():
        triton.knobs.cache.dir = cache_dir
        return _static_rows(archs, launches, log)


def _static_rows(archs: list[str], launches: list[Launch], log: Callable[[str], None]) -> list[dict]:
    cache: dict[str, dict] = {}
    rows = []
    for arch in archs:
        limits = ARCH_LIMITS[arch]
        for launch in launches:
            key = _compile_key(launch, arch)
            if key not in cache:
                cache[key] = compile_facts(launch, arch)
                facts = cache[key]
                log(f"  {arch} {launch.kernel_name} {launch.tiling} V={launch.V} {launch.dtype} {launch.mode}"
                    f"{' w' if launch.weights else ''}: {facts['registers']} regs, "
                    f"{facts['logits_load_bits']}-bit loads, {facts['compile_s']:.1f} s")
            facts = cache[key]
            # sm_90 builds list the runtime's 1 KB per-block reserve as static shared; sm_80 builds do not.
            reserve = max(0, limits.smem_reserved_per_block - facts["static_shared_bytes"])
            smem = facts["dynamic_shared_bytes"] + facts["static_shared_bytes"] + reserve
            num_warps = launch.options.get("num_warps", 4)
            warps, limiter = occupancy(limits, facts["registers"], smem, num_warps)
            rows.append(dict(
                problem=launch.problem, kernel=launch.kernel_name, tiling=launch.tiling, chosen=launch.chosen,
                arch=arch, dtype=launch.dtype, V=launch.V, N=launch.N, mode=launch.mode, weights=launch.weights,
                block=_block_text(launch), num_warps=num_warps, num_stages=launch.options.get("num_stages", 3),
                **{k: v for k, v in facts.items() if k != "compile_s"},
                spilled_bytes=facts["stack_bytes"] + facts["local_bytes"], smem_per_block=smem,
                warps_per_sm=warps, occupancy=warps / limits.max_warps_per_sm, occupancy_limiter=limiter,
                compile_s=facts["compile_s"], compile_key=key,
            ))
    return rows


def _block_text(launch: Launch) -> str:
    o = launch.options
    if "ROWS" in o:
        return f"{o['ROWS']}x{o['BLOCK_V']}" + (f" (flat {o['BLOCK_FLAT']})" if "BLOCK_FLAT" in o else "")
    if "BLOCK_C" in o:
        return f"{o['BLOCK_C']}x{o['BLOCK_V']}"
    if "BLOCK_N" in o:
        return f"{o['BLOCK_N']} rows"
    return f"1x{o['BLOCK_V']} (loop)"
