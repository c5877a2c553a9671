"""Every benchmark report's markdown, rendered from the CSV the suite saved (data first, rendering second).

bench.md (the loss suite's bench.csv and the training suite's train.csv), counting.md,
smoothing.md and static.md. Each renderer reads the saved file only, so a report can be
re-rendered from a committed CSV without measuring again.
"""
from __future__ import annotations

import math
from pathlib import Path

from harness.bench.common import SPREAD_LIMIT, parse_load, read_rows
from harness.core.env import load_warning
from harness.bench.config import VARIANTS
from harness.bench.counting import METHODS as COUNTING_METHODS
from harness.bench.loss import COMPILING, TOLERANCES
from harness.bench.smoothing import NLTK_DISCOUNTS
from harness.bench.train import TRAIN_VARIANTS


def _fmt(x, spec: str, empty: str = "") -> str:
    return empty if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


# ---------------------------------------------------------------------------------------------
# the machine: threads, load, spread (every report)


def _present(row, key) -> bool:
    return key in row.index and row[key] == row[key] and str(row[key]) != ""


def machine_lines(row, what: str = "") -> list[str]:
    """'- threads ... load average ...' for the run that wrote `row` (a CSV row), '' where not recorded."""
    label = f"{what}: " if what else ""
    if not _present(row, "threads"):
        return [f"- {label}threads and load average: not recorded (rows written before they were)"]
    how = f" ({row['threads_how']})" if _present(row, "threads_how") else ""
    return [f"- {label}{int(row['threads'])} torch CPU thread(s) of {int(row['cores'])} cores while measuring "
            f"(--threads{how}); load average (1, 5, 15 min) before: {row['load_avg_start']}, "
            f"after: {row['load_avg_end']}"]


def load_warnings(row, what: str = "") -> list[str]:
    """A warning line when other work competed for the cores of the run that wrote `row`."""
    if not _present(row, "threads"):
        return []
    text = load_warning(parse_load(row["load_avg_start"]), parse_load(row["load_avg_end"]),
                        int(row["threads"]), int(row["cores"]))
    return [f"> **Warning{' (' + what + ')' if what else ''}:** {text}.", ""] if text else []


def spread_warnings(df, what: str = "rows") -> list[str]:
    """A warning line when timed rows' p80/p20 exceeds SPREAD_LIMIT (they are marked 'wide' in the tables)."""
    if "wide_spread" not in df.columns:
        return []
    ok = df[df["status"] == "ok"] if "status" in df.columns else df
    wide = ok[ok["wide_spread"].astype(str) == "True"]
    if wide.empty:
        return []
    fewer = " or with fewer --threads" if "threads" in df.columns and (df["threads"].fillna(1) > 1).any() else ""
    return [f"> **Warning:** {len(wide)} of {len(ok)} timed {what} have a p80/p20 spread above {SPREAD_LIMIT:g} "
            f"(marked *wide* in the tables): their medians are not a reliable figure; rerun on a quieter machine{fewer}.",
            ""]


def _spread_cell(r) -> str:
    ratio = r.get("spread") if hasattr(r, "get") else None
    if ratio is None or ratio != ratio:
        return "—"
    return f"{ratio:.2f} *wide*" if str(r.get("wide_spread")) == "True" else f"{ratio:.2f}"


# ---------------------------------------------------------------------------------------------
# bench.md: the loss and training suites


