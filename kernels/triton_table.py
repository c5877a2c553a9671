"""Fused gather-cross-entropy in Triton: the loss of `table[context]` without building the logits.

For models whose logits are rows of a parameter table (bigram W, trigram W over V**2
contexts), every row with the same context has the same logits and so the same softmax.
The gradient of one table row therefore collapses from a sum over its N_c rows to

    dL/dtable[c] = scale * (W_c * softmax(table[c]) - counts[c])
    W_c = sum of w_i over the rows i with context c,  counts[c, y] = that sum restricted to target y

which is exactly sum_i w_i * (softmax(table[c_i]) - onehot(y_i)) * scale, regrouped. The work
is O(C*V) for the table plus O(N) scalars for the rows, never O(N*V), and duplicate contexts
cost nothing extra: no N x V logits, no N x V gradient, no N x V atomics.

The life of the kernel on one screen:
    _table_logsumexp_kernel  per context row: max m and log(sum(exp(x - m))) (online over V blocks)
    _table_rows_kernel       per data row: the loss w * ((m - x[y]) + log(sum)) and, for the
                             gradient, counts[c, y] += w with an fp32 atomic add
    _table_grad_kernel       per context row: W_c = sum(counts[c]); the gradient above, written
                             in the table's dtype (over the counts buffer for fp32 tables)
    choose_table_config      the one place that picks block sizes and warps
    logsumexp_call / rows_call / grad_call   the launch plan of each kernel: (kernel, grid,
                             args, options), which the launcher runs and kernels.static compiles
    table_loss_and_grad / triton_table_cross_entropy   the backend (loss and gradient) of
                             kernels.fused.FusedTableCrossEntropy, and the public function

With a gradient wanted, the forward runs all three kernels ("mean": 1/sum(w) folded into the
gradient kernel's scale), so the gradient is for grad_output = 1 and the autograd Function's
backward only scales it, as for kernels.triton_ce. For reduction="none" the per-row
grad_output weights each row, so the forward runs the first two and the backward scatters
the counts itself with weights w_i * grad_output_i, then runs the third. Semantics are those of
kernels.reference.torch_cross_entropy(table[context], target, weight, ignore_index, reduction).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from kernels.availability import require, runnable, triton_import
from kernels.fused import fused_table_cross_entropy

HAS_TRITON = triton_import().ok
if HAS_TRITON:
    import triton
    import triton.language as tl
    from triton.runtime.jit import JITFunction

# Context rows of up to this many (padded) columns are one tile; wider rows loop over V blocks.
MAX_WHOLE_ROW_V = 8192
# Elements per program of the context kernels: V = 27 puts 64 context rows in one program.
CONTEXT_TILE_ELEMENTS = 2048
# Columns per loop iteration in the large-V tiling.
LOOP_BLOCK_V = 4096
# Data rows per program of the row kernel (1-D: a context id, a target, a weight per row).
ROWS_PER_PROGRAM = 1024


def _next_pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


@dataclass(frozen=True)
class TableConfig:
    """One launch configuration of the gather-cross-entropy kernels.

    contexts_per_program, block_v: the tile of the two context kernels (BLOCK_C x BLOCK_V);
    they loop over ceil(V / block_v) column blocks, one block when V <= MAX_WHOLE_ROW_V.
    rows_per_program: BLOCK_N of the row kernel. Warps per kernel: context, rows.
    """

    contexts_per_program: int
    block_v: int
    rows_per_program: int
    context_warps: int
    rows_warps: int

    @property
    def tiling(self) -> str:
        return "rows" if self.contexts_per_program > 1 else "loop"


def choose_table_config(n_contexts: int, n_cols: int) -> TableConfig:
    """Pick block sizes and warps for a (C, V) table; the only place the tiling is decided.

    Small V: whole context rows, as many per program as fill CONTEXT_TILE_ELEMENTS (V = 27:
    64 rows of 32 columns), never more than the padded C. V above MAX_WHOLE_ROW_V: one
    context row per program, LOOP_BLOCK_V columns per iteration with an online softmax.
    The number of data rows N does not enter: the row kernel is 1-D and its cost is O(N).
    Warps: 1 per 256 tile elements, 1..8: at sm_90 the gradient kernel holds about 15
    registers per tile element per thread (two loops keep their pointers live), so 16
    elements per thread (4096 with 8 warps) already take 243 registers and 32 spill; 8 per
    thread take 127. Untuned for speed: no GPU has timed these yet.
    """
    if n_contexts < 0 or n_cols < 1:
        raise ValueError(f"need n_contexts >= 0 and n_cols >= 1, got {n_contexts} and {n_cols}")
    block_v = _next_pow2(n_cols)
    if block_v <= MAX_WHOLE_ROW_V:
        contexts = max(1, min(CONTEXT_TILE_ELEMENTS // block_v, _next_pow2(max(n_contexts, 1))))
    else:
        contexts, block_v = 1, LOOP_BLOCK_V
    warps = min(8, max(1, contexts * block_v // 256))
    return TableConfig(contexts, block_v, ROWS_PER_PROGRAM, warps, rows_warps=4)


if HAS_TRITON:

    # JITFunction, not @triton.jit, as in kernels.triton_ce: the kernels stay compilable for a
    # GPU whatever TRITON_INTERPRET said at import; runnable picks the interpreter per call.
    @JITFunction
    def _table_logsumexp_kernel(
        table_ptr, table_row_stride, row_max_ptr, row_logsum_ptr,
        n_contexts, n_cols,
        BLOCK_C: tl.constexpr, BLOCK_V: tl.constexpr,
    ):
        """Per context row c: m_c = max(table[c]) and log(sum(exp(table[c] - m_c))), in fp32.

        table_ptr       (C, V) fp32/fp16/bf16, column stride 1, row stride table_row_stride
        row_max_ptr     (C,) fp32 out: m_c (-inf for a row of -inf)
        row_logsum_ptr  (C,) fp32 out: log(sum(exp(x - m_c)))
        The two are kept apart, not added into a logsumexp, so that (m_c - x[y]) can be
        taken first: +-1e4 logits keep the precision of a small loss.
        """
        rows = tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C)
        row_ok = rows < n_contexts
        row_start = table_ptr + rows.to(tl.int64)[:, None] * table_row_stride  # int64 before the multiply
        cols = tl.arange(0, BLOCK_V)
        run_max = tl.full((BLOCK_C,), float("-inf"), tl.float32)
        run_sum = tl.zeros((BLOCK_C,), tl.float32)
        for start in range(0, n_cols, BLOCK_V):
            col = start + cols
            x = tl.load(row_start + col[None, :], mask=row_ok[:, None] & (col < n_cols)[None, :],
                        other=float("-inf")).to(tl.float32)
            new_max = tl.maximum(run_max, tl.max(x, axis=1))
            # While a row is all -inf so far, shift by 0 so exp gives 0 rather than nan.
            shift = tl.where(new_max == float("-inf"), 0.0, new_max)
            run_sum = run_sum * tl.exp(run_max - shift) + tl.sum(tl.exp(x - shift[:, None]), axis=1)
            run_max = new_max
        tl.store(row_max_ptr + rows, run_max, mask=row_ok)
        tl.store(row_logsum_ptr + rows, tl.log(tl.where(row_ok, run_sum, 1.0)), mask=row_ok)

    @JITFunction
    def _table_rows_kernel(
        table_ptr, table_row_stride, context_ptr, target_ptr, weight_ptr,
        row_max_ptr, row_logsum_ptr, loss_ptr, counts_ptr,
        n_rows, n_contexts, n_cols, ignore_index,
        HAS_WEIGHT: tl.constexpr, ROW_LOSS: tl.constexpr, WRITE_LOSS: tl.constexpr,
        SCATTER: tl.constexpr, BLOCK_N: tl.constexpr,
    ):
        """Per data row i: the loss w_i * -log softmax(table[c_i])[y_i], and counts[c_i, y_i] += w_i.

        table_ptr      (C, V) as in _table_logsumexp_kernel; read at (c_i, y_i) only
        context_ptr    (N,) int32/int64 contiguous; target_ptr (N,) int32/int64 contiguous,
                       ignore_index marks rows that count for nothing
        weight_ptr     (N,) float contiguous, read only if HAS_WEIGHT
        row_max_ptr, row_logsum_ptr  (C,) fp32 from _table_logsumexp_kernel (WRITE_LOSS only)
        loss_ptr       fp32 out, WRITE_LOSS only: (N,) per-row losses if ROW_LOSS (0 for ignored
                       rows), else (2, programs): per program the loss sum and the sum of the
                       weights of its non-ignored rows
        counts_ptr     (C, V) fp32 contiguous, zeroed by the caller; SCATTER only
        A context outside [0, C) or a target outside [0, V) is never dereferenced: its loss is
        nan and it adds no count.
        """
        pid = tl.program_id(0)
        rows = pid * BLOCK_N + tl.arange(0, BLOCK_N)
        row_ok = rows < n_rows
        c = tl.load(context_ptr + rows, mask=row_ok, other=0).to(tl.int64)  # int64 before any multiply
        y = tl.load(target_ptr + rows, mask=row_ok, other=ignore_index).to(tl.int64)
        valid = row_ok & (y != ignore_index)
        in_range = (c >= 0) & (c < n_contexts) & (y >= 0) & (y < n_cols)
        used = valid & in_range
        if HAS_WEIGHT:
            w = tl.load(weight_ptr + rows, mask=row_ok, other=0.0).to(tl.float32)
        else:
            w = tl.full((BLOCK_N,), 1.0, tl.float32)

        if SCATTER:
            # The onehot half of dL/dtable[c] = sum_i w_i * (softmax(table[c]) - onehot(y_i)),
            # summed over the rows that share context c; duplicates add up in the atomic.
            tl.atomic_add(counts_ptr + c * n_cols + y, w, mask=used, sem="relaxed")

        if WRITE_LOSS:
            row_max = tl.load(row_max_ptr + c, mask=used, other=0.0)
            row_logsum = tl.load(row_logsum_ptr + c, mask=used, other=0.0)
            x_target = tl.load(table_ptr + c * table_row_stride + y, mask=used, other=0.0).to(tl.float32)
            # -log softmax(x)[y] = (m - x[y]) + log(sum(exp(x - m))): the difference of two
            # large logits first.
            nll = tl.where(in_range, (row_max - x_target) + row_logsum, float("nan"))
            loss = tl.where(valid, w * nll, 0.0)
            if ROW_LOSS:
                tl.store(loss_ptr + rows, loss, mask=row_ok)
            else:
                tl.store(loss_ptr + pid, tl.sum(loss, axis=0))
                tl.store(loss_ptr + tl.num_programs(0) + pid, tl.sum(tl.where(valid, w, 0.0), axis=0))

    @JITFunction
    def _table_grad_kernel(
        table_ptr, table_row_stride, row_max_ptr, row_logsum_ptr,
        counts_ptr, grad_ptr, scale_ptr,
        n_contexts, n_cols,
        BLOCK_C: tl.constexpr, BLOCK_V: tl.constexpr,
    ):
        """Per context row c: grad[c] = scale * (W_c * softmax(table[c]) - counts[c]).

        table_ptr, row_max_ptr, row_logsum_ptr  as in _table_logsumexp_kernel
        counts_ptr  (C, V) fp32 contiguous, from _table_rows_kernel; W_c = sum(counts[c])
        grad_ptr    (C, V) table dtype, contiguous; may be counts_ptr itself (each element is
                    read before the same program overwrites it)
        scale_ptr   (1,) fp32: grad_output / sum(w) for "mean", grad_output for "sum", 1 for
                    "none" (whose counts already carry grad_output)
        First loop: W_c. Second loop: the gradient, block by block.
        """
        rows = tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C)
        row_ok = rows < n_contexts
        rows64 = rows.to(tl.int64)
        cols = tl.arange(0, BLOCK_V)
        total = tl.zeros((BLOCK_C,), tl.float32)
        for start in range(0, n_cols, BLOCK_V):
            col = start + cols
            mask = row_ok[:, None] & (col < n_cols)[None, :]
            counts = tl.load(counts_ptr + rows64[:, None] * n_cols + col[None, :], mask=mask, other=0.0)
            total += tl.sum(counts, axis=1)

        row_max = tl.load(row_max_ptr + rows, mask=row_ok, other=0.0)
        row_logsum = tl.load(row_logsum_ptr + rows, mask=row_ok, other=0.0)
        scale = tl.load(scale_ptr)
        for start in range(0, n_cols, BLOCK_V):
            col = start + cols
            mask = row_ok[:, None] & (col < n_cols)[None, :]
            offsets = rows64[:, None] * n_cols + col[None, :]
            counts = tl.load(counts_ptr + offsets, mask=mask, other=0.0)
            x = tl.load(table_ptr + rows64[:, None] * table_row_stride + col[None, :], mask=mask,
                        other=float("-inf")).to(tl.float32)
            probs = tl.exp((x - row_max[:, None]) - row_logsum[:, None])
            # dL/dtable[c] = scale * (W_c * softmax(table[c]) - counts[c]); a context no row
            # uses (W_c = 0) gets exactly 0, even where its softmax is nan (a row of -inf).
            expected = tl.where((total != 0.0)[:, None], total[:, None] * probs, 0.0)
            grad = (expected - counts) * scale
            tl.store(grad_ptr + offsets, grad.to(grad_ptr.dtype.element_ty), mask=mask)


def _check_runnable(table: torch.Tensor) -> None:
    require("triton", table.device)
    if table.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"table must be float32, float16 or bfloat16, got {table.dtype}")


# The launch plan: one function per kernel gives (kernel, grid, args, options) for the buffers
# it is handed; the launch helpers below allocate the buffers and run it, and kernels.static
# compiles the same plan from meta tensors.


def logsumexp_call(table, row_max, row_logsum, config: TableConfig):
    """The launch that fills row_max and row_logsum, each (C,) fp32, for every context row of `table`."""
    n_contexts, n_cols = table.shape
    grid = (triton.cdiv(n_contexts, config.contexts_per_program),)
    return (_table_logsumexp_kernel, grid, (table, table.stride(0), row_max, row_logsum, n_contexts, n_cols),
            dict(BLOCK_C=config.contexts_per_program, BLOCK_V=config.block_v, num_warps=config.context_warps))


def rows_programs(n_rows: int, config: TableConfig) -> int:
    """Programs of the row kernel (at least 1: the partial-sum buffer has one column per program)."""
    return max(1, triton.cdiv(n_rows, config.rows_per_program))


def rows_loss_buffer(n_rows: int, row_loss: bool, config: TableConfig, device) -> torch.Tensor:
    """The row kernel's zeroed loss output: (N,) per-row losses, or (2, programs) partial sums."""
    shape = (n_rows,) if row_loss else (2, rows_programs(n_rows, config))
    return torch.zeros(shape, dtype=torch.float32, device=device)


