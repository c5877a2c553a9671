"""Reports of a run: report.md for people, results.csv and results.json for programs.

report.md is rendered from the results dictionary alone (the same one results.json holds),
so a report can be rebuilt from its results.json.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd
import torch

from harness.core import jsonio
from harness.core.env import format_load, load_warning
from harness.core.errors import HarnessError
from harness.evaluation.intervals import Interval, beyond_noise, paired_difference
from harness.models.families import MIX, NEURAL_METHODS, TUNED_K
from harness.models.smoothed import LABELS as SMOOTHING_LABELS
from harness.models.smoothed import SHORT_LABELS
from harness.run.results_check import check_results
from harness.run.training_notes import training_lines

FLOAT_KEYS = ("train_nll", "dev_nll", "test_nll", "train_ppl", "dev_ppl", "test_ppl", "smoothing", "count_nll", "count_train_nll",
              "nll_vs_count", "train_losses", "max_prob_diff", "train_nll_ci", "dev_nll_ci", "test_nll_ci", "item_nll",
              "dev_curve", "best_dev_nll")
CSV_COLUMNS = ["corpus", "order", "method", "loss", "smoothing", "reg", "train_nll", "dev_nll", "test_nll",
               "train_nll_ci", "dev_nll_ci", "test_nll_ci", "train_ppl", "dev_ppl", "test_ppl", "fit_seconds", "steps_per_second", "nll_vs_count",
               "max_prob_diff", "lambda", "new_share", "heldout_share", "status", "error"]


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
    has_gradient = any(r["method"] != "count" for r in records)  # trained models: a loss backend and steps/s
    rows = []
    for r in records:
        row = {"order": r["order"] if r["order"] is not None else "—", "method": r["method"]}
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
    """One bullet per reason a configuration did not finish (skipped, failed, interrupted), naming them,
    and one per part of a finished configuration that failed (its sampling), whose NLLs stand."""
    reasons: dict[tuple[str, str], list[str]] = {}
    for r in records:
        for part, why in (r.get("part_failed") or {}).items():
            reasons.setdefault((f"{part} failed (NLLs kept)", why), []).append(f"order {r['order']} {label_of(r)}")
        if r.get("status", "ok") != "ok":
            what = (f"order {r['order']} " if r["order"] is not None else "") + r["method"] + (f" {r['loss']}" if r.get("loss") else "")
            if r.get("reg") is not None:
                what += f" reg {r['reg']:g}"
            elif r.get("smoothing_spec"):
                what += f" smoothing {r['smoothing_spec']}"
            reasons.setdefault((r["status"], r.get("error", "")), []).append(what)
    return [f"- **{status}**: {', '.join(which)} — {error}" for (status, error), which in reasons.items()]


VOCAB_SHOWN = 120  # characters of the vocabulary the report prints


def code_span(text: str, limit: int) -> str:
    """`text` as one Markdown code span, cut to `limit` characters with an ellipsis outside it; a text
    holding backticks is fenced by a longer run of them (CommonMark), so it cannot end the span early."""
    shown, cut = text[:limit], len(text) > limit
    longest = max((len(run) for run in re.findall(r"`+", shown)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if longest else ""
    return f"{fence}{pad}{shown}{pad}{fence}" + (f" … ({len(text) - limit:,} more)" if cut else "")


def machine_load_lines(load: dict | None) -> list[str]:
    """The threads and the load average around the run, and a warning when other work competed for the cores."""
    if not load:
        return []
    start, end = load.get("start"), load.get("end")
    lines = [f"- threads: {load['threads']} of {load['cores']} cores; load average (1/5/15 min) at the start "
             f"{format_load(start)}, at the end {format_load(end)}"]
    warning = load_warning(start, end, load["threads"], load["cores"])
    if warning:
        lines.append(f"- **warning**: {warning} (fit seconds and steps/s; the NLLs do not depend on it)")
    return lines


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
        *machine_load_lines(run.get("machine_load")),
        "",
        "## Corpus",
        "",
        f"- {corpus['items']:,} items ({corpus['unique_items']:,} unique{', weighted' if corpus['weighted'] else ''}), "
        f"{corpus['characters']:,} characters, {corpus['predicted_characters']:,} predicted tokens (end token included)",
        f"- vocabulary: {corpus['vocab_size']} tokens, `.` = 0 then {code_span(corpus['vocab'], VOCAB_SHOWN)}",
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
    figs, skipped = figure_specs(results), run.get(FIGURES_SKIPPED)
    lines += ["Figures were left out (`--no-figures`): `python -m harness report <this folder>` draws and links them.", ""] if figs and skipped else []
    figs = {} if skipped else figs
    lines += ["## Loss (mean NLL, nats per character)", "", loss_table(results["results"], noise), ""]
    if any(r.get("dev_nll_ci") or r.get("train_nll_ci") for r in results["results"]):
        lines += ["± is half the width of the 95 % bootstrap interval over items (1,000 Poisson resamples of the split's "
                  "items, each weighed by its copies; `*_nll_ci` in results.json holds [low, high])."
                  + (" `dev − best` is the paired bootstrap difference from the best configuration on the same dev items; "
                     "≈ best: within noise of it." if noise else ""), ""]
    not_run = not_run_lines(results["results"])
    if not_run:
        lines += ["Not run to the end:", "", *not_run, ""]
    lines += training_lines(results["results"])
    board = leaderboard(results)
    if board:
        lines += ["## Leaderboard", "", "Every family and order of the run, best dev NLL first (in bold). Neural models are "
                  "scored exactly over every name of each split with their best-on-dev weights; wall s is the fit's "
                  "(training, with the dev scores, across resumes); tokens/s are predicted tokens trained on per second. "
                  "Parameters: trained weights (count tables hold counts, not parameters).", "", board, ""]
        if "neural_curves.png" in figs:
            lines += ["![neural training curves](neural_curves.png)", ""]
    lines += mixture_lines(results["results"])
    by_order = order_table(results["results"])
    if by_order:
        lines += ["## By order and model", "", "Dev / test NLL; the best dev NLL of each order in bold.", "", by_order, ""]
    if "nll_by_order.png" in figs:
        lines += ["![dev NLL by order](nll_by_order.png)", ""]
    tuned = [r for r in results["results"] if r.get("tuning")]
    if tuned:
        lines += ["## Smoothing tuned on dev", ""]
        # every k any configuration tried is a column; a k one did not try (interp has its own grid) is "—", not nan
        ks = sorted({t["k"] for r in tuned for t in r["tuning"]})
        rows = []
        for r in tuned:
            row = {"order": r["order"], "method": label_of(r)}
            row.update({f"k={k:g}": "—" for k in ks})
            for t in r["tuning"]:
                cell = fmt(t["dev_nll"])
                chosen = t["chosen"] if "chosen" in t else t["k"] == r["smoothing"]
                row[f"k={t['k']:g}"] = f"**{cell}**" if chosen else cell
            rows.append(row)
        lines += [f"Dev NLL for each k on the grid {ks}; the chosen k in bold. Test is evaluated once, with it.", "",
                  pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True), ""]
        at_edge = [r for r in tuned if r.get("smoothing_spec") == TUNED_K and r["smoothing"] == max(t["k"] for t in r["tuning"])
                   or (r["smoothing"] == min(t["k"] for t in r["tuning"] if t["k"] > 0))]
        for r in at_edge:
            lines += [f"**Note:** order {r['order']} chose k = {r['smoothing']:g}, at the edge of the grid: the best k may lie "
                      "beyond it; widen the grid (`--k-grid` or `k_grid`).", ""]
        if "tuning_k.png" in figs:
            lines += ["![dev NLL against k](tuning_k.png)", ""]
    figure_errors = run.get("figure_errors") or {}
    if figure_errors:
        lines += ["Figures that could not be drawn (the numbers above stand): "
                  + "; ".join(f"`{name}`: {why}" for name, why in figure_errors.items()), ""]
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
    cfg = run["config"]
    drawn = [f"temperature {cfg['temperature']:g}" if cfg.get("temperature", 1.0) != 1.0 else "",
             f"top-{cfg['top_k']}" if cfg.get("top_k") else "", f"prefix `{cfg['prefix']}`" if cfg.get("prefix") else "",
             "names of the training split left out" if cfg.get("exclude_train") else ""]
    if any(drawn):
        lines += ["Drawn with " + ", ".join(x for x in drawn if x) + ".", ""]
    for r in results["results"]:
        if not r.get("samples"):
            continue
        extra = ""
        if r.get("new_share") is not None:
            extra = f"; {r['new_share']:.0%} not in train"
            if r.get("heldout_share") is not None:
                extra += f", {r['heldout_share']:.0%} real names held out in dev/test"
        lines += [(f"### order {r['order']}, " if r["order"] is not None else "### ") + f"{label_of(r)}{extra}", "",
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


HEATMAP_MAX_V = 120  # past this a V x V picture says nothing
FIGURES_SKIPPED = "figures_skipped"  # results.json's run key: the run ended with --no-figures, no PNG drawn


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
                reference.setdefault(r["order"], (f"count order {r['order']} ({label_of(r)}) train NLL", r["train_nll"]))
        for r in records:  # else the reference count model the gradient model was compared with
            if r["method"] == "gradient" and r.get("count_train_nll") is not None:
                reference.setdefault(r["order"], (f"count order {r['order']} (k={r['count_k']:g}) train NLL",
                                                  r["count_train_nll"]))
        reference = dict(reference.values())
        specs["loss_curves.png"] = ("loss_curves", (curves,), {"reference": reference, "title": "Gradient models: training loss (data + reg) per step"})
    neural = {label_of(r): [(c["step"], c["train_loss"], c["dev_nll"]) for c in r["dev_curve"]] for r in records
              if r["method"] in NEURAL_METHODS and r.get("dev_curve")}
    if neural:
        counts = [r for r in records if r["method"] == "count" and r.get(key) is not None and math.isfinite(r[key])]
        best = min(counts, key=lambda r: r[key]) if counts else None
        reference = {f"best count model (order {best['order']}, {label_of(best)}) {key.split('_')[0]} NLL": best[key]} if best else {}
        specs["neural_curves.png"] = ("neural_curves", (neural,), {"reference": reference})
    records = [r for r in records if r["order"] is not None]  # by order: the n-gram families
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


def mixture_lines(records: list[dict]) -> list[str]:
    """The --mix section: what was mixed, λ, how EM got there, and the three dev NLLs side by side."""
    mix = next((r for r in records if r["method"] == MIX and r.get("status") == "ok"), None)
    if mix is None:
        return []
    by_key = {r["key"]: r for r in records}
    count, neural = by_key.get(mix["mix_count"], {}), by_key.get(mix["mix_neural"], {})
    name = lambda r: (f"order {r['order']} " if r.get("order") is not None else "") + label_of(r) if r else "?"  # noqa: E731
    em = f"{mix['em_iterations']} EM iterations" + ("" if mix.get("em_converged") else " (stopped at the limit, not converged)")
    return ["## Mixture (--mix)", "",
            f"p(t | prefix) = λ p_count + (1 − λ) p_neural per token, with **λ = {mix['lambda']:.4f}** tuned on dev ({em}, "
            "from 0.5, until λ moved less than 1e-6" + (f", then {mix['newton_steps']} Newton steps to the maximum" if "newton_steps" in mix else "") + "): the count model is "
            f"{name(count)} (dev {fmt(count.get('dev_nll'))}), the neural model {name(neural)} (dev {fmt(neural.get('dev_nll'))}); "
            f"the mixture's dev {fmt(mix.get('dev_nll'))}, test {fmt(mix.get('test_nll'))}. Its samples are drawn from the "
            "mixed next-token distribution by the same sampler; it has no model file of its own (its components' are listed in results.json).", ""]


def smoothing_cell(r: dict) -> str:
    """What smoothed a configuration: add-k's k (tuned or given), the method's name, or the gradient model's reg."""
    if r["method"] == MIX:
        return f"λ {r['lambda']:.4f} (EM on dev)" if r.get("lambda") is not None else "λ tuned on dev"
    if r["method"] in NEURAL_METHODS:
        nn = {**r.get("nn", {}), **r}  # an unfinished configuration's record holds its point's "nn" values
        return f"lr {nn['nn_lr']:g}, wd {nn['nn_weight_decay']:g}, dropout {nn['nn_dropout']:g}"
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
    ok = [r for r in records if r.get("status") == "ok" and r.get("dev_nll") is not None and r["order"] is not None]
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
    if r["method"] in NEURAL_METHODS:
        return neural_label(r)
    if r["method"] == MIX:
        return "mixture of the best count and neural models" + (f", λ {r['lambda']:.4f}" if r.get("lambda") is not None else "")
    if r["method"] == "arpa":
        return f"arpa, {Path(r['arpa']).name}"
    return f"gradient, {r['loss']}, reg {r['reg']:g}"