def render_train(csv_path: Path) -> list[str]:
    """The training section of bench.md, from train.csv."""
    import pandas as pd

    df = read_rows(csv_path)
    if df.empty:
        return []
    first = df.iloc[0]
    lines = ["## Training: full-batch gradient descent, steps per second", ""] + spread_warnings(df, "training rows") + [
             f"Corpus {first['corpus']} (all of it, no split), {int(first['steps'])} steps of W -= 50 * grad with the "
             f"lecture's regulariser 0.01 * mean(W**2), median of {int(first['repeats'])} fits; a step includes "
             f"loss.item(); p80/p20 is taken over the fits (*wide* above {SPREAD_LIMIT:g}). Every variant's loss at "
             "every step was checked against the baseline's (rtol 1e-3), and the "
             "sufficient-statistics step's loss and gradient against the per-row F.cross_entropy(W[context]) before "
             "timing. The fastest variant of each order is in bold.", ""]
    for order, group in df.groupby("order"):
        g0 = group.iloc[0]
        ok = group[group["status"] == "ok"]
        best = ok["ms_per_step"].idxmin() if len(ok) else None
        out = []
        for idx, r in group.iterrows():
            bold = (lambda x: f"**{x}**") if idx == best else (lambda x: x)
            out.append({
                "variant": bold(r.variant), "ms/step": bold(_fmt(r.ms_per_step, ".3f", "—")),
                "min–max ms": "—" if r.status != "ok" else f"{r.min_ms_per_step:.3f}–{r.max_ms_per_step:.3f}",
                "p80/p20": _spread_cell(r) if r.status == "ok" else "—",
                "steps/s": _fmt(r.steps_per_s, ".1f", "—"), "× eager": _fmt(r.speedup_vs_eager, ".2f", "—"),
                "final loss": _fmt(r.last_loss, ".6f", "—"), "max loss diff": _fmt(r.loss_err, ".2g", "—"),
                "compile s": _fmt(r.compile_s, ".2f", "—"),
                "status": "ok" if r.status == "ok" else (f"{r.status}: {r.note}" if r.status == "failed" else r.note),
            })
        lines += [f"### order {order}: N = {int(g0.N):,} rows, C = {int(g0.C):,} contexts, V = {int(g0.V)}", "",
                  pd.DataFrame(out).to_markdown(index=False), ""]
    lines += [f"- `{k}`: {v.what}" for k, v in TRAIN_VARIANTS.items() if k in set(df["variant"])] + [""]
    return lines


def render_bench(out_dir: Path, command: str = "") -> str:
    """bench.md from the saved bench.csv and/or train.csv of `out_dir`: environment block,
    headline, one table per dtype and V, the training section, notes."""
    import pandas as pd

    read = lambda name: read_rows(out_dir / name)  # noqa: E731
    has_train = (out_dir / "train.csv").exists()
    train_first = read("train.csv").iloc[0] if has_train else None
    train_lines = render_train(out_dir / "train.csv") if has_train else []
    if not (out_dir / "bench.csv").exists():
        lines = _environment_lines(train_first, command)
        lines[-1:-1] = machine_lines(train_first, "training suite")
        return "\n".join(lines + load_warnings(train_first, "training suite") + train_lines) + "\n"
    df = read("bench.csv")
    copy = df[df["backend"] == "copy"].iloc[0]
    first = df.iloc[0]
    lines = _environment_lines(first, command)
    lines[-1:-1] = machine_lines(first, "loss suite") + (machine_lines(train_first, "training suite") if has_train else []) + [
        f"- copy bandwidth measured in this run: **{copy['gbps']:.1f} GB/s** "
        f"({copy['N'] * 4 / 2**20:.0f} MiB device-to-device copy, bytes read + written, on the same threads)"]
    lines += load_warnings(first, "loss suite") + (load_warnings(train_first, "training suite") if has_train else [])
    lines += spread_warnings(df[df["backend"] != "copy"], "loss rows")
    if str(first["device"]).startswith("cpu"):
        lines += ["On CPU the Triton rows are listed as needing CUDA; the fused kernel is timed on a GPU "
                  "(scripts/gpu-check.sh).", ""]
    measured = df[df["status"] == "ok"]
    measured = measured[measured["backend"] != "copy"]
    n_verified = int((measured["verified"] == "yes").sum())
    lines += [
        f"Verification: before timing, each of the {len(measured)} measured rows' loss and gradient were checked "
        f"against eager F.cross_entropy on the benchmarked tensors, computed in fp32 ({n_verified} passed; in bf16 "
        "and fp16 a row also passes when its error is at most twice eager F.cross_entropy's own error in that "
        "dtype; tolerances per dtype: "
        + ", ".join(f"{d} loss rtol {t[0]:g}, gradient rtol {t[2]:g} + {t[3]:g}·max|grad|" for d, t in TOLERANCES.items()
                    if d in set(df["dtype"])) + ").", "",
    ]
    failed = df[df["status"] == "failed"]
    if len(failed):
        lines += ["**Failed rows:**", ""] + [f"- {r.backend} {r['pass']} {r.dtype} N={r.N} V={r.V}: {r.note}"
                                            for _, r in failed.iterrows()] + [""]

    lines += _headline(df)
    lines += ["## Results", "",
              "Median and p20–p80 of the timed repetitions; p80/p20 is their spread, marked *wide* above "
              f"{SPREAD_LIMIT:g} (such a median is not a reliable figure, and is not bolded as the fastest); GB/s "
              "counts the bytes that must move (see 'What GB/s counts' below); "
              "'of copy' is that as a fraction of the copy bandwidth above; '× eager' is the speed-up over eager "
              "F.cross_entropy on the same problem; 'peak MiB' is the memory one call allocates beyond what "
              "existed before it; 'compile s' is how much longer the first call took than a steady one. "
              "The fastest backend of each problem, pass and N is in bold.", ""]
    shapes = df[~df["backend"].isin(["copy"]) & (df["backend"] != "*")]
    dtype_order = {d: i for i, d in enumerate(dict.fromkeys(shapes["dtype"]))}
    for (dtype, v), group in sorted(shapes.groupby(["dtype", "V"]), key=lambda kv: (dtype_order[kv[0][0]], kv[0][1])):
        lines += [f"### {dtype}, V = {v}", "", _bench_table(group), ""]

    skipped_shapes = df[df["backend"] == "*"]
    if len(skipped_shapes):
        lines += ["## Shapes not run", ""] + [f"- {r.dtype} N={r.N} V={r.V}: {r.note}" for _, r in skipped_shapes.iterrows()] + [""]
    lines += ["## Backends", ""] + [f"- `{k}`: {v.what}" for k, v in VARIANTS.items() if k in set(df["backend"])]
    lines += ["", "## What GB/s counts", "",
              "- logits rows (`torch` … `manual`): forward reads the N × V logits once and the N int64 targets and "
              "writes the loss; forward+backward also writes the N × V gradient once.",
              f"- table rows (`table-*`, the loss of `table[context]` with a table of C = {int(first['C'])} rows): "
              "forward reads the C × V table once and the N int64 context ids and N targets and writes the loss; "
              "forward+backward also writes the C × V table gradient once. No N × V logits: the fused path never "
              "builds them, so they are not counted. `table-torch` does build `table[context]` and moves more "
              "than this; its GB/s is the problem's bytes over the time it took.",
              "- The bench's losses are unweighted; a weighted loss would read N weights more.", ""]
    return "\n".join(lines + train_lines) + "\n"


