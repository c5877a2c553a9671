"""The exact full-batch loss of a table model from its sufficient statistics, the target counts.

For a table model the logits of a row are `table[context]`, so the full-batch weighted mean
cross-entropy only depends on how often (with what total weight) each target follows each
context. With counts[c, y] = sum of the weights of the rows with context c and target y,
W_c = counts[c].sum() and W = sum_c W_c:

    loss = (sum_c W_c * logsumexp(table[c]) - sum_{c,y} counts[c, y] * table[c, y]) / W
    dloss/dtable[c] = (W_c * softmax(table[c]) - counts[c]) / W

A training step then costs O(C x V) instead of O(rows x V): for the bigram on names.txt 27 x 27
numbers instead of 228,146 x 27. The per-row computation F.cross_entropy(table[context], target)
gives the same loss and gradient up to rounding (tests/kernels/test_suffstats.py checks it).
"""
from __future__ import annotations

import torch

from kernels.reference import REDUCTIONS


def target_counts(context: torch.Tensor, target: torch.Tensor, num_contexts: int, vocab_size: int,
                  weight: torch.Tensor | None = None, ignore_index: int = -100) -> torch.Tensor:
    """counts (num_contexts, vocab_size) float32: the summed weight of every (context, target) pair.

    `context`, `target` (N,) int; `weight` (N,) or None for 1 per row. Rows whose target is
    `ignore_index` count for nothing, as in cross_entropy.
    """
    valid = target != ignore_index
    flat = context.long() * vocab_size + torch.where(valid, target, 0).long()
    w = valid.float() if weight is None else torch.where(valid, weight.float(), 0.0)
    counts = torch.bincount(flat, weights=w, minlength=num_contexts * vocab_size)
    return counts.view(num_contexts, vocab_size).float()


def count_cross_entropy(table: torch.Tensor, counts: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy of a table model over all rows at once, from `counts`; differentiable in `table`.

    `table` (C, V) logits per context (bf16 and fp16 are computed in fp32 and the loss returned
    in fp32, the gradient cast back to the table's dtype by autograd; fp64 stays fp64); `counts` (C, V) weighted
    target counts, as from `target_counts`. reduction "mean" divides by the total weight W,
    "sum" does not, "none" returns the per-context summed losses (C,). Contexts with no count
    contribute nothing, even where their row holds -inf.
    """
    if table.dim() != 2 or counts.shape != table.shape:
        raise ValueError(f"table and counts must both be (C, V), got {tuple(table.shape)} and {tuple(counts.shape)}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    compute = torch.float64 if table.dtype == torch.float64 else torch.float32
    logits = table.to(compute)
    counts = counts.to(device=table.device, dtype=compute)
    row_weight = counts.sum(1)  # W_c
    # where a count is 0 its logit does not matter; masking keeps 0 * -inf from turning into NaN
    picked = torch.where(counts > 0, counts * logits, 0.0).sum(1)
    # rows never seen are replaced by zeros before logsumexp: an all -inf row would give a NaN gradient
    seen = row_weight > 0
    log_norm = torch.logsumexp(torch.where(seen[:, None], logits, 0.0), 1)
    per_context = torch.where(seen, row_weight * log_norm, 0.0) - picked
    if reduction == "none":
        return per_context
    total = per_context.sum()
    return total if reduction == "sum" else total / row_weight.sum()
