"""Reports of a run: report.md for people, results.csv and results.json for programs.

report.md is rendered from the results dictionary alone (the same one results.json holds),
so a report can be rebuilt from its results.json.
"""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import torch

from harness.core import jsonio
from harness.evaluation.intervals import Interval, beyond_noise, paired_difference, unpaired_difference
from harness.models.families import TUNED_K
from harness.models.smoothed import LABELS as SMOOTHING_LABELS
from harness.models.smoothed import SHORT_LABELS

FLOAT_KEYS = ("train_nll", "dev_nll", "test_nll", "train_ppl", "dev_ppl", "test_ppl", "smoothing", "count_nll",
              "nll_vs_count", "train_losses", "max_prob_diff", "train_nll_ci", "dev_nll_ci", "test_nll_ci", "item_nll")
CSV_COLUMNS = ["corpus", "order", "method", "loss", "smoothing", "reg", "train_nll", "dev_nll", "test_nll",
               "train_nll_ci", "dev_nll_ci", "test_nll_ci", "train_ppl", "dev_ppl", "test_ppl", "fit_seconds", "steps_per_second", "nll_vs_count",
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


def with_interval(r: dict, split: str) -> str:
    """An NLL cell: the estimate and, where the run has one, half the width of its 95 % bootstrap interval."""
    value, ci = r.get(f"{split}_nll"), r.get(f"{split}_nll_ci")
    cell = fmt(value)
    if ci and value is not None and math.isfinite(value) and all(math.isfinite(x) for x in ci):
        cell += f" ±{(ci[1] - ci[0]) / 2:.4f}"
    elif ci and value is not None and math.isfinite(value):
        cell += " (CI to inf)"
    return cell


def near_best(results: dict, split: str = "dev") -> dict[str, tuple[float, Interval]]:
    """Each finished configuration's paired difference from the best one on `split` (B − best), over the
    same items: key -> (estimate, interval). Empty where the run stored no per-item NLLs (older runs)."""
    items = (results["run"].get("split_items") or {}).get(split)
    records = [r for r in results["results"] if r.get("status", "ok") == "ok"
               and split in (r.get("item_nll") or {}) and r.get(f"{split}_nll") is not None]
    finite = [r for r in records if math.isfinite(r[f"{split}_nll"])]
    if not items or not finite:
        return {}
    best = min(finite, key=lambda r: r[f"{split}_nll"])
    chars = torch.tensor(items["chars"], dtype=torch.float64)
    copies = torch.tensor(items["copies"], dtype=torch.float64)
    base = torch.tensor(best["item_nll"][split], dtype=torch.float64)
    seed = results["run"]["config"].get("seed", 0)
    return {r["key"]: paired_difference(base, torch.tensor(r["item_nll"][split], dtype=torch.float64), chars, copies, seed=seed)
            for r in records}


def noise_cell(difference: tuple[float, Interval] | None) -> str:
    if difference is None:
        return "—"
    estimate, interval = difference
    if estimate == 0 and interval.low == 0 and interval.high == 0:
        return "best"
    span = f"{estimate:+.4f} [{interval.low:+.4f}, {interval.high:+.4f}]"
    return span + (" ≈ best" if not beyond_noise(interval) else "")


def loss_table(records: list[dict], noise: dict | None = None) -> str:
    """One row per configuration; the best dev NLL (or train NLL without a dev split) in bold.

    NLL cells carry ±half the width of their 95 % bootstrap interval over items; with `noise`
    (`near_best`), a column gives each configuration's paired difference from the best on dev and
    marks "≈ best" where that difference is within noise.
    """
    key = "dev_nll" if any(r.get("dev_nll") is not None for r in records) else "train_nll"
    finite = [r[key] for r in records if r.get(key) is not None and math.isfinite(r[key])]
    best = min(finite) if finite else None
    has_gradient = any(r["method"] == "gradient" for r in records)
    rows = []
    for r in records:
        row = {"order": r["order"], "method": r["method"]}
        if has_gradient:
            row["loss"] = r.get("loss") or "—"
        row["smoothing / reg"] = smoothing_cell(r)
        if r.get("status", "ok") != "ok":
            continue  # listed under the table by not_run_lines, so one long reason does not widen every row
        row.update({
            "train NLL": with_interval(r, "train"),
            "dev NLL": with_interval(r, "dev"),
            "test NLL": with_interval(r, "test"),
            ("dev ppl" if key == "dev_nll" else "train ppl"): fmt(r.get("dev_ppl" if key == "dev_nll" else "train_ppl"), 2),
            "fit s": fmt(r.get("fit_seconds"), 3),
        })
        if noise:
            row["dev − best [95 %]"] = noise_cell(noise.get(r["key"]))
        if has_gradient:
            row["steps/s"] = fmt(r.get("steps_per_second"), 1)
            row[f"Δ{key.split('_')[0]} vs count"] = fmt(r.get("nll_vs_count"), 4) if r["method"] == "gradient" else "—"
        bold_col = "dev NLL" if key == "dev_nll" else "train NLL"
        if best is not None and r.get(key) == best:
            row[bold_col] = f"**{row[bold_col]}**"
        rows.append(row)
    if not rows:
        return "(no configuration finished)"
    return pd.DataFrame(rows).fillna("").to_markdown(index=False, disable_numparse=True)


def not_run_lines(records: list[dict]) -> list[str]:
    """One bullet per reason a configuration did not finish (skipped, failed, interrupted), naming them."""
    reasons: dict[tuple[str, str], list[str]] = {}
    for r in records:
        if r.get("status", "ok") != "ok":
            what = f"order {r['order']} {r['method']}" + (f" {r['loss']}" if r.get("loss") else "")
            if r.get("reg") is not None:
                what += f" reg {r['reg']:g}"
            elif r.get("smoothing_spec"):
                what += f" smoothing {r['smoothing_spec']}"
            reasons.setdefault((r["status"], r.get("error", "")), []).append(what)
    return [f"- **{status}**: {', '.join(which)} — {error}" for (status, error), which in reasons.items()]


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
        f"- device: {env['device']} — {env['device_name']}"
        + (f"; {run['world_size']} ranks (torchrun)" if run.get("world_size", 1) > 1 else ""),
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
    split_files = run.get("split_files") or {}
    for row in split_rows:
        if row["split"] in split_files:
            row["file"] = f"[{split_files[row['split']]}]({split_files[row['split']]})"
    lines += ["", pd.DataFrame(split_rows).to_markdown(index=False, disable_numparse=True), ""]
    split_spec = corpus.get("split", "seeded")
    if split_spec.startswith("files:"):
        overlap = corpus.get("split_overlap") or {}
        lines += [f"Split given as files (`{split_spec}`): counts and training use train only; the vocabulary covers every file. "
                  "Names in more than one file: " + (", ".join(f"{k.replace('&', ' & ')}: {v:,}" for k, v in overlap.items()) or "none") + ".", ""]
    elif split_spec == "seeded":
        lines += [f"Split 80/10/10 by unique item with seed {run['config']['seed']}: a name never sits in two splits.", ""]
    if split_files:
        lines += ["The split files (one item per line; weights as CSV for weighted corpora) let another toolkit "
                  "run on exactly this data.", ""]
    noise = near_best(results)
    lines += ["## Loss (mean NLL, nats per character)", "", loss_table(results["results"], noise), ""]
    if any(r.get("dev_nll_ci") or r.get("train_nll_ci") for r in results["results"]):
        lines += ["± is half the width of the 95 % bootstrap interval over items (1,000 Poisson resamples of the split's "
                  "items, each weighed by its copies; `*_nll_ci` in results.json holds [low, high])."
                  + (" `dev − best` is the paired bootstrap difference from the best configuration on the same dev items; "
                     "≈ best: within noise of it." if noise else ""), ""]
    not_run = not_run_lines(results["results"])
    if not_run:
        lines += ["Not run to the end:", "", *not_run, ""]
    figs = figure_specs(results)
    by_order = order_table(results["results"])
    if by_order:
        lines += ["## By order and model", "", "Dev / test NLL; the best dev NLL of each order in bold.", "", by_order, ""]
    if "nll_by_order.png" in figs:
        lines += ["![dev NLL by order](nll_by_order.png)", ""]
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
        at_edge = [r for r in tuned if r["smoothing"] == max(t["k"] for t in r["tuning"])
                   or (r["smoothing"] == min(t["k"] for t in r["tuning"] if t["k"] > 0))]
        for r in at_edge:
            lines += [f"**Note:** order {r['order']} chose k = {r['smoothing']:g}, at the edge of the grid: the best k may lie "
                      "beyond it; widen the grid (`--k-grid` or `k_grid`).", ""]
        if "tuning_k.png" in figs:
            lines += ["![dev NLL against k](tuning_k.png)", ""]
    if "tuning_reg.png" in figs:
        lines += ["## Regularisation", "", "![NLL against lambda](tuning_reg.png)", ""]
    if "loss_curves.png" in figs:
        lines += ["## Training", "", "![training loss per step](loss_curves.png)", ""]
    agreement = agreement_table(results["results"])
    if agreement:
        lines += ["## Count vs gradient", "",
                  "The gradient model against the count model of its order (the lecture's point: both roads lead to one model). "
                  "Δ NLL = gradient − count on dev (train without a dev split).", "", agreement, ""]
    timing = timing_table(results["results"])
    if timing:
        lines += ["## Loss backends", "", timing, ""]
    if "bigram_counts.png" in figs:
        lines += ["## Bigram counts", "", "The training split's bigram count matrix, drawn as the lecture draws it: "
                  "[bigram_counts.png](bigram_counts.png)", ""]
    lines += ["## Samples", ""]
    for r in results["results"]:
        if not r.get("samples"):
            continue
        extra = ""
        if r.get("new_share") is not None:
            extra = f"; {r['new_share']:.0%} not in train"
            if r.get("heldout_share") is not None:
                extra += f", {r['heldout_share']:.0%} real names held out in dev/test"
        lines += [f"### order {r['order']}, {label_of(r)}{extra}", "",
                  " ".join(f"`{s}`" for s in r["samples"]), ""]
    return "\n".join(lines)


def agreement_table(records: list[dict]) -> str | None:
    """Count vs gradient per order: dev NLL difference and the largest probability difference."""
    rows = [{
        "order": r["order"],
        "loss": r["loss"],
        "reg": fmt(r.get("reg"), 4),
        "count k": fmt(r.get("count_k"), 3),
        "count NLL": fmt(r.get("count_nll")),
        "gradient NLL": fmt(r.get("dev_nll") if r.get("dev_nll") is not None else r.get("train_nll")),
        "Δ NLL": fmt(r.get("nll_vs_count"), 4),
        "max abs(P_count − softmax(W))": fmt(r.get("max_prob_diff"), 4),
    } for r in records if r["method"] == "gradient" and r.get("status") == "ok"]
    if not rows:
        return None
    return pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True)


