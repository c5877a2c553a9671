"""`python -m harness compare RUN_A RUN_B`: differences between two runs, with their noise.

NLL deltas carry 95 % bootstrap intervals (paired over the same items when both runs used the
same split, unpaired otherwise); fit-time ratios are printed only where the two
fits' time bands (repeated timings of short fits, step times of gradient models) do not overlap.
"""
from __future__ import annotations

import math

import pandas as pd
import torch

from harness.evaluation.intervals import Interval, beyond_noise, paired_difference, unpaired_difference




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
    beyond the noise of the two timings (`time_ratio_cell`)."""
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
        row["fit time B/A"] = time_ratio_cell(other, r)
        row["same samples"] = "yes" if other.get("samples") == r.get("samples") else "no"
        rows.append(row)
    only_a = sorted(set(by_key) - {ra["key"] for ra, _ in pairs})
    only_b = sorted({r.get("key") for r in b["results"] if r.get("status") == "ok"} - {rb["key"] for _, rb in pairs})
    lines = ["# Compare runs: B − A", "", f"- A: `{name_a}` ({a['run']['corpus']['name']}, {a['run']['environment']['device_name']}, commit {a['run']['environment']['git_commit']})",
             f"- B: `{name_b}` ({b['run']['corpus']['name']}, {b['run']['environment']['device_name']}, commit {b['run']['environment']['git_commit']})", ""]
    lines.append(pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True) if rows else "No configuration finished in both runs.")
    if kinds:
        how = {"paired": "paired over the same items (both runs used the same split)",
               "unpaired": "unpaired (the runs' splits differ: independent resamples of each)"}
        lines += ["", "Intervals: 95 % bootstrap, " + "; ".join(how[k] for k in sorted(kinds))
                  + ". A difference is beyond noise when its interval excludes 0. Train NLL deltas carry no interval "
                  "(the train items are not stored per item)."]
    lines += ["", "Fit-time ratios are shown only beyond noise: where the two fits' time bands do not overlap. A fit "
              "under 1 s is timed 5 times (its band: the fastest to the slowest), a gradient model's band comes from "
              "its steps' p20-p80 times; a neural fit (its budget is its time) or an older run has no band."]
    if only_a:
        lines += ["", "Only in A: " + ", ".join(f"`{k}`" for k in only_a)]
    if only_b:
        lines += ["", "Only in B: " + ", ".join(f"`{k}`" for k in only_b)]
    return "\n".join(lines) + "\n"


def comparability(a: dict, b: dict) -> str | None:
    """Why two runs' NLLs are not comparable (a different corpus or split), or None.

    By the content hashes a run stores; for runs without them, by corpus name, size and split spec."""
    ha, hb = a["run"].get("hashes") or {}, b["run"].get("hashes") or {}
    ca, cb = a["run"]["corpus"], b["run"]["corpus"]
    if ha.get("corpus") and hb.get("corpus"):
        corpus_differs, split_differs = ha["corpus"] != hb["corpus"], ha.get("split") != hb.get("split")
    else:
        corpus_differs = (ca.get("name"), ca.get("items"), ca.get("vocab")) != (cb.get("name"), cb.get("items"), cb.get("vocab"))
        split_differs = (ca.get("split"), ca.get("splits")) != (cb.get("split"), cb.get("splits"))
    if corpus_differs:
        names = (f"{ca.get('name')} vs {cb.get('name')}" if ca.get("name") != cb.get("name")
                 else f"{ca.get('name')} with different content")
        return f"the runs are on different corpora ({names}): the NLL deltas compare different data"
    if split_differs:
        return f"the runs split the corpus differently ({ca.get('split')}, seed {a['run']['config'].get('seed')} vs " \
               f"{cb.get('split')}, seed {b['run']['config'].get('seed')}): the NLL deltas compare different data"
    return None


def time_ratio_cell(a: dict, b: dict) -> str:
    """B's fit time over A's where their bands (fit_seconds_range) do not overlap; else why not."""
    ta, tb = a.get("fit_seconds"), b.get("fit_seconds")
    if not (ta and tb):
        return "—"
    band_a, band_b = a.get("fit_seconds_range"), b.get("fit_seconds_range")
    if not (band_a and band_b):
        return "— (no noise band)"
    if band_b[1] < band_a[0] or band_a[1] < band_b[0]:
        return f"{tb / ta:.2f}×"
    return "≈ (within noise)"