def neural_label(r: dict) -> str:
    """A neural configuration in a few words: family, loss backend and its shape."""
    shape = f"embd {r.get('nn_embd')}"
    if r["method"] == "transformer":
        shape += f", {r.get('nn_layer')} layers × {r.get('nn_head')} heads"
    else:
        shape += f", width {r.get('nn_embd2')}" + (f", {r.get('nn_layer')} layers" if r["method"] == "gru" else "")
    context = r.get("block_size") or r.get("nn_block_size")
    return f"{r['method']}, {r['loss']}, {shape}, context {context or 'auto'}"


def leaderboard(results: dict) -> str | None:
    """Every finished configuration of a run with a neural one in it, best dev NLL first (train NLL without
    a dev split): model, parameters, NLLs, wall seconds, steps/s, predicted tokens/s. None for n-gram-only runs."""
    records = [r for r in results["results"] if r.get("status", "ok") == "ok"]
    if not any(r["method"] in NEURAL_METHODS for r in records):
        return None
    key = "dev_nll" if any(r.get("dev_nll") is not None for r in records) else "train_nll"
    rank = lambda r: r[key] if r.get(key) is not None and math.isfinite(r[key]) else math.inf  # noqa: E731
    records = sorted(records, key=rank)
    rows = []
    for i, r in enumerate(records):
        model = label_of(r) if r["order"] is None else f"order {r['order']} {label_of(r)}"
        row = {"model": model, "parameters": f"{r['parameters']:,}" if r.get("parameters") else "—",
               "train NLL": with_interval(r, "train"), "dev NLL": with_interval(r, "dev"), "test NLL": with_interval(r, "test"),
               "wall s": fmt(r.get("fit_seconds"), 1), "steps": f"{r['steps_trained']:,}" if r.get("steps_trained") else "—",
               "steps/s": fmt(r.get("steps_per_second"), 1),
               "tokens/s": f"{r['tokens_per_second']:,.0f}" if r.get("tokens_per_second") else "—"}
        if i == 0 and math.isfinite(rank(r)):
            col = "dev NLL" if key == "dev_nll" else "train NLL"
            row[col] = f"**{row[col]}**"
        rows.append(row)
    return pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True)


