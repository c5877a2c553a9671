"""The one autograd.Function of the backends whose forward returns the loss and its gradient.

A fused backend (kernels.triton_ce.loss_and_grad, kernels.compiled.loss_and_grad) is a plain
function

    backend(logits, target, weight, ignore_index, reduction, need_grad, overwrite_logits)
        -> (loss in logits.dtype, gradient for grad_output = 1, or None without need_grad)

that may write the gradient over the logits when overwrite_logits allows. FusedCrossEntropy
runs it in forward and keeps the gradient; backward only scales it by grad_output, in place,
so each forward supports one backward. The gradient's version counter is read after the
forward: a buffer written again before the backward (a later forward that reuses it, or a
caller writing over logits it promised not to read) makes backward raise instead of
returning a wrong gradient.
"""
from __future__ import annotations

import torch


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
        elif grad_output.device.type != "cpu" or grad_output.item() != 1.0:  # CPU: the check is free and skips a pass
            grad.mul_(grad_output.to(grad.dtype))
        return None, grad, None, None, None, None, None, None


def fused_cross_entropy(backend, logits, target, weight, ignore_index, reduction, overwrite_logits):
    """Differentiable loss of `logits` through the fused `backend` (see the module docstring)."""
    # Asked here, not from ctx.needs_input_grad inside forward: that is True under torch.no_grad
    # too, and a backend would compute (or write over the logits) a gradient nobody can use.
    need_grad = torch.is_grad_enabled() and logits.requires_grad
    return FusedCrossEntropy.apply(backend, logits, target, weight, ignore_index, reduction, overwrite_logits,
                                   need_grad)