def rows_call(table, context, target, weight, ignore_index, config: TableConfig, *, row_max=None,
              row_logsum=None, loss=None, row_loss=False, counts=None):
    """The row-kernel launch: losses into `loss` when row_max/row_logsum/loss are given, counts when `counts` is."""
    dummy = context  # a pointer the kernel never reads (flags switch its use off)
    args = (table, table.stride(0), context, target, dummy if weight is None else weight,
            dummy if row_max is None else row_max, dummy if row_logsum is None else row_logsum,
            dummy if loss is None else loss, dummy if counts is None else counts,
            context.shape[0], table.shape[0], table.shape[1], ignore_index)
    options = dict(HAS_WEIGHT=weight is not None, ROW_LOSS=row_loss, WRITE_LOSS=row_max is not None,
                   SCATTER=counts is not None, BLOCK_N=config.rows_per_program, num_warps=config.rows_warps)
    return _table_rows_kernel, (rows_programs(context.shape[0], config),), args, options


def grad_buffer(table, counts) -> torch.Tensor:
    """Where the table's gradient goes: over the fp32 counts for fp32 tables, else a new buffer in its dtype."""
    return counts if table.dtype == torch.float32 else torch.empty(table.shape, dtype=table.dtype, device=table.device)


def grad_call(table, row_max, row_logsum, counts, grad, scale, config: TableConfig):
    """The launch that writes the (C, V) table gradient into `grad` (which may be `counts`)."""
    n_contexts, n_cols = table.shape
    grid = (triton.cdiv(n_contexts, config.contexts_per_program),)
    return (_table_grad_kernel, grid,
            (table, table.stride(0), row_max, row_logsum, counts, grad, scale, n_contexts, n_cols),
            dict(BLOCK_C=config.contexts_per_program, BLOCK_V=config.block_v, num_warps=config.context_warps))


