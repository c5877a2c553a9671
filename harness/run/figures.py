"""Figures for a run's report: PNGs drawn from plain data (tensors, lists, dicts).

Every function draws on its own `matplotlib.figure.Figure` with an Agg canvas attached, not
through pyplot: nothing global changes (no `matplotlib.use`, no rcParams, no pyplot figure
registry), so importing or calling this module is safe beside any other matplotlib user, and
it works headless. Each function writes one PNG and returns its path.

Non-finite values (inf, NaN) are left out of lines rather than raising: an unsmoothed model
has an infinite dev NLL, and a diverged training run has NaN losses.
"""
from __future__ import annotations

import math
import re
import warnings
from pathlib import Path

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

DPI = 110
ANNOTATE_MAX_V = 40  # above this many tokens the heat map's cells are too small for text
NLL_UNITS = "nats/char"
MARKERS = "osD^vP"


def _new_figure(width_in: float, height_in: float) -> Figure:
    """A Figure with its own Agg canvas and constrained (tight) layout."""
    fig = Figure(figsize=(width_in, height_in), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path) -> Path:
    """Write the PNG. A character the font lacks (an emoji corpus's labels) is drawn as a box; matplotlib's
    warning about it, one per glyph, would break --quiet and says nothing the picture does not."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"(?s).*[Gg]lyph .* missing from")
        warnings.filterwarnings("ignore", message=r"(?s).*[Mm]atplotlib currently does not support")
        fig.savefig(path, dpi=DPI, facecolor="white")
    return path


def _finite(x) -> bool:
    return x is not None and math.isfinite(float(x))


def _compact(value: float) -> str:
    """A count as few characters as fit in a heat-map cell: 6763, 12.3k, 4.5M, 1.2G."""
    v = float(value)
    if v < 10_000:
        return f"{v:.0f}" if v == int(v) or v >= 100 else f"{v:.3g}"
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if v >= scale:
            shown = v / scale
            return f"{shown:.1f}{suffix}" if shown < 100 else f"{shown:.0f}{suffix}"
    return f"{v:.0f}"  # unreachable: v >= 10_000 matched "k"


# ---------------------------------------------------------------------------------------------
# bigram count matrix


def _heatmap_figure(counts: torch.Tensor, itos, title: str | None = None) -> Figure:
    """The Figure behind `bigram_heatmap` (exposed so tests can inspect its texts)."""
    if counts.dim() != 2 or counts.shape[0] != counts.shape[1]:
        raise ValueError(f"counts must be a square (V, V) matrix, got shape {tuple(counts.shape)}")
    V = counts.shape[0]
    if len(itos) != V:
        raise ValueError(f"itos has {len(itos)} tokens but counts is {V}x{V}")
    values = counts.detach().to("cpu", torch.float64).nan_to_num(nan=0.0, posinf=0.0, neginf=0.0)
    labels = [".", *itos[1:]]  # the boundary token (id 0) is "." whatever the vocabulary calls it
    annotate = V <= ANNOTATE_MAX_V

    fig = _new_figure(16.0, 16.4) if annotate else _new_figure(12.5, 10.5)
    ax = fig.add_subplot()
    vmax = float(values.max()) if values.numel() else 0.0
    image = ax.imshow(values.numpy(), cmap="Blues", vmin=0.0, vmax=vmax if vmax > 0 else 1.0,
                      interpolation="nearest")
    total = float(values.sum())

    if annotate:
        # Two lines per cell as in the lecture: the bigram above the middle, its count below.
        # Text turns white on the darkest cells so it stays readable there. The cells' texts lie
        # inside the axes, so the layout need not measure them (the same picture, a quarter less time).
        font = max(5.0, min(9.0, 200.0 / V))
        for i in range(V):
            for j in range(V):
                c = float(values[i, j])
                color = "white" if vmax > 0 and c > 0.55 * vmax else ("#404040" if c > 0 else "#b0b0b0")
                ax.text(j, i, labels[i] + labels[j], ha="center", va="bottom", fontsize=font, color=color, in_layout=False)
                ax.text(j, i, _compact(c), ha="center", va="top", fontsize=font, color=color, in_layout=False)
        default = (f"Bigram counts: row = first character, column = next character "
                   f"(\".\" = start/end of a name; {total:,.0f} bigrams)")
    else:
        fig.colorbar(image, ax=ax, shrink=0.8, label="count")
        default = (f"Bigram counts, {V}×{V} (cell text left out above {ANNOTATE_MAX_V} tokens; "
                   f"\".\" = start/end; {total:,.0f} bigrams)")

    if V <= 100:
        ax.set_xticks(range(V), labels, fontsize=8 if annotate else 6)
        ax.set_yticks(range(V), labels, fontsize=8 if annotate else 6)
        ax.xaxis.tick_top()
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    ax.tick_params(length=0)
    ax.set_xlabel("next character")
    ax.set_ylabel("first character")
    ax.set_title(title or default, fontsize=13)
    return fig


def bigram_heatmap(counts: torch.Tensor, itos, path, title: str | None = None) -> Path:
    """Draw the bigram count matrix as the lecture does and write it to `path` (PNG).

    counts: (V, V), counts[i, j] = how often token j follows token i (any dtype, any device);
    itos: the V token strings, index 0 the boundary, drawn as ".". For V <= 40 each cell shows its bigram
    ("em") and count (figure 16x16 in); above that only the heat map with a colour bar, as the
    title says. inf/NaN counts are drawn as 0.
    """
    return _save(_heatmap_figure(counts, itos, title), path)


# ---------------------------------------------------------------------------------------------
# dev NLL against a smoothing / regularisation strength


def tuning_plot(curves: dict[str, list[tuple[float, float]]], xlabel: str, path,
                chosen: dict[str, float] | None = None, title: str | None = None) -> Path:
    """Dev NLL against a strength k (add-k) or lambda (L2), log x axis, one line per label.

    curves: label -> [(x, dev_nll_nats), ...]; chosen: label -> the x picked on dev, marked with
    a star. A log axis cannot show x = 0, so points at 0 are drawn as hollow markers at a
    position left of the smallest positive x, labelled "0" and set off by a dotted line; points
    with an infinite or NaN NLL (an unsmoothed model meeting an unseen n-gram) are left out and
    listed in a note under the plot.
    """
    chosen = chosen or {}
    fig = _new_figure(10.0, 5.2)
    ax = fig.add_subplot()

    positive = [x for pts in curves.values() for x, _ in pts if _finite(x) and x > 0]
    has_zero = any(x == 0 for pts in curves.values() for x, _ in pts)
    log_x = bool(positive)
    zero_at = min(positive) / 10 if log_x else 0.0  # where x = 0 is drawn
    not_drawn: dict[str, list[str]] = {}  # label -> x values whose NLL is inf/NaN

    zero_drawn = False  # a finite NLL at x = 0: only then does the axis get a "0" tick
    colors = [f"C{i % 10}" for i in range(len(curves))]
    for color, (label, pts) in zip(colors, curves.items()):
        pts = sorted((float(x), float(y)) for x, y in pts if _finite(x) and (x >= 0 or not log_x))
        line = [(x, y) for x, y in pts if (x > 0 or not log_x) and _finite(y)]
        # the chosen value goes into the legend, not beside its star: with several orders the notes overprint
        shown = label
        star = None
        if label in chosen and _finite(chosen[label]):
            cx = float(chosen[label])
            finite_pts = [(x, y) for x, y in pts if _finite(y)]
            if finite_pts:
                x_near, y_near = min(finite_pts, key=lambda p: abs(p[0] - cx))
                star = (zero_at if (x_near == 0 and log_x) else x_near, y_near)
                shown = f"{label}: {xlabel} = {x_near:g}, {y_near:.4f}"
        if line:
            ax.plot([x for x, _ in line], [y for _, y in line], marker="o", markersize=4, color=color, label=shown)
        else:
            ax.plot([], [], marker="o", color=color, label=f"{shown} (no finite values)")
        for x, y in pts:
            if x == 0 and log_x and _finite(y):
                ax.plot([zero_at], [y], marker="o", markerfacecolor="none", color=color, markersize=6)
                zero_drawn = True
            if not _finite(y):
                not_drawn.setdefault(label, []).append(f"{x:g}")
        if star is not None:
            ax.plot([star[0]], [star[1]], marker="*", markersize=16, color=color, markeredgecolor="black",
                    linestyle="none", zorder=5)

    if log_x:
        ax.set_xscale("log")
        if has_zero and zero_drawn:
            lo = zero_at
            ax.axvline(math.sqrt(lo * min(positive)), color="gray", linestyle=":", linewidth=1)
            ticks = [t for t in ax.get_xticks() if min(positive) * 0.99 <= t <= max(positive) * 1.01]
            ax.set_xticks([lo, *ticks], ["0", *[f"{t:g}" for t in ticks]])
            ax.set_xlim(lo / 2, max(positive) * 2)
    if chosen:
        ax.plot([], [], marker="*", markersize=12, color="gray", markeredgecolor="black", linestyle="none",
                label="chosen on dev")
    ax.set_xlabel(f"{xlabel} (log scale)" if log_x else xlabel)
    ax.set_ylabel(f"dev NLL ({NLL_UNITS})")
    ax.set_title(title or f"Dev NLL against {xlabel}")
    ax.grid(True, which="major", alpha=0.3)
    if curves:  # beside the axes, where no curve runs
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    if not_drawn:
        # One line per distinct set of x values, so "k = 0" for three orders is said once.
        by_xs: dict[str, list[str]] = {}
        for label, xs in not_drawn.items():
            by_xs.setdefault(", ".join(xs), []).append(label)
        notes = [f"Not drawn, dev NLL infinite or NaN: {xlabel} = {xs} for {', '.join(labels)}"
                 for xs, labels in by_xs.items()]
        note_pt = 8
        fig.text(0.01, 0.01, "\n".join(notes), fontsize=note_pt, color="dimgray", va="bottom", ha="left")
        reserved = (len(notes) * note_pt * 1.3 + 8) / (fig.get_figheight() * 72)
        fig.get_layout_engine().set(rect=(0, reserved, 1, 1 - reserved))
    return _save(fig, path)


# ---------------------------------------------------------------------------------------------
# training curves


def loss_curves(curves: dict[str, list[float]], path, reference: dict[str, float] | None = None,
                title: str | None = None) -> Path:
    """Training loss against step, one line per configuration; references as dashed lines.

    curves: label -> loss per step (nats/char), step 0 first; reference: label -> a level to
    compare with (the count model's NLL, the minimum gradient descent can reach). inf/NaN
    losses leave a gap in their line. A reference whose label names an "order N" that starts
    a curve's label takes that curve's colour, so a level reads with its curves.
    """
    from matplotlib.ticker import MaxNLocator

    reference = reference or {}
    fig = _new_figure(8.0, 5.2)
    ax = fig.add_subplot()
    colour_of_order: dict[str, str] = {}
    for i, (label, losses) in enumerate(curves.items()):
        ys = [float(v) if _finite(v) else float("nan") for v in losses]
        bad = sum(1 for y in ys if math.isnan(y))
        shown = label if not bad else f"{label} ({bad} non-finite steps not drawn)"
        colour = f"C{i % 10}"
        ax.plot(range(len(ys)), ys, color=colour, linewidth=1.3, label=shown)
        order = re.match(r"order \d+", label)
        if order:
            colour_of_order.setdefault(order.group(0), colour)
    for j, (label, level) in enumerate(reference.items()):
        if _finite(level):
            order = re.search(r"order \d+", label)
            colour = colour_of_order.get(order.group(0)) if order else None
            ax.axhline(float(level), linestyle="--", linewidth=1.2, color=colour or f"C{(len(curves) + j) % 10}",
                       label=f"{label}: {float(level):.4f}")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("step")
    ax.set_ylabel(f"training loss ({NLL_UNITS})")
    ax.set_title(title or "Training loss")
    ax.grid(True, alpha=0.3)
    if curves or reference:
        ax.legend(fontsize=9)
    return _save(fig, path)


# ---------------------------------------------------------------------------------------------
# dev NLL by order


def nll_by_order(rows: list[dict], path, title: str | None = None) -> Path:
    """Dev NLL against n-gram order, one line per method/smoothing label.

    rows: dicts with keys order (int), label (str), dev_nll (nats/char), e.g. one per
    configuration of a run. Rows with an infinite or NaN dev NLL are left out (noted in the legend).
    """
    fig = _new_figure(8.0, 5.2)
    ax = fig.add_subplot()
    by_label: dict[str, list[tuple[int, float]]] = {}
    for row in rows:
        by_label.setdefault(str(row["label"]), []).append((int(row["order"]), row["dev_nll"]))
    orders = sorted({order for pts in by_label.values() for order, _ in pts})
    for i, (label, pts) in enumerate(by_label.items()):
        pts.sort()
        good = [(o, float(y)) for o, y in pts if _finite(y)]
        bad = [o for o, y in pts if not _finite(y)]
        shown = label if not bad else f"{label} (not finite at order {', '.join(map(str, bad))})"
        # distinct markers, shrinking line by line, so lines that coincide still show each other
        ax.plot([o for o, _ in good], [y for _, y in good], marker=MARKERS[i % len(MARKERS)],
                markersize=max(4.0, 9.0 - 1.5 * i), linewidth=max(1.0, 2.2 - 0.4 * i), color=f"C{i % 10}",
                label=shown)
    if orders:
        ax.set_xticks(orders, [str(o) for o in orders])
    ax.set_xlabel("n-gram order (context = order − 1 characters)")
    ax.set_ylabel(f"dev NLL ({NLL_UNITS})")
    ax.set_title(title or "Dev NLL by n-gram order")
    ax.grid(True, alpha=0.3)
    if by_label:
        ax.legend(fontsize=9)
    return _save(fig, path)


# ---------------------------------------------------------------------------------------------
# neural training curves


def neural_curves(curves: dict[str, list[tuple[int, float | None, float | None]]], path,
                  reference: dict[str, float] | None = None, title: str | None = None) -> Path:
    """Dev NLL (solid, dots) and training loss (dashed, the mean over the steps since the previous
    dev score) against training step, one colour per neural configuration.

    curves: label -> [(step, train_loss, dev_nll), ...], one tuple per dev score (None where a run
    has no dev split); reference: label -> a level (the best count model's NLL), dotted grey.
    """
    reference = reference or {}
    fig = _new_figure(9.0, 5.6)
    ax = fig.add_subplot()
    for i, (label, points) in enumerate(curves.items()):
        colour = f"C{i % 10}"
        steps = [p[0] for p in points]
        dev = [float(p[2]) if _finite(p[2]) else float("nan") for p in points]
        train = [float(p[1]) if _finite(p[1]) else float("nan") for p in points]
        if any(math.isfinite(y) for y in dev):
            best = min((y, s) for y, s in zip(dev, steps) if math.isfinite(y))
            ax.plot(steps, dev, color=colour, marker="o", markersize=3, linewidth=1.4,
                    label=f"{label}: dev (best {best[0]:.4f} at step {best[1]:,})")
            ax.plot([best[1]], [best[0]], marker="*", markersize=13, color=colour, markeredgecolor="black",
                    linestyle="none", zorder=5)
        ax.plot(steps, train, color=colour, linestyle="--", linewidth=1.0, label=f"{label}: train (minibatch mean)")
    for j, (label, level) in enumerate(reference.items()):
        if _finite(level):
            ax.axhline(float(level), linestyle=":", linewidth=1.4, color="gray", label=f"{label}: {float(level):.4f}")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("training step")
    ax.set_ylabel(f"NLL ({NLL_UNITS})")
    ax.set_title(title or "Neural families: dev NLL and training loss against step (★ = the kept, best-on-dev weights)")
    ax.grid(True, alpha=0.3)
    if curves or reference:
        ax.legend(fontsize=7.5)
    return _save(fig, path)
