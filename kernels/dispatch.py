"""Backend selection for the loss functions: a dict per public function, from backend name to implementation.

Which backends exist and where they run is kernels.availability; the reductions are
kernels.reference.REDUCTIONS. The Triton modules are imported on first use (two small adapters
below), so that `import kernels` does not import Triton.
"""
from __future__ import annotations

import torch

from kernels import reference
from kernels.availability import BACKENDS, backend_available, require  # noqa: F401 (BACKENDS: re-exported)
from kernels.compiled import compiled_cross_entropy, compiled_table_cross_entropy
from kernels.reference import REDUCTIONS


def resolve_backend(backend: str, device: torch.device | str) -> str:
    """Turn "auto" into a concrete backend; raise KernelUnavailableError for an explicit one that cannot run."""
    device = torch.device(device)
    if backend == "auto":
        if device.type == "cuda" and backend_available("triton", device)[0]:
            return "triton"
        return "torch"
    require(backend, device)
    return backend


def _triton_cross_entropy(logits, target, weight, ignore_index, reduction, overwrite_logits):
    from kernels.triton_ce import triton_cross_entropy  # imports Triton (about 0.4 s): only when asked for

    return triton_cross_entropy(logits, target, weight, ignore_index, reduction, overwrite_logits)


def _triton_table_cross_entropy(table, context, target, weight, ignore_index, reduction):
    from kernels.triton_table import triton_table_cross_entropy  # imports Triton: only when asked for

    return triton_table_cross_entropy(table, context, target, weight, ignore_index, reduction)


# backend -> fn(logits, target, weight, ignore_index, reduction, overwrite_logits)
CROSS_ENTROPY = {
    "triton": _triton_cross_entropy,
    "compiled": compiled_cross_entropy,
    "torch": lambda logits, target, weight, ignore_index, reduction, overwrite_logits:
        reference.torch_cross_entropy(logits, target, weight, ignore_index, reduction),
    "manual": lambda logits, target, weight, ignore_index, reduction, overwrite_logits:
        reference.manual_cross_entropy(logits, target, weight, ignore_index, reduction),
}
# backend -> fn(table, context, target, weight, ignore_index, reduction)
TABLE_CROSS_ENTROPY = {
    "triton": _triton_table_cross_entropy,
    "compiled": compiled_table_cross_entropy,
    "torch": lambda table, context, *args: reference.torch_cross_entropy(table[context], *args),
    "manual": lambda table, context, *args: reference.manual_cross_entropy(table[context], *args),
}


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
    return CROSS_ENTROPY[backend](logits, target, weight, ignore_index, reduction, overwrite_logits)


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
    return TABLE_CROSS_ENTROPY[backend](table, context, target, weight, ignore_index, reduction)