def timing_table(records: list[dict]) -> str | None:
    """Loss backends side by side: fit seconds, compile seconds, steps per second without them, speed-up over torch."""
    grads = [r for r in records if r["method"] == "gradient"]
    if not any(r.get("status") == "ok" for r in grads):
        return None
    torch_sps = {(r["order"], r.get("reg")): r["steps_per_second"] for r in grads
                 if r.get("loss") == "torch" and r.get("status") == "ok"}
    rows = []
    for r in grads:
        if r.get("status") != "ok":
            continue  # listed under the loss table
        base = torch_sps.get((r["order"], r.get("reg")))
        rows.append({"order": r["order"], "loss": r["loss"], "reg": fmt(r.get("reg"), 4), "fit s": fmt(r["fit_seconds"], 3),
                     "of which compile s": fmt(r.get("compile_seconds"), 3),
                     "steps/s (compile excluded)": fmt(r["steps_per_second"], 1),
                     "vs torch": f"{r['steps_per_second'] / base:.2f}×" if base else "—"})
    return pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True)


TIMING_FLOOR_SECONDS = 0.5  # shorter fits swing 30x between identical runs: their ratio is noise


def nll_difference(a: dict, b: dict, ra: dict, rb: dict, split: str) -> tuple[float, Interval | None, str] | None:
    """B − A on a split: (estimate, 95 % interval or None, "paired" | "unpaired" | "")."""
    x, y = ra.get(f"{split}_nll"), rb.get(f"{split}_nll")
    if x is None or y is None or not (math.isfinite(x) and math.isfinite(y)):
        return None
    items_a = (a["run"].get("split_items") or {}).get(split)
    items_b = (b["run"].get("split_items") or {}).get(split)
    nll_a, nll_b = (ra.get("item_nll") or {}).get(split), (rb.get("item_nll") or {}).get(split)
    if not (items_a and items_b and nll_a is not None and nll_b is not None):
        return y - x, None, ""
    seed = b["run"]["config"].get("seed", 0)
    as_tensor = lambda values: torch.tensor(values, dtype=torch.float64)  # noqa: E731
    if items_a == items_b and len(nll_a) == len(nll_b):
        estimate, interval = paired_difference(as_tensor(nll_a), as_tensor(nll_b), as_tensor(items_a["chars"]),
                                               as_tensor(items_a["copies"]), seed=seed)
        return estimate, interval, "paired"
    estimate, interval = unpaired_difference(as_tensor(nll_a), as_tensor(items_a["chars"]), as_tensor(items_a["copies"]),
                                             as_tensor(nll_b), as_tensor(items_b["chars"]), as_tensor(items_b["copies"]),
                                             seed=seed)
    return estimate, interval, "unpaired"


