"""Reports of a run: report.md for people, results.csv and results.json for programs.

report.md is rendered from the results dictionary alone (the same one results.json holds),
so a report can be rebuilt from its results.json.
"""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from harness import jsonio

FLOAT_KEYS = ("train_nll", "dev_nll", "test_nll", "train_ppl", "dev_ppl", "test_ppl", "smoothing", "count_nll",
              "nll_vs_count", "train_losses")
CSV_COLUMNS = ["corpus", "order", "method", "loss", "smoothing", "reg", "train_nll", "dev_nll", "test_nll",
               "train_ppl", "dev_ppl", "test_ppl", "fit_seconds", "steps_per_second", "nll_vs_count",
               "max_prob_diff", "new_share", "heldout_share", "status", "error"]


def fmt(x, digits: int = 4) -> str:
    """A table cell: inf as 'inf', missing as '—'."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    if isinstance(x, float):
        if math.isinf(x):
            return "inf" if x > 0 else "-inf"
        return f"{x:.{digits}f}"
    return str(x)


def loss_table(records: list[dict]) -> str:
    """One row per configuration; the best dev NLL (or train NLL without a dev split) in bold."""
    key = "dev_nll" if any(r.get("dev_nll") is not None for r in records) else "train_nll"
    finite = [r[key] for r in records if r.get(key) is not None and math.isfinite(r[key])]
    best = min(finite) if finite else None
    has_gradient = any(r["method"] == "gradient" for r in records)
    rows = []
    for r in records:
        row = {"order": r["order"], "method": r["method"]}
        if has_gradient:
            row["loss"] = r.get("loss") or "—"
        row["k / reg"] = fmt(r.get("smoothing"), 3) if r["method"] == "count" else f"reg {fmt(r.get('reg'), 4)}"
        if r.get("status", "ok") != "ok":
            row["train NLL"] = f"{r['status']}: {r.get('error', '')}"
            rows.append(row)
            continue
        row.update({
            "train NLL": fmt(r.get("train_nll")),
            "dev NLL": fmt(r.get("dev_nll")),
            "test NLL": fmt(r.get("test_nll")),
            ("dev ppl" if key == "dev_nll" else "train ppl"): fmt(r.get("dev_ppl" if key == "dev_nll" else "train_ppl"), 2),
            "fit s": fmt(r.get("fit_seconds"), 3),
        })
        if has_gradient:
            row["steps/s"] = fmt(r.get("steps_per_second"), 1)
            row[f"Δ{key.split('_')[0]} vs count"] = fmt(r.get("nll_vs_count"), 4) if r["method"] == "gradient" else "—"
        bold_col = "dev NLL" if key == "dev_nll" else "train NLL"
        if best is not None and r.get(key) == best:
            row[bold_col] = f"**{row[bold_col]}**"
        rows.append(row)
    return pd.DataFrame(rows).fillna("").to_markdown(index=False, disable_numparse=True)


def render_report(results: dict) -> str:
    """report.md from a results dictionary."""
    run = results["run"]
    env = run["environment"]
    corpus = run["corpus"]
    lines = [
        f"# makemore-harness run: {corpus['name']}",
        "",
        f"- started: {run['started']}",
        f"- command: `{run['command']}`",
        f"- git commit: {env['git_commit']}",
        f"- machine: {env['machine']} (host {env['hostname']})",
        f"- device: {env['device']} — {env['device_name']}",
        f"- python {env['python']}, torch {env['torch']}, triton {env['triton']}",
        "",
        "## Corpus",
        "",
        f"- {corpus['items']:,} items ({corpus['unique_items']:,} unique{', weighted' if corpus['weighted'] else ''}), "
        f"{corpus['characters']:,} characters, {corpus['predicted_characters']:,} predicted tokens (end token included)",
        f"- vocabulary: {corpus['vocab_size']} tokens, `.` = 0 then `{corpus['vocab'][:120]}`",
    ]
    split_rows = [{"split": s, "items": f"{v['items']:,}", "unique items": f"{v['unique_items']:,}",
                   "predicted tokens": f"{v['predicted_characters']:,}"} for s, v in corpus["splits"].items()]
    lines += ["", pd.DataFrame(split_rows).to_markdown(index=False, disable_numparse=True), ""]
    lines += ["## Loss (mean NLL, nats per character)", "", loss_table(results["results"]) if results["results"] else "(no configuration finished)", ""]
    tuned = [r for r in results["results"] if r.get("tuning")]
    if tuned:
        lines += ["## Smoothing tuned on dev", ""]
        ks = [t["k"] for t in tuned[0]["tuning"]]
        rows = []
        for r in tuned:
            row = {"order": r["order"], "method": r["method"]}
            for t in r["tuning"]:
                cell = fmt(t["dev_nll"])
                row[f"k={t['k']:g}"] = f"**{cell}**" if t["k"] == r["smoothing"] else cell
            rows.append(row)
        lines += [f"Dev NLL for each k on the grid {ks}; the chosen k in bold. Test is evaluated once, with it.", "",
                  pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True), ""]
    lines += ["## Samples", ""]
    for r in results["results"]:
        if not r.get("samples"):
            continue
        extra = ""
        if r.get("new_share") is not None:
            extra = f"; {r['new_share']:.0%} not in train"
            if r.get("heldout_share") is not None:
                extra += f", {r['heldout_share']:.0%} real names held out in dev/test"
        lines += [f"### order {r['order']}, {r['method']}, k = {fmt(r['smoothing'], 3)}{extra}", "",
                  " ".join(f"`{s}`" for s in r["samples"]), ""]
    return "\n".join(lines)


def results_frame(results: dict) -> pd.DataFrame:
    return pd.DataFrame([{c: r.get(c) for c in CSV_COLUMNS} for r in results["results"]], columns=CSV_COLUMNS)


def write_run(out_dir: Path, results: dict) -> None:
    """Write results.json, results.csv and report.md, each atomically."""
    out_dir = Path(out_dir)
    jsonio.write_atomic(out_dir / "results.json", jsonio.dumps(results))
    jsonio.write_atomic(out_dir / "results.csv", results_frame(results).to_csv(index=False))
    jsonio.write_atomic(out_dir / "report.md", render_report(results))


def load_results(run_dir: Path) -> dict:
    return jsonio.load(Path(run_dir) / "results.json", FLOAT_KEYS)