def _environment_lines(first, command: str) -> list[str]:
    lines = [f"# Benchmark: {first['run']}", ""]
    if command:
        lines += [f"`{command}`", ""]
    return lines + [
        "## Environment", "",
        f"- device: {first['device']} — {first['device_name']}",
        f"- machine: {first['machine']}",
        f"- driver: {first['driver']}",
        f"- torch {first['torch']}, triton {first['triton']}, python {first['python']}",
        f"- git commit: {first['git_commit']}; started {first['timestamp']}",
        "",
    ]


def _headline(df) -> list[str]:
    """Forward+backward at the largest N of each dtype and V: GB/s, fraction of copy, × eager."""
    ok = df[(df["status"] == "ok") & (df["pass"] == "fwd+bwd") & (df["problem"] != "copy")]
    if ok.empty:
        return []
    largest = ok.groupby(["dtype", "V"])["N"].transform("max")
    ok = ok[ok["N"] == largest]
    wide = ok["wide_spread"].astype(str) == "True" if "wide_spread" in ok.columns else [False] * len(ok)
    cells = ok.assign(cell=[f"{_rate(r.gbps)} GB/s · {r.frac_of_copy:.0%} · {r.speedup_vs_eager:.2f}×" + (" *wide*" if w else "")
                            for r, w in zip(ok.itertuples(), wide)])
    table = cells.pivot_table(index="backend", columns=["dtype", "V"], values="cell", aggfunc="first")
    table = table.reindex([b for b in VARIANTS if b in table.index])
    dtype_order = list(dict.fromkeys(df.loc[df["backend"] != "copy", "dtype"]))
    table = table[sorted(table.columns, key=lambda c: (dtype_order.index(c[0]), c[1]))]
    table.columns = [f"{d} V={v} (N={int(ok[(ok.dtype == d) & (ok.V == v)].N.max())})" for d, v in table.columns]
    return ["## Headline: forward+backward at the largest N", "",
            "GB/s · fraction of copy bandwidth · speed-up over eager F.cross_entropy; *wide*: the row's p80/p20 "
            f"exceeds {SPREAD_LIMIT:g}.", "",
            table.fillna("—").to_markdown(), ""]