def delta_cell(difference) -> str:
    if difference is None:
        return "—"
    estimate, interval, _ = difference
    estimate = estimate + 0.0  # -0.0 prints as 0.00000
    if interval is None:
        return f"{estimate:+.5f}" if abs(estimate) >= 5e-6 else "0.00000"
    verdict = "beyond noise" if beyond_noise(interval) else "within noise"
    return f"{estimate:+.5f} [{interval.low:+.5f}, {interval.high:+.5f}] {verdict}"


def matched_pairs(a: dict, b: dict) -> list[tuple[dict, dict]]:
    """Finished configurations of A and B to compare: the same configuration key first; then, of what is
    left, the one configuration of an order in A with the one of that order in B (an add-k run against a
    Kneser-Ney run of the same orders compares model against model)."""
    ok_a = [r for r in a["results"] if r.get("status") == "ok"]
    ok_b = [r for r in b["results"] if r.get("status") == "ok"]
    keys_b = {r["key"] for r in ok_b}
    by_key = {r["key"]: r for r in ok_a}
    pairs = [(by_key[r["key"]], r) for r in ok_b if r["key"] in by_key]
    left_a = [r for r in ok_a if r["key"] not in keys_b]
    left_b = [r for r in ok_b if r["key"] not in by_key]
    for r in left_b:
        same_order_a = [x for x in left_a if x["order"] == r["order"]]
        same_order_b = [x for x in left_b if x["order"] == r["order"]]
        if len(same_order_a) == 1 and len(same_order_b) == 1:
            pairs.append((same_order_a[0], r))
    return pairs