def _run(call) -> None:
    kernel, grid, args, options = call
    runnable(kernel)[grid](*args, **options)


def _launch_logsumexp(table: torch.Tensor, config: TableConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(row_max, row_logsum), each (C,) fp32, of every context row of `table`."""
    row_max = torch.empty(table.shape[0], dtype=torch.float32, device=table.device)
    row_logsum = torch.empty_like(row_max)
    if table.shape[0] > 0:
        _run(logsumexp_call(table, row_max, row_logsum, config))
    return row_max, row_logsum


def _launch_rows(table, context, target, weight, ignore_index, config, *, row_max=None,
                 row_logsum=None, row_loss=False, counts=None):
    """Run the row kernel: losses when row_max/row_logsum are given, counts when `counts` is.

    Returns the loss buffer: (N,) per-row losses if row_loss, else (2, programs) partial
    sums (loss, weight of non-ignored rows); None if no loss was asked for.
    """
    loss = None
    if row_max is not None:
        loss = rows_loss_buffer(context.shape[0], row_loss, config, table.device)
    if context.shape[0] == 0 or (loss is None and counts is None):
        return loss
    _run(rows_call(table, context, target, weight, ignore_index, config, row_max=row_max,
                   row_logsum=row_logsum, loss=loss, row_loss=row_loss, counts=counts))
    return loss


def _launch_grad(table, row_max, row_logsum, counts, scale, config) -> torch.Tensor:
    """The (C, V) gradient of the table in its dtype; over `counts` itself for fp32 tables."""
    grad = grad_buffer(table, counts)
    if table.shape[0] > 0:
        _run(grad_call(table, row_max, row_logsum, counts, grad, scale, config))
    return grad


def table_loss_and_grad(table, context, target, weight, ignore_index, reduction, need_grad,
                        config: TableConfig | None = None):
    """Loss in table.dtype and, when need_grad, the table gradient: the table backend of kernels.fused.

    "mean"/"sum": all three kernels run here and the gradient is for grad_output = 1 (1/sum(w)
    for "mean" folded into the gradient kernel's scale). "none": the gradient is a function of
    the per-row grad_output, which scatters w_i * g_i and runs the gradient kernel then.
    """
    _check_runnable(table)
    if table.stride(1) != 1:
        table = table.contiguous()  # any row stride is fine; columns must be adjacent
    context, target = context.contiguous(), target.contiguous()
    if weight is not None:
        weight = weight.contiguous()
    config = config or choose_table_config(*table.shape)

    row_max, row_logsum = _launch_logsumexp(table, config)
    scalar_grad = need_grad and reduction != "none"
    counts = torch.zeros(table.shape, dtype=torch.float32, device=table.device) if scalar_grad else None
    loss_buf = _launch_rows(table, context, target, weight, ignore_index, config,
                            row_max=row_max, row_logsum=row_logsum,
                            row_loss=reduction == "none", counts=counts)
    if reduction == "none":
        loss = loss_buf
    else:
        partial = loss_buf.sum(dim=1)  # (loss sum, weight sum), deterministic order
        loss = partial[0] if reduction == "sum" else partial[0] / partial[1]
    loss = loss.to(table.dtype)
    if not need_grad:
        return loss, None
    if reduction == "none":
        def rows_grad(grad_output):
            # Each row's contribution is weighted by its own grad_output: scatter w_i * g_i.
            grad_output = grad_output.to(torch.float32)
            row_weight = grad_output.contiguous() if weight is None else weight.to(torch.float32) * grad_output
            counts = torch.zeros(table.shape, dtype=torch.float32, device=table.device)
            _launch_rows(table, context, target, row_weight, ignore_index, config, counts=counts)
            ones = torch.ones(1, dtype=torch.float32, device=table.device)
            return _launch_grad(table, row_max, row_logsum, counts, ones, config)
        return loss, rows_grad
    scale = torch.ones(1, dtype=torch.float32, device=table.device)
    if reduction == "mean":
        # Every row ignored: the loss is 0/0 = nan, but no row has a gradient (as in torch).
        scale = torch.where(partial[1] != 0, scale / partial[1], 0.0)
    return loss, _launch_grad(table, row_max, row_logsum, counts, scale, config)


def triton_table_cross_entropy(
    table: torch.Tensor,
    context: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    config: TableConfig | None = None,
) -> torch.Tensor:
    """Cross-entropy of table[context] (N, V) against target (N,), never building the N x V logits.

    table (C, V) fp32/fp16/bf16 with any row stride; context, target (N,) int32/int64;
    weight (N,) float or None. Same semantics as
    kernels.reference.torch_cross_entropy(table[context], target, weight, ignore_index, reduction);
    the loss comes back in table.dtype, computed in fp32. Differentiable with respect to
    `table` only; its gradient is accumulated over repeated contexts in fp32 and cast once
    (then scaled by a grad_output other than 1 in that dtype, as kernels.fused does).
    Cost: O(C*V) + O(N), whatever the number of repeated contexts. The counts are fp32
    sums of weights: exact for integer weights up to 2**24 per (context, target) cell, then
    within fp32 rounding (a relative 6e-8). A context outside [0, C)
    or a target outside [0, V) (other than ignore_index) is not dereferenced: its loss is nan.
    `config` overrides choose_table_config (tests use it to force the large-V loop on small shapes).
    """
    backend = functools.partial(table_loss_and_grad, config=config)
    return fused_table_cross_entropy(backend, table, context, target, weight, ignore_index, reduction)
