"""Loss kernels for the harness: fused softmax cross-entropy and its table (gather) variant.

Public entry points:
    cross_entropy(logits, target, weight=None, ignore_index=-100, reduction="mean",
                  backend="auto", overwrite_logits=False)
    table_cross_entropy(table, context, target, weight=None, ignore_index=-100,
                        reduction="mean", backend="auto")

Backends: "triton" (our fused kernel), "compiled" (the same single-pass formulation through
torch.compile), "torch" (F.cross_entropy), "manual" (the lecture's exp/normalise/log/mean).
"auto" picks "triton" for CUDA tensors when Triton imports, else "torch". Backend names
(BACKENDS) and where each can run (backend_available) are kernels.availability; the
reductions (REDUCTIONS) kernels.reference.

This package knows nothing of `harness`.
"""
from kernels.availability import BACKENDS, KernelUnavailableError, backend_available
from kernels.dispatch import cross_entropy, resolve_backend, table_cross_entropy
from kernels.reference import REDUCTIONS

__all__ = [
    "BACKENDS",
    "REDUCTIONS",
    "KernelUnavailableError",
    "backend_available",
    "cross_entropy",
    "resolve_backend",
    "table_cross_entropy",
]
