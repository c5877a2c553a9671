"""Fused softmax cross-entropy written once in torch and compiled by `torch.compile` (C++ on CPU, Triton on CUDA).

One pass per row computes the row max, the exp-sum, the target logit and the gradient
`w * (softmax - onehot) / sum(w)`, all in fp32 whatever the logits' dtype. The forward writes
the gradient (into the logits when the caller allows it, else into a reused buffer), so the
backward only scales it by the incoming gradient: `loss_and_grad` is a fused backend of
kernels.fused.FusedCrossEntropy, as the Triton kernel's is. Where it runs is
kernels.availability.compiler_available. This is the CPU counterpart of
`kernels/triton_ce.py`: eager F.cross_entropy makes several passes and allocates a fresh
gradient each step, and allocating 64 MiB costs more than moving it.

Compilation happens on first use, never at import. N (rows) is always a dynamic dimension, so
a training run with a ragged last batch compiles once; V is compiled in as a constant up to
`STATIC_VOCAB_MAX` (much faster code for tiny rows like V = 27) and is dynamic above it.
`warmup()` returns the seconds the first call of a shape class takes, which is how the
benchmark reports compile time apart from run time.

The table variant (`compiled_table_cross_entropy`) needs no compiler at all: every row with the
same context has the same logits, so its loss and gradient reduce to (C, V) work plus O(N)
gathers and `index_add_`, never N x V. `table_loss_and_grad` is its backend of
kernels.fused.FusedTableCrossEntropy, as the Triton table kernel's is.
"""
from __future__ import annotations

import functools
import time
from collections import OrderedDict

import torch

from kernels.fused import fused_cross_entropy, fused_table_cross_entropy
from kernels.reference import reduce_rows

STATIC_VOCAB_MAX = 256  # at or below this V, the compiled kernel is specialised to V


# ---------------------------------------------------------------------------------------------
# The single-pass formulation. Everything here is traced by torch.compile; keep it free of
# Python branches on tensor values.


def _rows_loss_and_grad(logits, target, weight, ignore_index: int, mean):
    """Per-row max, exp-sum and target logit of `logits` (N, V), and the fp32 gradient (N, V).

    target (N,) int64, weight (N,) fp32, mean a 0-d bool tensor ("mean" divides the gradient by
    the summed weight of the valid rows). Returns (grad, row_max, row_sumexp, target_logit, denom).
    """
    x = logits.float()
    valid = target != ignore_index
    w = torch.where(valid, weight, 0.0)
    denom = w.sum()
    row_scale = torch.where(valid, w * torch.where(mean, 1.0 / denom, 1.0), 0.0)[:, None]  # 0/0 if all ignored
    onehot = torch.arange(x.shape[1], device=x.device)[None, :] == target[:, None]
    row_max = x.amax(1, keepdim=True)
    row_sumexp = torch.exp(x - row_max).sum(1, keepdim=True)
    target_logit = torch.where(onehot, x, 0.0).sum(1, keepdim=True)
    # dL/dx = w * (softmax(x) - onehot(y)) / sum(w). The per-row factor w/(sum(w) * sumexp) is
    # one scalar per row, so the only per-element work is one exp, one multiply and a select.
    # Written as `exp(x - max) * (scale / sumexp)` rather than `(e / sumexp - onehot) * scale`:
    # with the latter, inductor 2.13's outer-loop fusion fails (KeyError) when the gradient
    # is written in place of the logits.
    grad = torch.exp(x - row_max) * (row_scale / row_sumexp) - torch.where(onehot, row_scale, 0.0)
    grad = torch.where(valid[:, None], grad, 0.0)  # ignored rows: 0 even when all -inf (NaN above)
    return grad, row_max, row_sumexp, target_logit, denom


def _grad_into(logits, target, weight, grad_out, ignore_index: int, mean):
    grad, row_max, row_sumexp, target_logit, denom = _rows_loss_and_grad(logits, target, weight, ignore_index, mean)
    grad_out.copy_(grad)
    return row_max, row_sumexp, target_logit, denom


def _grad_over_logits(logits, target, weight, ignore_index: int, mean):
    grad, row_max, row_sumexp, target_logit, denom = _rows_loss_and_grad(logits, target, weight, ignore_index, mean)
    logits.copy_(grad)
    return row_max, row_sumexp, target_logit, denom


