"""bench.png, drawn from the saved bench.csv (data first, rendering second)."""
from __future__ import annotations

import math
from pathlib import Path

from harness.bench.common import SPREAD_LIMIT, read_rows
from harness.bench.config import VARIANTS


def plot(csv_path: Path, png_path: Path) -> None:
    """bench.png from bench.csv: forward+backward GB/s per backend (log scale), the copy bandwidth as a dashed ceiling.

    A grid with several N per V: one panel per dtype and V, GB/s against N (log-log), one line
    per backend. A grid with one N per V (the CPU default): one panel per dtype, grouped bars
    per V, so that single points do not float in empty axes.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df = read_rows(csv_path)
    copy_gbps = float(df.loc[df["backend"] == "copy", "gbps"].iloc[0])
    grid = df[~df["backend"].isin(["copy", "*"])]
    ok = grid[(grid["status"] == "ok") & (grid["pass"] == "fwd+bwd")]
    dtypes = list(dict.fromkeys(grid["dtype"])) or ["fp32"]
    vs = sorted(set(grid["V"])) or [0]
    backends = [b for b in VARIANTS if b in set(ok["backend"])]
    colors = {b: plt.get_cmap("tab10")(i % 10) for i, b in enumerate(VARIANTS)}
    one_n = grid.groupby(["dtype", "V"])["N"].nunique().max() <= 1 if len(grid) else True

    if one_n:
        fig, axes = plt.subplots(len(dtypes), 1, figsize=(max(9.0, 1.1 * len(vs) * max(1, len(backends)) ** 0.5 + 4), 3.4 * len(dtypes) + 0.9),
                                 squeeze=False, sharey=True)
        width = 0.8 / max(1, len(backends))
        for i, dtype in enumerate(dtypes):
            ax = axes[i][0]
            panel = ok[ok["dtype"] == dtype]
            for k, backend in enumerate(backends):
                rows = panel[panel["backend"] == backend].set_index("V")
                here = [v for v in vs if v in rows.index]
                xs = [j + (k - (len(backends) - 1) / 2) * width for j, v in enumerate(vs) if v in rows.index]
                drawn = ax.bar(xs, [rows.loc[v, "gbps"] for v in here], width=width * 0.95, color=colors[backend],
                               label=backend, hatch="//" if backend.startswith("table") else None, edgecolor="white")
                ax.bar_label(drawn, labels=[_label(rows.loc[v, "gbps"]) + ("\nwide" if _wide(rows.loc[v]) else "")
                                            for v in here], fontsize=7, padding=1)
            ax.axhline(copy_gbps, color="black", linestyle="--", linewidth=1, label=f"copy bandwidth ({copy_gbps:.1f} GB/s)")
            ns = grid[grid["dtype"] == dtype].groupby("V")["N"].first()
            ax.set_xticks(range(len(vs)), [f"V = {v}\nN = {ns.get(v, 0):,}" for v in vs])
            ax.set_title(dtype, fontsize=10)
            ax.set_ylabel("GB/s (fwd+bwd), log scale")
            # log scale: a CPU's 0.3 GB/s bars and its 12 GB/s copy line are both readable
            values = [copy_gbps] + [x for x in ok["gbps"] if x > 0]
            ax.set_yscale("log")
            ax.set_ylim(min(values) / 2, max(values) * 2.5)  # room for the bar labels
            ax.grid(True, axis="y", which="both", alpha=0.3)
    else:
        fig, axes = plt.subplots(len(dtypes), len(vs), figsize=(3.6 * len(vs) + 1.5, 3.2 * len(dtypes) + 0.9),
                                 squeeze=False, sharey=True)
        for i, dtype in enumerate(dtypes):
            for j, v in enumerate(vs):
                ax = axes[i][j]
                panel = ok[(ok["dtype"] == dtype) & (ok["V"] == v)]
                for backend in backends:
                    line = panel[panel["backend"] == backend].sort_values("N")
                    if len(line):
                        ax.plot(line["N"], line["gbps"], marker="o", ms=4, color=colors[backend], label=backend,
                                linestyle="--" if backend.startswith("table") else "-")
                ax.axhline(copy_gbps, color="black", linestyle="--", linewidth=1,
                           label=f"copy bandwidth ({copy_gbps:.0f} GB/s)")
                ax.set_xscale("log", base=2)
                ax.set_yscale("log")
                ax.set_title(f"{dtype}, V = {v}", fontsize=10)
                ax.grid(True, which="both", alpha=0.3)
                if i == len(dtypes) - 1:
                    ax.set_xlabel("rows N")
                if j == 0:
                    ax.set_ylabel("GB/s (fwd+bwd)")
    handles = {}
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    ncol = max(1, min(4 if fig.get_figwidth() < 12 else 6, len(handles)))
    rows_of_legend = math.ceil(len(handles) / ncol)
    fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=ncol, fontsize=8, frameon=False)
    fig.suptitle(f"Cross-entropy forward+backward: GB/s of the bytes that must move (bench.md says which)\n"
                 f"{df['device_name'].iloc[0]}; 'wide': p80/p20 > {SPREAD_LIMIT:g}, not a reliable figure",
                 fontsize=9)
    fig.tight_layout(rect=(0, 0.04 + 0.035 * rows_of_legend, 1, 0.93))
    fig.savefig(png_path, dpi=110)
    plt.close(fig)




def _label(gbps: float) -> str:
    return f"{gbps:.1f}" if gbps >= 10 else (f"{gbps:.2f}" if gbps >= 0.1 else f"{gbps:.3f}")


def _wide(row) -> bool:
    return "wide_spread" in row.index and str(row["wide_spread"]) == "True"
