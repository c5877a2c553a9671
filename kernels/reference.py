"""Torch references for the loss kernels: F.cross_entropy with per-row weights, and the lecture's manual path."""
from __future__ import annotations

import torch
import torch.nn.functional as F

# The reductions every loss of the package takes, as F.cross_entropy's.
REDUCTIONS = ("mean", "sum", "none")


def reduce_rows(per_row: torch.Tensor, reduction: str, denom: torch.Tensor) -> torch.Tensor:
    """Reduce weighted per-row losses: "none" keeps them, "sum" adds them, "mean" divides the sum by
    `denom`, the summed weight of the rows not ignored (the fused backends compute it alongside)."""
    if reduction == "none":
        return per_row
    return per_row.sum() if reduction == "sum" else per_row.sum() / denom


def _reduce(per_row: torch.Tensor, weight: torch.Tensor | None, valid: torch.Tensor, reduction: str) -> torch.Tensor:
    """Reduce weighted per-row losses; "mean" divides by the summed weight of the valid rows."""
    if reduction == "none":
        return per_row
    total = per_row.sum()
    if reduction == "sum":
        return total
    denom = valid.sum() if weight is None else torch.where(valid, weight, 0).sum()
    return total / denom.to(total.dtype)


def torch_cross_entropy(logits, target, weight=None, ignore_index=-100, reduction="mean"):
    """F.cross_entropy with per-row weights (rows whose target is `ignore_index` count for nothing)."""
    if weight is None:
        return F.cross_entropy(logits, target.long(), ignore_index=ignore_index, reduction=reduction)
    per_row = F.cross_entropy(logits, target.long(), ignore_index=ignore_index, reduction="none")
    valid = target != ignore_index
    per_row = per_row * torch.where(valid, weight, 0).to(per_row.dtype)
    return _reduce(per_row, weight, valid, reduction)


def manual_cross_entropy(logits, target, weight=None, ignore_index=-100, reduction="mean"):
    """The lecture's loss: counts = exp(logits); probs = counts / sum; pluck; -log; mean.

    For teaching and as a slow reference only: exp overflows to inf for logits above about
    88 (fp32), and the loss turns into NaN. The fused backends subtract the row max first.
    """
    counts = logits.exp()
    probs = counts / counts.sum(1, keepdim=True)  # keepdim, or the division broadcasts along the wrong axis
    valid = target != ignore_index
    safe_target = torch.where(valid, target, 0).long()
    per_row = -probs[torch.arange(logits.shape[0], device=logits.device), safe_target].log()
    w = valid.to(per_row.dtype) if weight is None else torch.where(valid, weight, 0).to(per_row.dtype)
    per_row = per_row * w  # note: 0 * nan stays nan where probs overflowed, as the lecture's code would
    per_row = torch.where(valid, per_row, torch.zeros_like(per_row))
    return _reduce(per_row, weight, valid, reduction)