def _loss_only(logits, target, weight, ignore_index: int, mean):
    _, row_max, row_sumexp, target_logit, denom = _rows_loss_and_grad(logits, target, weight, ignore_index, mean)
    return row_max, row_sumexp, target_logit, denom


def _row_losses(row_max, row_sumexp, target_logit, weight, target, ignore_index: int):
    """Weighted per-row losses (N,) fp32, 0 for ignored rows.

    A separate (tiny) compiled graph: computing it inside the kernel above makes inductor split
    the fused row loop into several passes over the logits.
    """
    valid = target != ignore_index
    nll = (row_max + row_sumexp.log() - target_logit).squeeze(1)
    return torch.where(valid, nll * weight, 0.0)


# One Python function per (entry point, V class): dynamo keys its graph cache, and its limit of
# graphs per function (torch._dynamo.config.recompile_limit, 8), on the code object, so separate
# functions keep static-V and dynamic-V graphs apart and spread the graphs over several limits.
# Past the limit dynamo runs the function eagerly: still correct, only slower.
def _into_static_v(*args):
    return _grad_into(*args)


def _into_dynamic_v(*args):
    return _grad_into(*args)


def _over_static_v(*args):
    return _grad_over_logits(*args)


def _over_dynamic_v(*args):
    return _grad_over_logits(*args)


def _loss_static_v(*args):
    return _loss_only(*args)


def _loss_dynamic_v(*args):
    return _loss_only(*args)


_ENTRY_POINTS = {
    ("into", True): _into_static_v,
    ("into", False): _into_dynamic_v,
    ("over", True): _over_static_v,
    ("over", False): _over_dynamic_v,
    ("loss", True): _loss_static_v,
    ("loss", False): _loss_dynamic_v,
    ("rows", True): _row_losses,
}


class CompiledKernelCache:
    """The compiled functions and the reusable gradient buffers of this module; bounded, one per process.

    - compiled: one `torch.compile` wrapper per (entry point, whether V is static). Dynamo keeps
      the graphs (one per dtype, device and static V; N is dynamic) behind each wrapper.
    - buffers: gradient buffers keyed by (V, dtype, device), at most `max_buffers`, least
      recently used evicted. A buffer grows to the largest N seen; a call with fewer rows gets
      a view of its first rows. Every forward that writes a buffer bumps its version counter,
      which is how a backward tells that a later forward has overwritten its gradient.
    - compile_seconds: wall seconds of every call that compiled a graph, by (entry, V class, dtype).
    """

    def __init__(self, max_buffers: int = 4):
        self.max_buffers = max_buffers
        self.compiled: dict[tuple[str, bool], object] = {}
        self.buffers: OrderedDict[tuple, torch.Tensor] = OrderedDict()  # key -> (rows, V) tensor
        self.compile_seconds: dict[tuple, float] = {}

    def function(self, entry: str, static_vocab: bool):
        key = (entry, static_vocab)
        if key not in self.compiled:
            self.compiled[key] = torch.compile(_ENTRY_POINTS[key], dynamic=False)
        return self.compiled[key]

    def grad_buffer(self, n_rows: int, n_cols: int, dtype: torch.dtype, device: torch.device):
        """A (n_rows, n_cols) gradient buffer reused across calls (a view of its first n_rows rows)."""
        key = (n_cols, dtype, device)
        buffer = self.buffers.pop(key, None)
        if buffer is None or buffer.shape[0] < n_rows:
            buffer = torch.empty((n_rows, n_cols), dtype=dtype, device=device)
        self.buffers[key] = buffer
        while len(self.buffers) > self.max_buffers:
            self.buffers.popitem(last=False)
        return buffer[:n_rows]

    def clear(self):
        """Drop buffers and compiled wrappers (dynamo's own graph cache is reset separately)."""
        self.buffers.clear()
        self.compiled.clear()
        self.compile_seconds.clear()


KERNEL_CACHE = CompiledKernelCache()


def _mark_rows_dynamic(tensors, static_vocab: bool):
    for t in tensors:
        if t.shape[0] > 1:  # dynamo specialises sizes 0 and 1 anyway
            torch._dynamo.maybe_mark_dynamic(t, 0)
        if not static_vocab and t.dim() == 2:
            torch._dynamo.maybe_mark_dynamic(t, 1)