def _rate(gbps: float) -> str:
    """GB/s with the digits a CPU's fractions of a GB/s need: 66.9, 2.4, 0.31, 0.042."""
    return f"{gbps:.1f}" if gbps >= 10 else (f"{gbps:.2f}" if gbps >= 0.1 else f"{gbps:.3f}")


def _bench_table(group) -> str:
    import pandas as pd

    order = {b: i for i, b in enumerate(VARIANTS)}
    group = group.assign(_o=group["backend"].map(order)).sort_values(["N", "pass", "_o"], kind="stable")
    ok = group[group["status"] == "ok"]
    if "wide_spread" in ok.columns:
        ok = ok[ok["wide_spread"].astype(str) != "True"]  # a wide row's median is not a figure to rank
    best = set(ok.loc[ok.groupby(["problem", "pass", "N"])["median_ms"].idxmin()].index) if len(ok) else set()
    out = []
    for idx, r in group.iterrows():
        bold = (lambda s: f"**{s}**") if idx in best else (lambda s: s)
        status = "ok" if r.status == "ok" else (f"{r.status}: {r.note}" if r.status == "failed" else r.note)
        out.append({
            "backend": bold(r.backend), "pass": r["pass"], "N": int(r.N),
            "median ms": bold(_fmt(r.median_ms, ".3f", "—")),
            "p20–p80 ms": "—" if r.status != "ok" else f"{r.p20_ms:.3f}–{r.p80_ms:.3f}",
            "p80/p20": _spread_cell(r) if r.status == "ok" else "—",
            "GB/s": "—" if r.gbps != r.gbps else _rate(r.gbps), "of copy": _fmt(r.frac_of_copy, ".0%", "—"),
            "× eager": _fmt(r.speedup_vs_eager, ".2f", "—"), "peak MiB": _fmt(r.peak_extra_mib, ".0f", "n/a" if r.status == "ok" else "—"),
            "compile s": _fmt(r.compile_s, ".2f", "—") if VARIANTS[r.backend].backend in COMPILING else "—",
            "status": status,
        })
    return pd.DataFrame(out).to_markdown(index=False)




# ---------------------------------------------------------------------------------------------
# counting.md


def _gib(x) -> str:
    return "—" if x is None or x != x else f"{x / 2**30:.2f} GiB"


def render_counting(csv_path: Path, commands: list[str] | None = None) -> str:
    """counting.md from counting.csv: environment, then one section per corpus (and expansion)."""
    import pandas as pd

    df = read_rows(csv_path)
    first = df.iloc[-1]
    lines = ["# Counting throughput", ""]
    if commands:
        lines += [f"`{c}`" for c in commands] + [""]
    lines += ["## Environment", "",
              f"- device: {first['device']} — {first['device_name']}",
              f"- machine: {first['machine']}; load average (1, 5, 15 min) when the latest rows were written: {first['load_avg']}",
              *machine_lines(first, "latest run"),
              f"- torch {first['torch']}, python {first['python']}, nltk {first['nltk']}",
              f"- git commit: {first['git_commit']}; latest rows {first['timestamp']}", "",
              *load_warnings(first, "latest run"),
              "A throughput is predicted characters (characters plus the end token) per second. `harness` is the "
              "count path a run uses (`count(windows_for(...))`: all windows at once where they fit the memory "
              "budget, else chunk by chunk); `harness-stream` always goes chunk by chunk; `lecture-dict` is the "
              "lecture's `b[gram] = b.get(gram, 0) + 1` loop; `nltk-mle` is `nltk.lm.MLE(n).fit(...)` over "
              "`padded_everygram_pipeline` (nltk counts every order up to n and pads both ends). The baselines "
              "run in the same process on the same names (a sample where the corpus is large: see the notes). "
              "Peak memory is torch.cuda.max_memory_allocated on CUDA and the process's peak resident set "
              "(getrusage maxrss, so far in the process) on CPU.", ""]
    for (corpus, expanded), group in df.groupby(["corpus", "expanded"], sort=False):
        title = f"{corpus}" + (" expanded (every copy a row)" if str(expanded) == "True" else "")
        lines += [f"## {title}", ""]
        expand_rows = group[group["method"] == "expand"]
        for _, r in expand_rows.iterrows():
            lines += [f"Expansion on the device: {r['note']} in {r['seconds']:.1f} s "
                      f"({r['chars_per_s'] / 1e6:.0f} M tokens/s); peak memory after it {_gib(r['peak_bytes'])}; "
                      f"chunk budget {_gib(r['budget_bytes'])}.", ""]
        measured = group[group["method"] != "expand"].copy()
        measured["order"] = measured["order"].astype(int)
        cells = measured.assign(cell=[("—" if r.chars_per_s != r.chars_per_s else
                                       f"{_counting_rate(r.chars_per_s)} ({r.speedup_vs_lecture:.{1 if r.speedup_vs_lecture >= 1 else 3}f}×)")
                                      for r in measured.itertuples()])
        table = cells.pivot_table(index="order", columns="method", values="cell", aggfunc="first")
        table = table[[m for m in COUNTING_METHODS if m in table.columns]]
        detail = measured[measured["method"].str.startswith("harness")]
        lines += spread_warnings(detail, "harness passes")
        lines += ["Characters per second (× the lecture's dict loop):", "", table.to_markdown(), ""]
        lines += ["Harness passes:", "", pd.DataFrame({
            "order": detail["order"], "method": detail["method"], "characters": detail["chars"].map("{:,}".format),
            "seconds": detail["seconds"].map("{:.3f}".format), "repeats": detail["repeats"],
            "p80/p20": [_spread_cell(r) for _, r in detail.iterrows()],
            "peak memory": detail["peak_bytes"].map(_gib), "chunk budget": detail["budget_bytes"].map(_gib),
            "how": detail["note"],
        }).to_markdown(index=False), ""]
        notes = sorted(set(measured.loc[measured["method"].isin(["lecture-dict", "nltk-mle"]), "note"]))
        chars = sorted(set(measured.loc[measured["method"] == "lecture-dict", "chars"]))
        lines += [f"Baselines: {', '.join(notes)}; {', '.join(f'{c:,}' for c in chars)} predicted characters.", ""]
    return "\n".join(lines) + "\n"