def write_figures(out_dir: Path, results: dict) -> tuple[list[Path], dict[str, str]]:
    """Draw every figure the results allow into `out_dir` (PNG); a figure that fails (a full disk, a
    broken font) is left out with its reason, never taking the run's numbers with it."""
    from harness.run import figures

    written, failed = [], {}
    for name, spec in figure_specs(results).items():
        fn, args = spec[0], spec[1]
        kwargs = spec[2] if len(spec) > 2 else {}
        try:
            written.append(getattr(figures, fn)(*args, Path(out_dir) / name, **kwargs))
        except Exception as exc:  # noqa: BLE001 - reported in report.md and results.json
            failed[name] = f"{type(exc).__name__}: {exc}"
    return written, failed


def results_frame(results: dict) -> pd.DataFrame:
    return pd.DataFrame([{c: r.get(c) for c in CSV_COLUMNS} for r in results["results"]], columns=CSV_COLUMNS)


def write_run(out_dir: Path, results: dict, figures: bool | None = None) -> None:
    """Write results.json, then results.csv and report.md rendered from what results.json holds, each atomically,
    so `python -m harness report` rebuilds the same bytes from the JSON alone. `figures`: True draws the PNGs first
    (slow: once, at the end), so results.json and report.md can name one that failed; False (the end of a
    --no-figures run) marks them not drawn; None (a save during the run) leaves them as they are."""
    out_dir = Path(out_dir)
    if figures:
        _, failed = write_figures(out_dir, jsonio.loads(jsonio.dumps(results), FLOAT_KEYS))
        results["run"].pop("figure_errors", None)
        results["run"].pop(FIGURES_SKIPPED, None)
        if failed:
            results["run"]["figure_errors"] = failed
    elif figures is False:  # the end of a run (whose results["run"] is new: no figure_errors from before)
        results["run"][FIGURES_SKIPPED] = True
    text = jsonio.dumps(results)
    jsonio.write_atomic(out_dir / "results.json", text)
    saved = jsonio.loads(text, FLOAT_KEYS)
    jsonio.write_atomic(out_dir / "results.csv", results_frame(saved).to_csv(index=False))
    jsonio.write_atomic(out_dir / "report.md", render_report(saved))