def compare_runs(a: dict, b: dict, name_a: str, name_b: str) -> str:
    """Markdown table of B − A per configuration present in both: NLL deltas with their 95 % bootstrap
    intervals (paired over the same items when both runs used the same split), and fit-time ratios only
    where both fits took long enough for a ratio to mean something."""
    by_key = {r["key"]: r for r in a["results"] if r.get("status") == "ok"}
    pairs = matched_pairs(a, b)
    rows, kinds = [], set()
    for other, r in pairs:
        row = {"configuration": r["key"] if other["key"] == r["key"] else f"{other['key']} → {r['key']}"}
        for split in ("train", "dev", "test"):
            difference = nll_difference(a, b, other, r, split) if split != "train" else (
                None if other.get("train_nll") is None or r.get("train_nll") is None
                or not (math.isfinite(other["train_nll"]) and math.isfinite(r["train_nll"]))
                else (r["train_nll"] - other["train_nll"], None, ""))
            if difference is not None and difference[2]:
                kinds.add(difference[2])
            row[f"Δ{split} NLL"] = delta_cell(difference)
        ta, tb = other.get("fit_seconds"), r.get("fit_seconds")
        if ta and tb and min(ta, tb) >= TIMING_FLOOR_SECONDS:
            row["fit time B/A"] = f"{tb / ta:.2f}×"
        else:
            row["fit time B/A"] = f"— (under {TIMING_FLOOR_SECONDS:g} s)" if ta and tb else "—"
        row["same samples"] = "yes" if other.get("samples") == r.get("samples") else "no"
        rows.append(row)
    only_a = sorted(set(by_key) - {ra["key"] for ra, _ in pairs})
    only_b = sorted({r.get("key") for r in b["results"] if r.get("status") == "ok"} - {rb["key"] for _, rb in pairs})
    lines = [f"# Compare runs: B − A", "", f"- A: `{name_a}` ({a['run']['corpus']['name']}, {a['run']['environment']['device_name']}, commit {a['run']['environment']['git_commit']})",
             f"- B: `{name_b}` ({b['run']['corpus']['name']}, {b['run']['environment']['device_name']}, commit {b['run']['environment']['git_commit']})", ""]
    lines.append(pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True) if rows else "No configuration finished in both runs.")
    if kinds:
        how = {"paired": "paired over the same items (both runs used the same split)",
               "unpaired": "unpaired (the runs' splits differ: independent resamples of each)"}
        lines += ["", "Intervals: 95 % bootstrap, " + "; ".join(how[k] for k in sorted(kinds))
                  + ". A difference is beyond noise when its interval excludes 0. Train NLL deltas carry no interval "
                  "(the train items are not stored per item)."]
    lines += ["", f"Fit-time ratios are shown only where both fits took at least {TIMING_FLOOR_SECONDS:g} s; "
              "shorter ones swing many-fold between identical runs on a shared machine."]
    if only_a:
        lines += ["", "Only in A: " + ", ".join(f"`{k}`" for k in only_a)]
    if only_b:
        lines += ["", "Only in B: " + ", ".join(f"`{k}`" for k in only_b)]
    return "\n".join(lines) + "\n"