def _call(cache: CompiledKernelCache, entry: str, static_vocab: bool, dtype, args):
    """Call a compiled entry point; time it and record the seconds when it compiled a graph."""
    from torch._dynamo.utils import counters

    fn = cache.function(entry, static_vocab)
    graphs_before = counters["stats"]["unique_graphs"]
    start = time.perf_counter()
    out = fn(*args)
    if counters["stats"]["unique_graphs"] != graphs_before:
        key = (entry, args[0].shape[-1] if static_vocab else "dynamic V", str(dtype))
        cache.compile_seconds[key] = cache.compile_seconds.get(key, 0.0) + time.perf_counter() - start
    return out


def loss_and_grad(logits, target, weight, ignore_index, reduction, need_grad, overwrite_logits,
                  cache: CompiledKernelCache = KERNEL_CACHE):
    """Loss in logits.dtype and, when need_grad, the gradient for grad_output = 1: the fused backend.

    Where the gradient lives, and why that is safe:
    - overwrite_logits=True: in the logits' own buffer (the caller promised not to read them).
    - logits that are a leaf (autograd would keep our tensor as `.grad`): a fresh tensor each
      call, which autograd adopts as `.grad` without a copy. A reused buffer there would alias
      `.grad` and be clobbered by the next step.
    - otherwise (logits computed from parameters, e.g. `W[context]`): a buffer reused across
      calls with the same V, dtype and device. Autograd consumes it during backward (the
      gradient flows on to the parameters), so nothing keeps it. The contract: call backward
      before the next forward of the same V (as every training loop does); a backward whose
      buffer was reused by a later forward raises (kernels.fused) instead of returning a wrong
      gradient. A hook or `retain_grad()` that wants to keep the gradient must clone it.
    With overwrite_logits and logits that are a view, autograd regenerates the view's grad_fn
    after the write, so ask for the gradient of the view's base (or a parameter), not of the
    view itself.
    """
    n_rows, n_cols = logits.shape
    static_vocab = n_cols <= STATIC_VOCAB_MAX
    target = target.long()
    weight = torch.ones(n_rows, device=logits.device) if weight is None else weight.float()
    mean = torch.tensor(reduction == "mean", device=logits.device)
    logits_c = logits.detach().contiguous()
    grad = None
    if overwrite_logits:
        if not logits.is_contiguous():
            raise ValueError("overwrite_logits=True needs contiguous logits")
        entry, grad = "over", logits_c
        args = (logits_c, target, weight, ignore_index, mean)
        _mark_rows_dynamic(args[:3], static_vocab)
    elif not need_grad:
        entry = "loss"
        args = (logits_c, target, weight, ignore_index, mean)
        _mark_rows_dynamic(args[:3], static_vocab)
    else:
        if logits.grad_fn is None:
            grad = torch.empty_like(logits_c)
        else:
            grad = cache.grad_buffer(n_rows, n_cols, logits.dtype, logits.device)
        entry = "into"
        args = (logits_c, target, weight, grad, ignore_index, mean)
        _mark_rows_dynamic(args[:4], static_vocab)
    row_max, row_sumexp, target_logit, denom = _call(cache, entry, static_vocab, logits.dtype, args)
    if grad is not None:
        # The compiled graph wrote `grad` (or the logits): say so to autograd, so that a node
        # that saved the logits, or the backward of an earlier forward into the same buffer,
        # fails loudly instead of reading the wrong numbers.
        torch.autograd.graph.increment_version(grad)
    rows_args = (row_max, row_sumexp, target_logit, weight, target, ignore_index)
    _mark_rows_dynamic(rows_args[:5], True)
    per_row = _call(cache, "rows", True, torch.float32, rows_args)
    loss = reduce_rows(per_row, reduction, denom)
    return loss.to(logits.dtype), (grad if need_grad else None)


def compiled_cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    overwrite_logits: bool = False,
    cache: CompiledKernelCache = KERNEL_CACHE,
) -> torch.Tensor:
    """Softmax cross-entropy of `logits` (N, V) against `target` (N,) with the compiled single-pass kernel.

    Semantics of kernels.reference.torch_cross_entropy: weight (N,) per-row weights, "mean"
    divides by the summed weight of the non-ignored rows, "none" gives weighted per-row losses
    (0 for ignored rows); the loss has logits.dtype, the math is fp32. `weight` is treated as
    a constant (no gradient). overwrite_logits=True writes the gradient into `logits` (which
    must be contiguous) during the forward: the caller must not read them afterwards. Where the
    gradient lives otherwise is explained in `loss_and_grad`. The first call per dtype
    (and per V up to STATIC_VOCAB_MAX) compiles for a few seconds; see `warmup`.
    """
    backend = loss_and_grad if cache is KERNEL_CACHE else functools.partial(loss_and_grad, cache=cache)
    return fused_cross_entropy(backend, logits, target, weight, ignore_index, reduction, overwrite_logits)