RESULTS_FIX = "it is left as it is: restore it from a copy, or rerun the run into a new --out"


def load_results(run_dir: Path) -> dict:
    """A run's results.json, or one HarnessError line saying what is wrong with it (missing, empty,
    truncated, binary, not an object, without the run's config, corpus or records); never rewritten here."""
    path = Path(run_dir) / "results.json"
    if Path(run_dir).is_file():
        raise HarnessError(f"{run_dir} is a file; give a run folder (one holding results.json)")
    if not path.exists():
        raise HarnessError(f"{run_dir} has no results.json; give a run folder")
    data = jsonio.load_object(path, "a run's results.json", RESULTS_FIX, FLOAT_KEYS, required=("run", "results"))
    run, records = data["run"], data["results"]
    if not isinstance(run, dict) or not isinstance(records, list):
        raise HarnessError(f"{path}: 'run' must be an object and 'results' a list; {RESULTS_FIX}")
    missing = [k for k in ("config", "corpus", "environment", "started", "command") if k not in run]
    if missing or not isinstance(run.get("config"), dict):
        raise HarnessError(f"{path}: its 'run' lacks {', '.join(repr(k) for k in missing) or 'a config object'}; {RESULTS_FIX}")
    bad = [i for i, r in enumerate(records) if not isinstance(r, dict) or not {"key", "order", "method"} <= r.keys()]
    if bad:
        raise HarnessError(f"{path}: record {bad[0]} lacks key/order/method; {RESULTS_FIX}")
    check_results(path, data, RESULTS_FIX)
    return data
