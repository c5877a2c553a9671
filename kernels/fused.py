"""The one autograd.Function per loss contract whose backends return the loss and its gradient in forward.

Cross-entropy of logits. A fused backend (kernels.triton_ce.loss_and_grad,
kernels.compiled.loss_and_grad) is a plain function

    backend(logits, target, weight, ignore_index, reduction, need_grad, overwrite_logits)
        -> (loss in logits.dtype, gradient for grad_output = 1, or None without need_grad)

that may write the gradient over the logits when overwrite_logits allows. FusedCrossEntropy
runs it in forward and keeps the gradient; backward only scales it by grad_output, in place,
so each forward supports one backward. The gradient's version counter is read after the
forward: a buffer written again before the backward (a later forward that reuses it, or a
caller writing over logits it promised not to read) makes backward raise instead of
returning a wrong gradient.

Cross-entropy of table[context]. A table backend (kernels.triton_table.table_loss_and_grad,
kernels.compiled.table_loss_and_grad) is a plain function

    backend(table, context, target, weight, ignore_index, reduction, need_grad)
        -> (loss in table.dtype, gradient of the (C, V) table, or None without need_grad)

where the gradient is, for "mean" and "sum", the table's gradient for grad_output = 1 in
table.dtype, which FusedTableCrossEntropy's backward only scales. For "none" no (C, V) tensor
known in forward can serve: dL/dtable[c] = sum_i g_i * w_i * (softmax(table[c]) - onehot(y_i))
weighs each row by its own grad_output g_i, and keeping the rows apart would be the N x V
gradient these backends exist to avoid. There the backend returns a function
`grad(grad_output) -> (C, V)` over what its forward kept (the softmax's statistics), which
backward calls. The table gradients are fresh tensors of each forward, so a second backward
(retain_graph) is allowed: it runs the backend again on the saved inputs.
"""
from __future__ import annotations

import torch


def _scale(grad: torch.Tensor, grad_output: torch.Tensor) -> torch.Tensor:
    """grad * grad_output for a scalar grad_output, in place."""
    if grad_output.device.type != "cpu" or grad_output.item() != 1.0:  # CPU: the check is free and skips a pass
        grad.mul_(grad_output.to(grad.dtype))
    return grad


class FusedCrossEntropy(torch.autograd.Function):
    """Forward runs a fused backend and keeps its gradient; backward scales it by grad_output."""

    @staticmethod
    def forward(ctx, backend, logits, target, weight, ignore_index, reduction, overwrite_logits, need_grad):
        loss, grad = backend(logits, target, weight, ignore_index, reduction,
                             need_grad=need_grad, overwrite_logits=overwrite_logits)
        # Kept as an attribute, not save_for_backward: in overwrite mode it is the logits
        # tensor, whose version the backend bumped on purpose.
        ctx.grad = grad
        ctx.version = None if grad is None else grad._version
        ctx.reduction = reduction
        return loss

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output):
        grad = ctx.grad
        if grad is None:
            raise RuntimeError(
                "the fused cross-entropy gradient was already used: backward scales it in place, "
                "so it runs once per forward (no retain_graph)"
            )
        if grad._version != ctx.version:
            raise RuntimeError(
                "the fused cross-entropy gradient buffer was written after its forward (reused by a later forward "
                "of the same vocabulary size, or the overwritten logits changed) before this backward ran; call "
                "backward before the next forward (or use overwrite_logits=True)"
            )
        ctx.grad = None
        if ctx.reduction == "none":
            grad.mul_(grad_output.to(grad.dtype)[:, None])
        else:
            _scale(grad, grad_output)
        return None, grad, None, None, None, None, None, None


def fused_cross_entropy(backend, logits, target, weight, ignore_index, reduction, overwrite_logits):
    """Differentiable loss of `logits` through the fused `backend` (see the module docstring)."""
    # Asked here, not from ctx.needs_input_grad inside forward: that is True under torch.no_grad
    # too, and a backend would compute (or write over the logits) a gradient nobody can use.
    need_grad = torch.is_grad_enabled() and logits.requires_grad
    return FusedCrossEntropy.apply(backend, logits, target, weight, ignore_index, reduction, overwrite_logits,
                                   need_grad)


class FusedTableCrossEntropy(torch.autograd.Function):
    """Forward runs a table backend and keeps its gradient; backward scales it by grad_output ("none": calls it)."""

    @staticmethod
    def forward(ctx, backend, table, context, target, weight, ignore_index, reduction, need_grad):
        loss, grad = backend(table, context, target, weight, ignore_index, reduction, need_grad=need_grad)
        if need_grad:
            # Read back only by "none" and a second backward: a table written in place since
            # this forward then makes autograd raise, not return the gradient of other numbers.
            ctx.save_for_backward(table, context, target, weight)
            ctx.grad, ctx.backend, ctx.ignore_index, ctx.reduction = grad, backend, ignore_index, reduction
        return loss

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output):
        if ctx.reduction == "none":
            _ = ctx.saved_tensors  # unpacked for autograd's version check (see forward)
            return None, ctx.grad(grad_output), None, None, None, None, None, None
        grad, ctx.grad = ctx.grad, None
        if grad is None:  # a second backward (retain_graph): the first handed its gradient to autograd
            table, context, target, weight = ctx.saved_tensors
            _, grad = ctx.backend(table, context, target, weight, ctx.ignore_index, ctx.reduction, need_grad=True)
        return None, _scale(grad, grad_output), None, None, None, None, None, None


def fused_table_cross_entropy(backend, table, context, target, weight, ignore_index, reduction):
    """Differentiable loss of `table[context]` through the table `backend` (see the module docstring)."""
    need_grad = torch.is_grad_enabled() and table.requires_grad
    return FusedTableCrossEntropy.apply(backend, table, context, target, weight, ignore_index, reduction, need_grad)