def _counting_rate(x: float) -> str:
    return f"{x / 1e9:.2f} G/s" if x >= 1e9 else (f"{x / 1e6:.1f} M/s" if x >= 1e6 else f"{x / 1e3:.0f} K/s")




# ---------------------------------------------------------------------------------------------
# smoothing.md


DEFINITIONS = """\
## Where nltk's Kneser-Ney and ours differ

`harness-kn` is the model `run --smoothing kn` fits; `nltk-kn` is `nltk.lm.KneserNeyInterpolated`
fitted on `padded_everygram_pipeline`. They differ in definition, not only in speed:

1. **Discounts.** nltk subtracts one discount d (0.1 by default) from every count of every order
   >= 2. Ours is modified Kneser-Ney: three discounts per order (D1, D2, D3+ for counts 1, 2, 3+),
   estimated from that order's count-of-counts (Chen & Goodman), KenLM's 0.5/1/1.5 where they are
   undefined; the discounts used are in the notes of the `harness-kn` fit rows in smoothing.csv.
2. **Unigram.** nltk's order 1 is the plain continuation distribution N1+(. w) / N1+(. .), not
   discounted and never mixed with the uniform, so a token never seen after another one (a dev
   character absent from train, nltk's `<UNK>`) gets probability 0 and an infinite NLL. Ours
   discounts the continuation unigram too and interpolates it with 1/V: nothing is ever 0.
3. **Padding.** nltk pads a name with n-1 `<s>` in front and n-1 `</s>` behind and counts the n-grams
   inside the padding like any other (`<s> <s>`, `a </s> </s>`, `</s> </s>`): lower orders take
   continuation counts there too (the bigram `<s> e` of a trigram model has continuation count 1
   whatever its frequency), `</s>` gains continuation counts from the end padding, and `<s>`,
   which is never predicted, gets unigram mass because it follows `<s>`. At order >= 3 its
   lower-order weight counts `<s>` among the followers of `<s>` although no continuation count backs
   it, so P(. | `<s>`...`<s>`) sums to a little more than 1 (1.04 on 13 names with d = 0.75; on a
   real corpus the top order's small weight leaves far less: the sums are in the notes of the
   `nltk-kn` fit rows). Its vocabulary holds `<s>`, `</s>` and `<UNK>` beside the characters. Ours has one boundary
   token `.` for start and end, predicts the end once, and by default (padding="single") counts as
   KenLM does with one `<s>`: an n-gram starting with one boundary keeps its raw count (a name's start
   has no left extension), one starting with two or more is a copy of the same event one order down
   and is skipped.

`harness-kn-nltkdef` is ours with nltk's choices of 1 and 2 (one discount d at orders >= 2, an
undiscounted continuation unigram) and padding as ordinary tokens (padding="continuation"); on
our windows' n-grams it equals nltk to 1e-12 (tests/models/test_smoothed.py). What remains between it and
`nltk-kn` is the padding of 3: nltk's end padding and its `<s>` and `</s>` n-grams.
"""


