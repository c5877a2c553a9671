"""Backend selection for the loss functions: one `if/elif` per public function, no registry."""
from __future__ import annotations

import torch

from kernels import reference

BACKENDS = ("triton", "compiled", "torch", "manual")
REDUCTIONS = ("mean", "sum", "none")


class KernelUnavailableError(RuntimeError):
    """A backend was asked for explicitly where it cannot run (no CUDA, no Triton, no compiler)."""


def backend_available(backend: str, device: torch.device | str) -> tuple[bool, str]:
    """Whether `backend` can run on `device`, and if not, why (one line)."""
    device = torch.device(device)
    if backend in ("torch", "manual"):
        return True, ""
    if backend == "triton":
        from kernels.triton_ce import HAS_TRITON, TRITON_IMPORT_ERROR, interpreter_active

        if not HAS_TRITON:
            return False, f"Triton does not import here ({TRITON_IMPORT_ERROR})"
        if device.type == "cuda" or interpreter_active():
            return True, ""
        return False, "the Triton kernel needs a CUDA device (or TRITON_INTERPRET=1 for the slow CPU interpreter)"
    if backend == "compiled":
        from kernels.compiled import compiler_available

        return compiler_available(device)
    raise ValueError(f"unknown loss backend {backend!r}; choose one of auto, {', '.join(BACKENDS)}")


def resolve_backend(backend: str, device: torch.device | str) -> str:
    """Turn "auto" into a concrete backend; raise KernelUnavailableError for an explicit one that cannot run."""
    device = torch.device(device)
    if backend == "auto":
        if device.type == "cuda" and backend_available("triton", device)[0]:
            return "triton"
        return "torch"
    ok, why = backend_available(backend, device)
    if not ok:
        raise KernelUnavailableError(f"loss backend {backend!r} cannot run on {device}: {why}")
    return backend


def _check_args(logits: torch.Tensor, target: torch.Tensor, weight, reduction: str) -> None:
    if logits.dim() != 2:
        raise ValueError(f"logits must be 2-D (N, V), got shape {tuple(logits.shape)}")
    if target.shape != (logits.shape[0],):
        raise ValueError(f"target must have shape ({logits.shape[0]},), got {tuple(target.shape)}")
    if target.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"target must be int32 or int64, got {target.dtype}")
    if weight is not None and weight.shape != (logits.shape[0],):
        raise ValueError(f"weight must have one entry per row, shape ({logits.shape[0]},), got {tuple(weight.shape)}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    backend: str = "auto",
    overwrite_logits: bool = False,
) -> torch.Tensor:
    """Softmax cross-entropy of `logits` (N, V) against `target` (N,), differentiable.

    Same semantics as F.cross_entropy plus per-row weights: `weight` (N,) scales each row's
    loss; "mean" divides by the sum of the weights of the rows whose target is not
    `ignore_index`, so a weight w behaves exactly like w copies of the row; "none" returns
    the weighted per-row losses (0 for ignored rows). `overwrite_logits=True` lets the fused
    backends write the gradient into the logits buffer (the caller promises not to read the
    logits again); other backends ignore it.
    """
    _check_args(logits, target, weight, reduction)
    backend = resolve_backend(backend, logits.device)
    if backend == "triton":
        from kernels.triton_ce import triton_cross_entropy

        return triton_cross_entropy(logits, target, weight, ignore_index, reduction, overwrite_logits)
    if backend == "compiled":
        from kernels.compiled import compiled_cross_entropy

        return compiled_cross_entropy(logits, target, weight, ignore_index, reduction, overwrite_logits)
    if backend == "torch":
        return reference.torch_cross_entropy(logits, target, weight, ignore_index, reduction)
    if backend == "manual":
        return reference.manual_cross_entropy(logits, target, weight, ignore_index, reduction)
    raise ValueError(f"unknown loss backend {backend!r}; choose one of auto, {', '.join(BACKENDS)}")


def table_cross_entropy(
    table: torch.Tensor,
    context: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    backend: str = "auto",
) -> torch.Tensor:
    """Cross-entropy of `table[context]` (N, V) against `target` (N,) without materialising the logits.

    `table` (C, V) is a parameter table, `context` (N,) int row ids into it. The gradient of
    the table accumulates the rows of repeated contexts. Same reductions and weights as
    `cross_entropy`.
    """
    if table.dim() != 2:
        raise ValueError(f"table must be 2-D (C, V), got shape {tuple(table.shape)}")
    if context.dim() != 1 or context.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"context must be a 1-D int32/int64 tensor, got {context.dtype} {tuple(context.shape)}")
    if target.shape != context.shape:
        raise ValueError(f"target must have the shape of context {tuple(context.shape)}, got {tuple(target.shape)}")
    if weight is not None and weight.shape != context.shape:
        raise ValueError(f"weight must have the shape of context {tuple(context.shape)}, got {tuple(weight.shape)}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    backend = resolve_backend(backend, table.device)
    if backend == "triton":
        from kernels.triton_table import triton_table_cross_entropy

        return triton_table_cross_entropy(table, context, target, weight, ignore_index, reduction)
    if backend == "compiled":
        from kernels.compiled import compiled_table_cross_entropy

        return compiled_table_cross_entropy(table, context, target, weight, ignore_index, reduction)
    if backend == "torch":
        return reference.torch_cross_entropy(table[context], target, weight, ignore_index, reduction)
    if backend == "manual":
        return reference.manual_cross_entropy(table[context], target, weight, ignore_index, reduction)
    raise ValueError(f"unknown loss backend {backend!r}; choose one of auto, {', '.join(BACKENDS)}")