HEATMAP_MAX_V = 120  # past this a V x V picture says nothing


def figure_specs(results: dict) -> dict[str, tuple]:
    """Which figures a run's results can draw: file name -> (function name, args). From the results alone."""
    records = [r for r in results["results"] if r.get("status") == "ok"]
    specs = {}
    bigram = results["run"].get("bigram_counts")
    if bigram is not None:
        specs["bigram_counts.png"] = ("bigram_heatmap", (torch.tensor(bigram), ["."] + list(results["run"]["corpus"]["vocab"])))
    k_curves = {f"order {r['order']}": [(t["k"], t["dev_nll"]) for t in r["tuning"]] for r in records
                if r["method"] == "count" and r.get("tuning") and r.get("smoothing_spec") == TUNED_K}
    if k_curves:
        chosen = {f"order {r['order']}": r["smoothing"] for r in records if r["method"] == "count" and r.get("smoothing_spec") == TUNED_K}
        specs["tuning_k.png"] = ("tuning_plot", (k_curves, "add-k smoothing k"), {"chosen": chosen, "title": "Count models: dev NLL against k"})
    key = "dev_nll" if any(r.get("dev_nll") is not None for r in records) else "train_nll"
    reg_curves: dict[str, list] = {}
    for r in records:
        if r["method"] == "gradient":
            reg_curves.setdefault(f"order {r['order']}, {r['loss']}", []).append((r["reg"], r[key]))
    reg_curves = {k: sorted(v) for k, v in reg_curves.items() if len(v) > 1}
    if reg_curves:
        chosen = {k: min(v, key=lambda p: p[1] if math.isfinite(p[1]) else math.inf)[0] for k, v in reg_curves.items()}
        specs["tuning_reg.png"] = ("tuning_plot", (reg_curves, "lambda"),
                                   {"chosen": chosen, "title": f"Gradient models: {key.split('_')[0]} NLL against lambda"})
    curves = merge_equal({f"order {r['order']}, {r['loss']}, reg {r['reg']:g}": r["train_losses"] for r in records
                          if r["method"] == "gradient" and r.get("train_losses")})
    if curves:
        reference = {}
        for r in records:  # the first count model of each order
            if r["method"] == "count":
                reference.setdefault(f"count order {r['order']} ({label_of(r)}) train NLL", r["train_nll"])
        specs["loss_curves.png"] = ("loss_curves", (curves,), {"reference": reference, "title": "Gradient models: training loss (data + reg) per step"})
    orders = {r["order"] for r in records}
    if len(orders) > 1 and key == "dev_nll":
        by_label: dict[str, dict] = {}
        for r in records:
            by_label.setdefault(label_of(r), {})[r["order"]] = r["dev_nll"]
        lines_by_label = merge_equal({label: [v.get(o, math.nan) for o in sorted(orders)] for label, v in by_label.items()})
        rows = [{"order": o, "label": label, "dev_nll": values[i]}
                for label, values in lines_by_label.items() for i, o in enumerate(sorted(orders)) if not math.isnan(values[i])]
        specs["nll_by_order.png"] = ("nll_by_order", (rows,), {"title": "Dev NLL by order"})
    return specs