def _smoothing_machine(latest) -> list[str]:
    """Threads and load of the latest run; rows from before load_avg_end existed had load_avg_start and load_avg."""
    if _present(latest, "load_avg_end"):
        return machine_lines(latest, "latest run")
    return [f"- latest run: {latest['threads']} torch CPU thread(s) (--threads); load average (1, 5, 15 min) when it "
            f"started: {latest['load_avg_start']}, when its rows were written: {latest['load_avg']}"]


def _smoothing_rate(x: float) -> str:
    if x != x:
        return "—"
    return f"{x / 1e6:.2f} M/s" if x >= 1e6 else f"{x / 1e3:.1f} K/s"


def _label(method: str, discount) -> str:
    return method if discount != discount or discount is None else f"{method} d={discount:g}"


def render_smoothing(csv_path: Path) -> str:
    """smoothing.md from smoothing.csv: environment, definitions, then per corpus speed and dev NLL tables."""
    import pandas as pd

    df = read_rows(csv_path)
    latest = df.iloc[-1]
    lines = ["# Smoothed count models against nltk.lm.KneserNeyInterpolated", ""]
    commands = [c for c in dict.fromkeys(df["command"].dropna()) if c]
    if commands:
        lines += [f"`{c}`" for c in commands] + [""]
    lines += ["## Environment", "",
              f"- device: {latest['device']} — {latest['device_name']}",
              f"- machine: {latest['machine']}",
              *_smoothing_machine(latest),
              f"- torch {latest['torch']}, python {latest['python']}, nltk {latest['nltk']}",
              f"- git commit: {latest['git_commit']}; latest rows {latest['timestamp']}; split seed {latest['split_seed']}",
              "",
              *(load_warnings(latest, "latest run") if _present(latest, "load_avg_end") else []),
              "Throughputs are predicted characters (each name's characters and its end token) per second: "
              "fit from the train names to a model (our n-gram windows included), scoring from the dev names to "
              "their mean NLL in nats per predicted character. Ours: the median of repeats "
              "(`timed`: repeated for a second, 0.2 s with --quick, at most 50 times); nltk: one pass. nltk scores the dev names taken in a seeded order until its "
              "time budget per order is spent (`dev-subset`); every method scores that subset, and ours the whole "
              "dev split as well (`dev`).", "",
              DEFINITIONS]
    df["label"] = [_label(m, d) for m, d in zip(df["method"], df["discount"])]
    for corpus, group in df.groupby("corpus", sort=False):
        lines += [f"## {corpus}", ""]
        fits = group[group["phase"] == "fit"].set_index(["order", "label"])
        scores = group[group["phase"] == "score"]
        sub = scores[scores["scope"] == "dev-subset"].set_index(["order", "label"])
        full = scores[scores["scope"] == "dev"].set_index(["order", "label"])
        nltk_fit = fits[fits["method"] == "nltk-kn"]
        if not nltk_fit["chars_per_s"].notna().any():
            lines += [f"nltk: {'; '.join(sorted(set(nltk_fit['note'].dropna()))) or 'no rows'}.", ""]
        # nltk's default discount is the reference each speed-up is taken against
        ref = group[(group["method"] == "nltk-kn") & (group["discount"] == NLTK_DISCOUNTS[0])]
        ref_fit = ref[ref["phase"] == "fit"].set_index("order")["chars_per_s"]
        ref_score = ref[ref["phase"] == "score"].set_index("order")["chars_per_s"]
        table = pd.DataFrame({
            "fit": fits["chars_per_s"].map(_smoothing_rate),
            "fit s": fits["seconds"].map(lambda s: "—" if s != s else f"{s:.3f}"),
            "fit × nltk": [_times(r, ref_fit.get(o)) for (o, _), r in fits["chars_per_s"].items()],
            "fit p80/p20": [_spread_cell(r) for _, r in fits.iterrows()],
            "score (subset)": sub["chars_per_s"].reindex(fits.index).map(_smoothing_rate),
            "score × nltk": [_times(r, ref_score.get(o)) for (o, _), r in sub["chars_per_s"].reindex(fits.index).items()],
            "dev NLL (subset)": sub["nll_nats"].reindex(fits.index).map(_nll),
            "score (dev)": full["chars_per_s"].reindex(fits.index).map(_smoothing_rate),
            "dev NLL (dev)": full["nll_nats"].reindex(fits.index).map(_nll),
            "dev p80/p20": [_spread_cell(r) for _, r in full.reindex(fits.index).iterrows()],
        })
        table.index = [f"{o} {label}" for o, label in table.index]
        table.index.name = "order, method"
        lines += spread_warnings(group[group["method"] != "nltk-kn"], "rows of ours")
        lines += ["Characters per second (× nltk-kn d=0.1 of the same order), and dev NLL in nats per predicted "
                  "character; p80/p20 is the spread of our repeats (*wide* above " f"{SPREAD_LIMIT:g}; nltk runs once):",
                  "", table.to_markdown(disable_numparse=True), ""]
        lines += _subset_sentence(group) + _nll_sentences(group)
    return "\n".join(lines) + "\n"


