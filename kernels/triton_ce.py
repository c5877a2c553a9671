"""Fused softmax cross-entropy in Triton: one kernel computes the loss and its gradient.

The life of the kernel on one screen, as in Triton's fused-softmax tutorial:
    _ce_rows_kernel  many whole rows per program, a (rows, next_pow2(V)) tile (small V)
    _ce_flat_kernel  small V whose row stride is not a multiple of 16 (V = 27, 729): the same
                     whole rows read and written as one flat, aligned run of the contiguous
                     N x V buffer (vector loads), regrouped into rows in shared memory
    _ce_loop_kernel  one row per program, a loop over V blocks with an online softmax
                     (large vocabularies, V >= 131072 included)
    choose_config    the one place that picks the tiling, block sizes and warps
    kernel_calls     the launch plan: (kernel, grid, args, options) per launch, which the
                     launcher runs and kernels.static compiles
    loss_and_grad    the launcher: shapes, strides, buffers; per-row losses and the gradient
    triton_cross_entropy   the public function, through kernels.fused.FusedCrossEntropy

The forward pass writes the final gradient (for a grad_output of 1) while the logits are in
registers, over the logits themselves when the caller allows it; backward only scales it by
grad_output. Semantics are those of kernels.reference.torch_cross_entropy.

Small unaligned vocabularies launch "rows" unless asked for "flat" (`tiling="flat"`, or
SMALL_V_TILING); kernels.static compiles both for the static report.

Whether Triton imports is kernels.availability's guarded import, tried once; this module (like
triton_table and static) imports triton only where that said yes. Without Triton it still
imports, says why in TRITON_IMPORT_ERROR, and defines no kernels. The kernels are always
built as compilable JITFunctions (so `triton.compile(ASTSource(kernel, ...))` works whatever the
environment said at import); where triton was imported under TRITON_INTERPRET=1 the launcher
runs them through Triton's CPU interpreter instead (kernels.availability.runnable).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from kernels.availability import interpreter_active, require, runnable, triton_import  # noqa: F401 (interpreter_active: re-exported)
from kernels.fused import fused_cross_entropy
from kernels.reference import reduce_rows

HAS_TRITON = triton_import().ok
TRITON_IMPORT_ERROR = triton_import().error
if HAS_TRITON:
    import triton
    import triton.language as tl
    from triton.runtime.jit import JITFunction

# Whole-row tiling holds a padded row of up to this many columns in registers; wider rows loop.
MAX_WHOLE_ROW_V = 8192
# Elements per program in the whole-row tiling: many rows of a small vocabulary share a program.
ROWS_TILE_ELEMENTS = 4096
# Columns per iteration of the large-V loop.
LOOP_BLOCK_V = 4096
# Flat tiling: vocabularies up to this (padded) width, and rows per flat tile a multiple of
# 16 bytes / element size (4 fp32 rows, 8 fp16/bf16 rows), so every tile starts 16-byte
# aligned, which lets Triton prove the alignment a 128-bit load needs.
FLAT_MAX_BLOCK_V = 1024
# Which tiling small, unaligned vocabularies get unless a caller asks (tiling=): "rows" (scalar
# loads) or "flat" (128-bit loads, a shared-memory regroup). See choose_config for why.
SMALL_V_TILING = "rows"
SMALL_V_TILINGS = ("rows", "flat")
# Tile elements per thread: 16 keeps an sm_90 build near 60-110 registers and spill-free;
# 32 per thread took 137-206 registers (measured with cuobjdump on this project's CPU machine).
ELEMENTS_PER_THREAD = 16


def _next_pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


@dataclass(frozen=True)
class CEConfig:
    """One launch configuration of the fused cross-entropy.

    tiling: "rows" (rows_per_program whole rows, block_v = next_pow2(V) columns), "flat" (the
    same rows read as one flat run of rows_per_program * V elements, regrouped into a
    rows_per_program x block_v tile; N must be a multiple of rows_per_program, the launcher
    gives the rest to "rows") or "loop" (one row per program, block_v columns per iteration).
    """

    tiling: str
    rows_per_program: int
    block_v: int
    num_warps: int
    num_stages: int


def choose_config(n_rows: int, vocab: int, dtype: torch.dtype, row_stride: int | None = None,
                  small_v_tiling: str | None = None) -> CEConfig:
    """Pick the tiling, block sizes and warps for an (n_rows, vocab) problem of logits `dtype`.

    The one function the launcher (and the static report, kernels.static) asks. row_stride:
    the logits' row stride in elements (None: contiguous, = vocab). small_v_tiling: "rows" or
    "flat" for the shapes where both apply (None: SMALL_V_TILING); elsewhere it changes nothing.

    Padded V up to MAX_WHOLE_ROW_V: whole rows, as many per program as fill ROWS_TILE_ELEMENTS
    (V = 27 gives 128 rows of 32 columns) but no more rows than the padded N ("rows"). Where
    the row stride is not a multiple of 16 elements (V = 27, 729), Triton cannot prove any
    row start 16-byte aligned and every logits load of that tile is scalar (LDG.E, or
    LDG.E.U16 for bf16); then, when the rows are contiguous, V is at most FLAT_MAX_BLOCK_V
    and N holds at least one tile, the same rows can be read as one flat run instead ("flat",
    flat_config): 128-bit loads and stores for every dtype, paid for by a regroup through
    shared memory and more registers. SMALL_V_TILING says which of the two such shapes get
    unless small_v_tiling asks: "rows", because compiled for sm_80 and sm_90 (reports/static-*) it has equal or higher
    theoretical occupancy (V = 27: 103 vs 117 registers at sm_80, 80 vs 127 at sm_90) and no
    shared-memory round trip, and both move the same bytes per thread with coalesced warps;
    flat's gain, 4x (fp32) to 8x (bf16) fewer load instructions, pays only where issuing
    loads rather than DRAM limits, which no GPU has timed yet. kernels.static compiles both.
    Wider: one row per program, looping over LOOP_BLOCK_V columns ("loop").
    Warps give each thread ELEMENTS_PER_THREAD elements (1 to 16 warps). num_stages is 1: the
    kernels have no loads Triton pipelines (an sm_90 build with 3 stages used the same
    registers and shared memory). `dtype` does not change the choice today: tiles are sized
    in fp32 elements, the precision the kernels compute in.
    """
    if n_rows < 0 or vocab < 1:
        raise ValueError(f"need n_rows >= 0 and vocab >= 1, got {n_rows} and {vocab}")
    if dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"logits must be float32, float16 or bfloat16, got {dtype}")
    if _next_pow2(vocab) > MAX_WHOLE_ROW_V:
        return CEConfig("loop", 1, LOOP_BLOCK_V, _warps_for(LOOP_BLOCK_V), num_stages=1)
    small_v_tiling = SMALL_V_TILING if small_v_tiling is None else small_v_tiling
    if small_v_tiling not in SMALL_V_TILINGS:
        raise ValueError(f"small-V tiling must be one of {SMALL_V_TILINGS}, got {small_v_tiling!r}")
    if small_v_tiling == "flat" and flat_applies(n_rows, vocab, dtype, row_stride):
        return flat_config(vocab, dtype)
    return rows_config(n_rows, vocab)


def rows_config(n_rows: int, vocab: int) -> CEConfig:
    """The whole-row tiling for V up to MAX_WHOLE_ROW_V (padded); see choose_config."""
    block_v = _next_pow2(vocab)
    rows = max(1, min(ROWS_TILE_ELEMENTS // block_v, _next_pow2(max(n_rows, 1))))
    return CEConfig("rows", rows, block_v, _warps_for(rows * block_v), num_stages=1)


def flat_applies(n_rows: int, vocab: int, dtype: torch.dtype, row_stride: int | None = None) -> bool:
    """Whether the flat tiling can take this problem: contiguous rows of an unaligned small V, N >= one tile."""
    contiguous = row_stride is None or row_stride == vocab
    return (contiguous and vocab % 16 != 0 and _next_pow2(vocab) <= FLAT_MAX_BLOCK_V
            and n_rows >= flat_config(vocab, dtype).rows_per_program)


def flat_config(vocab: int, dtype: torch.dtype) -> CEConfig:
    """The flat tiling of a small V: whole rows as in rows_config, their count rounded up to a
    multiple of 16 bytes / element size, so that every tile starts 16-byte aligned."""
    block_v = _next_pow2(vocab)
    multiple = 16 // torch.empty((), dtype=dtype).element_size()
    rows = -(-max(1, ROWS_TILE_ELEMENTS // block_v) // multiple) * multiple
    return CEConfig("flat", rows, block_v, _warps_for(rows * block_v), num_stages=1)


def _warps_for(tile_elements: int) -> int:
    return min(16, max(1, tile_elements // (32 * ELEMENTS_PER_THREAD)))


if HAS_TRITON:

    # Built as JITFunction directly, not via @triton.jit: under TRITON_INTERPRET=1 triton.jit
    # would return an InterpretedFunction, which triton.compile cannot build for a GPU.
    # The launcher wraps them for the interpreter when triton runs in that mode (runnable).
    @JITFunction
    def _ce_rows_kernel(
        logits_ptr, logits_row_stride,
        grad_ptr, grad_row_stride,
        target_ptr, weight_ptr, scale_ptr, loss_ptr,
        n_rows, n_cols, ignore_index,
        HAS_WEIGHT: tl.constexpr, WRITE_GRAD: tl.constexpr,
        ROWS: tl.constexpr, BLOCK_V: tl.constexpr,
    ):
        """Loss and gradient of ROWS whole rows per program.

        logits_ptr  (N, V) fp32/fp16/bf16, column stride 1, row stride logits_row_stride
        grad_ptr    (N, V) same dtype, column stride 1, row stride grad_row_stride; written
                    only if WRITE_GRAD (may be logits_ptr itself)
        target_ptr  (N,) int32/int64, contiguous; ignore_index marks rows that count for nothing
        weight_ptr  (N,) float, contiguous, read only if HAS_WEIGHT
        scale_ptr   (1,) fp32: 1/sum(w of non-ignored rows) for "mean", else 1
        loss_ptr    (N,) fp32, contiguous: w * (logsumexp(x) - x[y]), 0 for ignored rows
        n_rows, n_cols: N and V; BLOCK_V = next_pow2(V); ROWS rows per program
        """
        rows = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
        cols = tl.arange(0, BLOCK_V)
        row_ok = rows < n_rows
        mask = row_ok[:, None] & (cols < n_cols)[None, :]
        rows64 = rows.to(tl.int64)  # before the multiply: N*V may pass 2**31
        x = tl.load(logits_ptr + rows64[:, None] * logits_row_stride + cols[None, :],
                    mask=mask, other=float("-inf")).to(tl.float32)
        y = tl.load(target_ptr + rows, mask=row_ok, other=ignore_index)
        valid = row_ok & (y != ignore_index)

        row_max = tl.max(x, axis=1)
        # A row of -inf (padding rows) would give -inf - -inf = nan; shifting by 0 keeps exp at 0
        # and nan out of the arithmetic (the masked stores would hide it, the interpreter not).
        row_max = tl.where(row_max == float("-inf"), 0.0, row_max)
        e = tl.exp(x - row_max[:, None])
        sum_e = tl.sum(e, axis=1)
        sum_e = tl.where(row_ok, sum_e, 1.0)  # padding rows: no log(0)
        is_target = cols[None, :] == y[:, None]
        # x[y]; -inf where no column matches (ignored rows, or a target outside [0, V)).
        x_target = tl.max(tl.where(is_target, x, float("-inf")), axis=1)
        if HAS_WEIGHT:
            w = tl.load(weight_ptr + rows, mask=row_ok, other=0.0).to(tl.float32)
        else:
            w = tl.full((ROWS,), 1.0, tl.float32)
        # loss = logsumexp(x) - x[y] = log(sum_e) - (x[y] - max): the difference of two large
        # logits is taken first, so +-1e4 logits keep their precision.
        loss = tl.log(sum_e) - (x_target - row_max)
        tl.store(loss_ptr + rows, tl.where(valid, loss, 0.0) * w, mask=row_ok)

        if WRITE_GRAD:
            # dL/dx = w * (softmax(x) - onehot(y)) * scale,  scale = 1/sum(w) for "mean", else 1;
            # ignored rows get 0.
            coef = tl.where(valid, w * tl.load(scale_ptr), 0.0)
            probs = e * (1.0 / sum_e)[:, None]
            grad = (probs - tl.where(is_target, 1.0, 0.0)) * coef[:, None]
            grad = tl.where(valid[:, None], grad, 0.0)
            tl.store(grad_ptr + rows64[:, None] * grad_row_stride + cols[None, :],
                     grad.to(grad_ptr.dtype.element_ty), mask=mask)

    @JITFunction
    def _ce_flat_kernel(
        logits_ptr, grad_ptr, target_ptr, weight_ptr, scale_ptr, loss_ptr, ignore_index,
        HAS_WEIGHT: tl.constexpr, WRITE_GRAD: tl.constexpr,
        ROWS: tl.constexpr, V: tl.constexpr, BLOCK_V: tl.constexpr, BLOCK_FLAT: tl.constexpr,
    ):
        """Loss and gradient of ROWS whole rows per program, moved as one flat run of ROWS * V elements.

        logits_ptr  (N, V) fp32/fp16/bf16, contiguous (row stride V), N a multiple of ROWS
        grad_ptr    (N, V) same dtype, contiguous; written only if WRITE_GRAD (may be logits_ptr)
        target_ptr, weight_ptr, scale_ptr, loss_ptr, ignore_index: as _ce_rows_kernel
        V: the vocabulary (constexpr, so that the regroup's index arithmetic is shifts and
        multiplies); BLOCK_V = next_pow2(V); BLOCK_FLAT = next_pow2(ROWS * V)

        A tile of whole rows with row stride 27 has no row start Triton can prove aligned, so
        its loads are scalar. The flat run starting at program_id * ROWS * V is 16-byte aligned
        when ROWS is a multiple of 16 bytes / element size, so its loads and stores are 128-bit; tl.gather (through shared
        memory) regroups it into the (ROWS, BLOCK_V) tile the row reductions need, and the
        gradient back.
        """
        tile = ROWS * V
        start = tl.program_id(0).to(tl.int64) * tile  # int64: N*V may pass 2**31
        flat = tl.arange(0, BLOCK_FLAT)
        in_tile = flat < tile
        x_flat = tl.load(logits_ptr + start + flat, mask=in_tile, other=float("-inf"))
        rows_in_tile = tl.arange(0, ROWS)
        cols = tl.arange(0, BLOCK_V)
        col_ok = cols < V
        # (r, c) of the tile is element r * V + c of the run; padding columns read element 0.
        source = tl.where(col_ok[None, :], rows_in_tile[:, None] * V + cols[None, :], 0)
        x = tl.reshape(tl.gather(x_flat, tl.reshape(source, (ROWS * BLOCK_V,)), 0), (ROWS, BLOCK_V))
        x = tl.where(col_ok[None, :], x.to(tl.float32), float("-inf"))
        rows = tl.program_id(0) * ROWS + rows_in_tile
        y = tl.load(target_ptr + rows)
        valid = y != ignore_index

        row_max = tl.max(x, axis=1)
        row_max = tl.where(row_max == float("-inf"), 0.0, row_max)  # a row of -inf: no nan
        e = tl.exp(x - row_max[:, None])
        sum_e = tl.sum(e, axis=1)
        is_target = cols[None, :] == y[:, None]
        x_target = tl.max(tl.where(is_target, x, float("-inf")), axis=1)
        if HAS_WEIGHT:
            w = tl.load(weight_ptr + rows).to(tl.float32)
        else:
            w = tl.full((ROWS,), 1.0, tl.float32)
        loss = tl.log(sum_e) - (x_target - row_max)  # logsumexp(x) - x[y], as in _ce_rows_kernel
        tl.store(loss_ptr + rows, tl.where(valid, loss, 0.0) * w)

        if WRITE_GRAD:
            # dL/dx = w * (softmax(x) - onehot(y)) * scale,  scale = 1/sum(w) for "mean", else 1;
            # ignored rows get 0.
            coef = tl.where(valid, w * tl.load(scale_ptr), 0.0)
            probs = e * (1.0 / sum_e)[:, None]
            grad = (probs - tl.where(is_target, 1.0, 0.0)) * coef[:, None]
            grad = tl.where(valid[:, None], grad, 0.0).to(grad_ptr.dtype.element_ty)
            # Element f of the run is (f // V, f % V) of the tile, i.e. f // V * BLOCK_V + f % V.
            back = tl.where(in_tile, flat // V * BLOCK_V + flat % V, 0)
            grad_flat = tl.gather(tl.reshape(grad, (ROWS * BLOCK_V,)), back, 0)
            tl.store(grad_ptr + start + flat, grad_flat, mask=in_tile)

    @JITFunction
    def _ce_loop_kernel(
        logits_ptr, logits_row_stride,
        grad_ptr, grad_row_stride,
        target_ptr, weight_ptr, scale_ptr, loss_ptr,
        n_rows, n_cols, ignore_index,
        HAS_WEIGHT: tl.constexpr, WRITE_GRAD: tl.constexpr,
        BLOCK_V: tl.constexpr,
    ):
        """Loss and gradient of one row per program, looping over BLOCK_V-wide column blocks.

        Arguments as _ce_rows_kernel (n_rows is unused: the grid is exactly N programs).
        First loop: online softmax (running max, sum of exp rescaled when the max grows).
        Second loop: the gradient, block by block.
        """
        row = tl.program_id(0).to(tl.int64)  # int64 before the multiply by the row stride
        row_logits = logits_ptr + row * logits_row_stride
        cols = tl.arange(0, BLOCK_V)
        y = tl.load(target_ptr + row)
        valid = y != ignore_index

        run_max = float("-inf")
        run_sum = 0.0
        for start in range(0, n_cols, BLOCK_V):
            x = tl.load(row_logits + start + cols, mask=start + cols < n_cols,
                        other=float("-inf")).to(tl.float32)
            new_max = tl.maximum(run_max, tl.max(x, axis=0))
            # While every logit so far is -inf, shift by 0 so exp gives 0 rather than nan.
            shift = tl.where(new_max == float("-inf"), 0.0, new_max)
            run_sum = run_sum * tl.exp(run_max - shift) + tl.sum(tl.exp(x - shift), axis=0)
            run_max = new_max
        shift = tl.where(run_max == float("-inf"), 0.0, run_max)

        in_range = valid & (y >= 0) & (y < n_cols)
        x_target = tl.load(row_logits + y, mask=in_range, other=float("-inf")).to(tl.float32)
        if HAS_WEIGHT:
            w = tl.load(weight_ptr + row).to(tl.float32)
        else:
            w = 1.0
        loss = tl.log(run_sum) - (x_target - shift)
        tl.store(loss_ptr + row, tl.where(valid, loss, 0.0) * w)

        if WRITE_GRAD:
            # dL/dx = w * (softmax(x) - onehot(y)) * scale,  scale = 1/sum(w) for "mean", else 1;
            # ignored rows get 0.
            coef = tl.where(valid, w * tl.load(scale_ptr), 0.0)
            inv_sum = 1.0 / run_sum
            row_grad = grad_ptr + row * grad_row_stride
            for start in range(0, n_cols, BLOCK_V):
                col = start + cols
                x = tl.load(row_logits + col, mask=col < n_cols, other=float("-inf")).to(tl.float32)
                probs = tl.exp(x - shift) * inv_sum
                grad = (probs - tl.where(col == y, 1.0, 0.0)) * coef
                grad = tl.where(valid, grad, 0.0)
                tl.store(row_grad + col, grad.to(grad_ptr.dtype.element_ty), mask=col < n_cols)


def kernel_calls(logits, grad, target, weight, scale, loss_rows, ignore_index, config=None, tiling=None):
    """The kernel launches that fill loss_rows (and grad): a list of (kernel, grid, args, options).

    logits (N, V) with column stride 1; grad None (forward only) or (N, V) with column stride 1
    (logits itself in overwrite mode); target (N,), weight (N,) or None, scale (1,) fp32,
    loss_rows (N,) fp32. The launcher runs these; kernels.static compiles them from meta
    tensors, so the static report describes exactly what launches. "flat" covers whole tiles
    and hands the last N % rows_per_program rows to "rows". config: None = choose_config's
    pick, with tiling as its small_v_tiling (the static report asks for both small-V layouts).
    """
    n_rows, n_cols = logits.shape
    if n_rows == 0:
        return []
    if config is None:
        config = choose_config(n_rows, n_cols, logits.dtype, row_stride=logits.stride(0), small_v_tiling=tiling)
    grad_arg = logits if grad is None else grad
    weight_arg = scale if weight is None else weight
    flags = dict(HAS_WEIGHT=weight is not None, WRITE_GRAD=grad is not None)
    calls = []
    if config.tiling == "flat":
        tiles = n_rows // config.rows_per_program
        calls.append((_ce_flat_kernel, (tiles,),
                      (logits, grad_arg, target, weight_arg, scale, loss_rows, ignore_index),
                      dict(ROWS=config.rows_per_program, V=n_cols, BLOCK_V=config.block_v,
                           BLOCK_FLAT=_next_pow2(config.rows_per_program * n_cols),
                           num_warps=config.num_warps, num_stages=config.num_stages, **flags)))
        first_row = tiles * config.rows_per_program
        if first_row == n_rows:
            return calls
        rest = slice(first_row, None)
        logits, grad_arg, target, loss_rows = logits[rest], grad_arg[rest], target[rest], loss_rows[rest]
        weight_arg = scale if weight is None else weight[rest]
        n_rows -= first_row
        config = rows_config(n_rows, n_cols)
    args = (logits, logits.stride(0), grad_arg, grad_arg.stride(0), target, weight_arg, scale, loss_rows,
            n_rows, n_cols, ignore_index)
    options = dict(num_warps=config.num_warps, num_stages=config.num_stages, **flags)
    if config.tiling == "rows":
        grid = (triton.cdiv(n_rows, config.rows_per_program),)
        calls.append((_ce_rows_kernel, grid, args,
                      dict(ROWS=config.rows_per_program, BLOCK_V=config.block_v, **options)))
    elif config.tiling == "loop":
        calls.append((_ce_loop_kernel, (n_rows,), args, dict(BLOCK_V=config.block_v, **options)))
    else:
        raise ValueError(f"unknown tiling {config.tiling!r}")
    return calls


def loss_and_grad(
    logits: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None,
    ignore_index: int,
    reduction: str,
    need_grad: bool,
    overwrite_logits: bool,
    tiling: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Run the fused kernel; return (loss in logits.dtype, gradient for grad_output=1 or None).

    The fused backend of kernels.fused. The gradient is the logits tensor itself when
    overwrite_logits (and its columns are contiguous), else a new (N, V) buffer. tiling: the
    small-V layout, "rows" or "flat" (None: choose_config's default, SMALL_V_TILING).
    """
    require("triton", logits.device)
    if logits.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"logits must be float32, float16 or bfloat16, got {logits.dtype}")
    n_rows, n_cols = logits.shape
    if logits.stride(1) != 1:
        logits = logits.contiguous()  # any row stride is fine; columns must be adjacent
    target = target.contiguous()
    valid = target != ignore_index
    if reduction == "mean":
        denom = valid.sum(dtype=torch.float32) if weight is None else (
            torch.where(valid, weight, 0).sum(dtype=torch.float32))
        scale = (1.0 / denom).reshape(1)
    else:
        denom = None  # "sum" and "none" divide by nothing
        scale = torch.ones(1, dtype=torch.float32, device=logits.device)
    if weight is not None:
        weight = weight.contiguous()
    if not need_grad:
        grad = None
    elif overwrite_logits:
        grad = logits
        # Tell autograd the logits changed, so a graph node that saved them fails loudly
        # instead of reading the gradient.
        torch.autograd.graph.increment_version(logits)
    else:
        grad = torch.empty((n_rows, n_cols), dtype=logits.dtype, device=logits.device)
    loss_rows = torch.empty(n_rows, dtype=torch.float32, device=logits.device)

    for kernel, grid, args, options in kernel_calls(logits, grad, target, weight, scale, loss_rows, ignore_index,
                                                    tiling=tiling):
        runnable(kernel)[grid](*args, **options)

    loss = reduce_rows(loss_rows, reduction, denom)
    return loss.to(logits.dtype), grad


def triton_cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    overwrite_logits: bool = False,
    tiling: str | None = None,
) -> torch.Tensor:
    """Fused softmax cross-entropy of logits (N, V) against target (N,); see kernels.cross_entropy.

    logits fp32/fp16/bf16 with any row stride; target int32/int64; weight (N,) float or None.
    Accumulates in fp32 and returns the loss in logits.dtype. With overwrite_logits=True and
    a gradient needed, the logits buffer is overwritten by the gradient during the forward
    (the caller promises not to read the logits again). No gradient flows to `weight`.
    Targets outside [0, V) other than ignore_index are not checked (no device-side assert):
    their loss is inf or meaningless. tiling="flat" launches the flat layout for the small,
    unaligned vocabularies it applies to (see choose_config); None or "rows" the default.
    """
    backend = loss_and_grad if tiling is None else functools.partial(loss_and_grad, tiling=tiling)
    return fused_cross_entropy(backend, logits, target, weight, ignore_index, reduction, overwrite_logits)
