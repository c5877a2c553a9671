"""What a gradient model's training curve says that its NLLs do not, as report.md bullets.

Two notes: the loss was still falling steadily at the last step (more `--steps` would lower it),
or it ended well above the lowest level it had reached (the steps overshoot: the learning rate is
too large for that configuration, as the lecture's lr 50 is for order 1, whose one context row
takes the whole gradient). Without these the second shows only in the loss-curve figure.
"""
from __future__ import annotations

import math

CONVERGED_DROP = 1e-3  # nats/char the training loss may still fall over the last tenth of the steps
UNSTABLE_RISE = 0.1  # nats/char the last tenth's mean may lie above the first loss or the best tenth before it counts


def _finished_losses(r: dict) -> list[float] | None:
    """A finished gradient model's finite training losses, when there are enough (10) to read a trend."""
    losses = [x for x in (r.get("train_losses") or []) if isinstance(x, (int, float)) and math.isfinite(x)]
    if r.get("method") != "gradient" or r.get("status", "ok") != "ok" or len(losses) < 10:
        return None
    return losses


def still_improving(records: list[dict]) -> list[str]:
    """Gradient models whose training loss fell by more than CONVERGED_DROP over their last tenth of steps."""
    lines = []
    for r in records:
        losses = _finished_losses(r)
        if losses is None:
            continue
        tail = losses[int(0.9 * (len(losses) - 1)):]
        drop = tail[0] - tail[-1]
        # a steady fall only: a loss that oscillates (lr too high) is not "improving"; unstable() names it
        if drop > CONVERGED_DROP and all(b <= a + 1e-6 for a, b in zip(tail, tail[1:])):
            lines.append(f"- {r['key']}: the loss fell {drop:.4f} nats/char over its last {len(tail) - 1} "
                         f"of {len(losses)} steps")
    return lines


def unstable(records: list[dict]) -> list[str]:
    """Gradient models whose mean loss over the last tenth of steps lies more than UNSTABLE_RISE above their
    first loss (it swung about, never settling) or above the lowest mean of any tenth (it fell, then climbed).
    Means over windows of a tenth, so minibatch noise averages out."""
    lines = []
    for r in records:
        losses = _finished_losses(r)
        if losses is None:
            continue
        w = len(losses) // 10
        means = [sum(losses[i:i + w]) / w for i in range(len(losses) - w + 1)]
        first, best = losses[0], min(means)
        if means[-1] - min(first, best) > UNSTABLE_RISE:
            lr = f" ({r['lr']:g})" if isinstance(r.get("lr"), (int, float)) else ""
            where = f"{first:.4f} at step 1" if first < best else f"{best:.4f} over its best {w} steps"
            lines.append(f"- {r['key']}: its last {w} steps averaged {means[-1]:.4f} nats/char, above the {where}: "
                         f"the learning rate{lr} overshoots here; lower `--lr`")
    return lines


def training_lines(records: list[dict]) -> list[str]:
    """report.md's two notes on training curves, each a heading line and its bullets, or nothing."""
    lines = []
    improving, unsettled = still_improving(records), unstable(records)
    if improving:
        lines += ["Still improving at their last step (more `--steps` would lower their loss):", "", *improving, ""]
    if unsettled:
        lines += ["Not settled (the training loss ended above where it started or above its lowest point):", "",
                  *unsettled, ""]
    return lines