# ---------------------------------------------------------------------------------------------
# Table variant: logits = table[context], with no N x V tensor at all.


def _table_grad(probs, context, safe_target, row_factor, dtype):
    """dL/dtable[c] = sum over rows i with context c of r_i * (softmax(table[c]) - onehot(y_i)), in `dtype`.

    Rows sharing a context share the softmax, so this is softmax(table) * (summed row factor per
    context) minus the row factors scattered at (context, target): O(N + C*V), never N x V.
    """
    n_contexts, vocab_size = probs.shape
    per_context = torch.zeros(n_contexts, device=probs.device).index_add_(0, context, row_factor)
    grad = probs * per_context[:, None]
    grad.view(-1).index_add_(0, context * vocab_size + safe_target, -row_factor)
    return grad.to(dtype)


def table_loss_and_grad(table, context, target, weight, ignore_index: int, reduction: str, need_grad: bool):
    """Loss in table.dtype and, when need_grad, the table gradient: the table backend of kernels.fused.

    The row factor r_i of _table_grad is w_i / sum(w) for "mean", w_i for "sum" (grad_output = 1);
    for "none" the gradient is a function of the per-row grad_output g, with r_i = w_i * g_i.
    """
    table32 = table.detach().float()
    log_probs = torch.log_softmax(table32, dim=1)  # (C, V): shared by every row with that context
    valid = target != ignore_index
    safe_target = torch.where(valid, target, 0).long()
    context = context.long()
    row_weight = valid.float() if weight is None else torch.where(valid, weight.float(), 0.0)
    nll = -log_probs[context, safe_target]
    per_row = torch.where(valid, nll * row_weight, 0.0)
    denom = row_weight.sum()
    loss = reduce_rows(per_row, reduction, denom).to(table.dtype)
    if not need_grad:
        return loss, None
    probs = log_probs.exp()
    if reduction == "none":
        return loss, lambda grad_output: _table_grad(probs, context, safe_target, row_weight * grad_output.float(),
                                                     table.dtype)
    row_factor = row_weight / denom if reduction == "mean" else row_weight
    return loss, _table_grad(probs, context, safe_target, row_factor, table.dtype)


def compiled_table_cross_entropy(
    table: torch.Tensor,
    context: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> torch.Tensor:
    """Cross-entropy of `table[context]` (N, V) against `target` (N,), differentiable w.r.t. `table` (C, V).

    Same semantics as compiled_cross_entropy. Needs no compiled kernel: it works on the (C, V)
    table plus O(N) gathers and index_add_, so it is exact, cheap, and the same on any device.
    """
    return fused_table_cross_entropy(table_loss_and_grad, table, context, target, weight, ignore_index, reduction)


def warmup(
    shape: tuple[int, int],
    dtype: torch.dtype,
    device: torch.device | str,
    overwrite_logits: bool = False,
    cache: CompiledKernelCache = KERNEL_CACHE,
) -> float:
    """Compile the kernels for logits of this shape class and return the wall seconds it took.

    One forward+backward on random data. Any N of the same V (and dtype, device, mode) then
    runs without compiling, so the benchmark times run seconds apart from these compile seconds.
    """
    n_rows, vocab_size = shape
    device = torch.device(device)
    gen = torch.Generator(device=device).manual_seed(0)
    base = torch.randn((n_rows, vocab_size), generator=gen, device=device).to(dtype)
    target = torch.randint(0, vocab_size, (n_rows,), generator=gen, device=device)
    weight_param = torch.ones((), device=device, requires_grad=True)
    start = time.perf_counter()
    logits = base * weight_param if not overwrite_logits else (base.requires_grad_(True) * 1)
    loss = compiled_cross_entropy(logits, target, overwrite_logits=overwrite_logits, cache=cache)
    loss.backward()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start