def smoothing_cell(r: dict) -> str:
    """What smoothed a configuration: add-k's k (tuned or given), the method's name, or the gradient model's reg."""
    if r["method"] == "arpa":
        return "ARPA file"
    if r["method"] != "count":
        return f"reg {fmt(r.get('reg'), 4)}"
    spec = r.get("smoothing_spec") or TUNED_K
    if spec in SMOOTHING_LABELS:
        return SMOOTHING_LABELS[spec]
    k = fmt(r.get("smoothing"), 3)
    return f"k={k} (tuned)" if spec == TUNED_K else f"k={k}"


def order_table(records: list[dict]) -> str | None:
    """Dev and test NLL by order (rows) and model (columns), the best dev NLL of each order in bold.

    Shown when a run has several smoothing methods or methods: how far counting goes before a
    neural net is needed."""
    ok = [r for r in records if r.get("status") == "ok" and r.get("dev_nll") is not None]
    labels = list(dict.fromkeys(label_of(r) for r in ok))
    if len(labels) < 2:
        return None
    rows = []
    for order in sorted({r["order"] for r in ok}):
        here = [r for r in ok if r["order"] == order]
        finite = [r["dev_nll"] for r in here if math.isfinite(r["dev_nll"])]
        best = min(finite) if finite else None
        row = {"order": order}
        for label in labels:
            match = [r for r in here if label_of(r) == label]
            if not match:
                row[label] = "—"
                continue
            r = match[0]
            cell = f"{fmt(r['dev_nll'])} / {fmt(r['test_nll'])}"
            row[label] = f"**{cell}**" if r["dev_nll"] == best else cell
        rows.append(row)
    return pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True)


def merge_equal(curves: dict[str, list[float]], rel: float = 1e-4) -> dict[str, list[float]]:
    """One line for curves that agree everywhere (e.g. the same model through two loss backends),
    labelled with every name joined by ' = ', so a figure does not draw a line on top of another."""
    merged: list[tuple[list[str], list[float]]] = []
    for label, values in curves.items():
        for labels, other in merged:
            if len(other) == len(values) and all(
                    a == b or (math.isfinite(a) and math.isfinite(b) and abs(a - b) <= rel * max(abs(a), abs(b)))
                    for a, b in zip(values, other)):
                labels.append(label)
                break
        else:
            merged.append(([label], values))
    return {" = ".join(labels): values for labels, values in merged}


def label_of(r: dict) -> str:
    if r["method"] == "count":
        spec = r.get("smoothing_spec") or TUNED_K
        if spec == TUNED_K:
            return "count, add-k tuned"
        return f"count, {SHORT_LABELS[spec]}" if spec in SHORT_LABELS else f"count, k={spec}"
    if r["method"] == "arpa":
        return f"arpa, {Path(r['arpa']).name}"
    return f"gradient, {r['loss']}, reg {r['reg']:g}"


def write_figures(out_dir: Path, results: dict) -> list[Path]:
    """Draw every figure the results allow into `out_dir` (PNG)."""
    from harness.run import figures

    written = []
    for name, spec in figure_specs(results).items():
        fn, args = spec[0], spec[1]
        kwargs = spec[2] if len(spec) > 2 else {}
        written.append(getattr(figures, fn)(*args, Path(out_dir) / name, **kwargs))
    return written


def results_frame(results: dict) -> pd.DataFrame:
    return pd.DataFrame([{c: r.get(c) for c in CSV_COLUMNS} for r in results["results"]], columns=CSV_COLUMNS)


def write_run(out_dir: Path, results: dict, figures: bool = False) -> None:
    """Write results.json, then results.csv and report.md rendered from what results.json holds,
    each atomically, so `python -m harness report` rebuilds the same bytes from the JSON alone.
    `figures` also draws the PNGs (slow: done once at the end of a run)."""
    out_dir = Path(out_dir)
    text = jsonio.dumps(results)
    jsonio.write_atomic(out_dir / "results.json", text)
    saved = jsonio.loads(text, FLOAT_KEYS)
    jsonio.write_atomic(out_dir / "results.csv", results_frame(saved).to_csv(index=False))
    jsonio.write_atomic(out_dir / "report.md", render_report(saved))
    if figures:
        write_figures(out_dir, saved)


def load_results(run_dir: Path) -> dict:
    return jsonio.load(Path(run_dir) / "results.json", FLOAT_KEYS)