def _times(rate, ref) -> str:
    if rate != rate or ref is None or ref != ref:
        return "—"
    return f"{rate / ref:.{1 if rate / ref >= 1 else 2}f}×"


def _nll(x) -> str:
    return "—" if x != x else f"{x:.4f}"


def _subset_sentence(group) -> list[str]:
    sub = group[(group["scope"] == "dev-subset") & (group["method"] == "nltk-kn")]
    dev = group[(group["scope"] == "dev") & (group["method"] == "harness-kn")].set_index("order")
    if sub.empty:
        return []
    parts = []
    for order, rows in sub.groupby("order"):
        r = rows.iloc[0]
        whole = dev.loc[order] if order in dev.index else None
        if whole is None:
            parts.append(f"order {order}: {int(r['items']):,} dev names, {int(r['chars']):,} characters")
        elif int(r["items"]) == int(whole["items"]):
            parts.append(f"order {order}: all {int(r['items']):,} dev names ({int(r['chars']):,} characters)")
        else:
            parts.append(f"order {order}: {int(r['items']):,} of {int(whole['items']):,} dev names, "
                         f"{int(r['chars']):,} of {int(whole['chars']):,} characters")
    return ["nltk scored " + "; ".join(parts) + ".", ""]


def _nll_sentences(group) -> list[str]:
    """Per order: ours against nltk's better discount on the same subset, and ours-under-nltk's-definition against nltk."""
    sub = group[(group["phase"] == "score") & (group["scope"] == "dev-subset")]
    full = group[(group["phase"] == "score") & (group["scope"] == "dev")]
    if sub.empty:
        return []
    out = ["How dev NLL compares (on the subset nltk scored):", ""]
    for order, rows in sub.groupby("order"):
        by = {lab: r for lab, r in zip(rows["label"], rows["nll_nats"])}
        nltk = {d: by.get(_label("nltk-kn", d)) for d in NLTK_DISCOUNTS}
        best_d = min((d for d in nltk if nltk[d] is not None and nltk[d] == nltk[d]), key=nltk.get, default=None)
        if best_d is None or "harness-kn" not in by:
            continue
        ours = by["harness-kn"]
        line = (f"- order {order}: ours (modified KN) {ours:.4f}, nltk's best (d={best_d:g}) {nltk[best_d]:.4f}: "
                f"ours {'lower' if ours < nltk[best_d] else 'higher'} by {abs(ours - nltk[best_d]):.4f} nats; "
                f"Witten-Bell {by.get('harness-wb', float('nan')):.4f}.")
        whole = full[full["order"] == order].set_index("label")["nll_nats"]
        if {"harness-kn", "harness-wb"} <= set(whole.index):
            line += f" On all of dev: ours {whole['harness-kn']:.4f}, Witten-Bell {whole['harness-wb']:.4f}."
        same = [f"d={d:g}: {by[_label('harness-kn-nltkdef', d)] - nltk[d]:+.1e}" for d in NLTK_DISCOUNTS
                if _label("harness-kn-nltkdef", d) in by and nltk[d] is not None]
        if same:
            line += " Ours under nltk's definition minus nltk (the padding difference): " + ", ".join(same) + "."
        out.append(line)
    return out + [""]



