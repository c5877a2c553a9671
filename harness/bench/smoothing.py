"""`python -m harness bench --smoothing`: our Kneser-Ney and Witten-Bell against nltk.lm.KneserNeyInterpolated.

On the corpus's seeded train/dev split (harness.data.splits.split_corpus, `run`'s default seed), for
every order, each method is fitted on the train names and scores the dev predictions (every
character and the end token of each dev name):

    harness-kn          ours: interpolated modified Kneser-Ney as `run --smoothing kn` fits it
    harness-wb          ours: interpolated Witten-Bell (`--smoothing wb`)
    harness-kn-nltkdef  ours under nltk's definition: one discount d at orders >= 2, an undiscounted
                        continuation unigram, padding counted as ordinary tokens (padding="continuation"),
                        the setting in which tests/test_smoothing.py finds nltk's probabilities equal to ours
    nltk-kn             nltk.lm.KneserNeyInterpolated(n, discount=d) fitted on padded_everygram_pipeline(n, names),
                        scoring nltk's own padded n-grams of each dev name (`pad_both_ends`): the first
                        len(name) + 1, i.e. the same predictions

for d in NLTK_DISCOUNTS (nltk's default 0.1, and 0.75). Fit time runs from the names to a fitted
model (our windows included), scoring time from the names to the mean NLL. nltk looks up
continuation counts by scanning all n-grams of the order above on every call, so its scoring
slows with the order (about 1.4 K characters/s at order 4 on ssa): it scores a seeded subset of
the dev names, taken in a seeded order until `nltk_seconds` have passed (the second discount
scores the same names), and ours scores that subset too as well as the whole dev split.

Rows go to smoothing.csv (long format: one measurement per row, with provenance); smoothing.md is
rendered from that file.
"""
from __future__ import annotations

import argparse
import datetime as dt
import math
import time
from pathlib import Path

import torch

from harness.bench.counting import provenance, timed
from harness.run.config import RunConfig
from harness.data.corpus import Corpus, load_corpus
from harness.core.errors import HarnessError
from harness.evaluation.evaluate import mean_nll
from harness.data.ngrams import windows
from harness.models.smoothed import KneserNeyModel, fit_smoothed
from harness.data.splits import split_corpus

DEFAULT_ORDERS = (2, 3, 4)
NLTK_DISCOUNTS = (0.1, 0.75)  # nltk's default, and the usual absolute discount
DEFAULT_NLTK_SECONDS = 60.0
NLTK_MAX_TRAIN_CHARS = 2_000_000  # nltk fits Python tuples of every copy: past this its rows are skipped
METHODS = ("harness-kn", "harness-wb", "harness-kn-nltkdef", "nltk-kn")
CSV_COLUMNS = [
    "corpus", "order", "method", "discount", "phase", "scope", "items", "chars", "seconds", "chars_per_s",
    "repeats", "nll_nats", "note",
    "command", "split_seed", "threads", "device", "device_name", "machine", "load_avg_start", "load_avg", "torch", "python", "nltk",
    "git_commit", "timestamp",
]


def add_smoothing_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `bench --smoothing` (--corpus, --orders, --device, --out, --quick are the bench parser's)."""
    g = parser.add_argument_group("smoothed count models against nltk (--smoothing)")
    g.add_argument("--smoothing", action="store_true",
                   help="fit and dev-scoring time and dev NLL of our kn/wb against nltk.lm.KneserNeyInterpolated, "
                        "orders 2,3,4 by default (writes smoothing.csv and smoothing.md)")
    g.add_argument("--nltk-seconds", type=float, default=None,
                   help=f"with --smoothing: seconds nltk may spend scoring dev per order; past them it scores a seeded "
                        f"subset of the dev names (default {DEFAULT_NLTK_SECONDS:.0f}; 5 with --quick)")
    g.add_argument("--threads", type=int, default=1,
                   help="with --smoothing: torch CPU threads while measuring (default %(default)s: nltk runs on one, and "
                        "on a shared machine threads that wait for a busy core make timings erratic)")


# ---------------------------------------------------------------------------------------------
# nltk


def _copies(corpus: Corpus) -> list[str]:
    """Every copy of every item as a string (nltk counts copies, it has no weights)."""
    return [w for w, n in zip(corpus.items, corpus.item_weights().tolist()) for _ in range(n)]


def nltk_kn_fit(words: list[str], order: int, discount: float):
    """nltk.lm.KneserNeyInterpolated fitted on the words' characters as nltk's documentation fits a model."""
    from nltk.lm import KneserNeyInterpolated
    from nltk.lm.preprocessing import padded_everygram_pipeline

    train, vocab = padded_everygram_pipeline(order, [list(w) for w in words])
    lm = KneserNeyInterpolated(order, discount=discount)
    lm.fit(train, vocab)
    return lm


def nltk_predictions(word: str, order: int) -> list[tuple]:
    """nltk's padded n-grams of a word that predict its characters and the first end token."""
    from nltk.lm.preprocessing import pad_both_ends
    from nltk.util import ngrams

    return list(ngrams(pad_both_ends(list(word), n=order), order))[:len(word) + 1]


def nltk_item_nll(lm, word: str, order: int) -> float:
    """Summed NLL (nats) of a word's predictions under an nltk model; inf where nltk gives probability 0."""
    nll = 0.0
    for gram in nltk_predictions(word, order):
        p = lm.score(gram[-1], gram[:-1])
        if p <= 0:
            return math.inf
        nll -= math.log(p)
    return nll


def nltk_start_mass(lm, order: int) -> float:
    """Sum over nltk's vocabulary of P(w | <s> ... <s>): above 1 where its lower orders count padding-only followers."""
    return float(sum(lm.score(w, ("<s>",) * (order - 1)) for w in lm.vocab))


# ---------------------------------------------------------------------------------------------
# measurement


def _load_avg() -> str:
    try:  # a shared machine's other work slows every method; the report states it
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def _ours(method: str, discount: float | None):
    """A function fitting our model of `method` on training windows (and dev, which kn and wb do not use)."""
    if method == "harness-kn-nltkdef":
        return lambda train, dev: KneserNeyModel.fit(
            train, discounts=[(0.0,) * 3] + [(discount,) * 3] * (train.order - 1), padding="continuation")
    return lambda train, dev: fit_smoothed(method.removeprefix("harness-"), train, dev)[0]


def run_smoothing(corpus_spec: str, orders, device: torch.device, nltk_seconds: float, min_seconds: float,
                  seed: int = RunConfig.seed, log=print) -> list[dict]:
    """Measure every method of METHODS for every order; rows without provenance."""
    corpus = load_corpus(corpus_spec, device)
    splits = split_corpus(corpus, seed)
    train, dev = splits["train"], splits["dev"]
    train_chars, dev_chars = train.num_predictions(), dev.num_predictions()
    log(f"smoothing: {corpus.name}, split seed {seed}: train {train.num_items():,} items ({train_chars:,} predicted "
        f"characters), dev {dev.num_items():,} items ({dev_chars:,}); device {device}")
    try:
        import nltk.lm  # noqa: F401

        nltk_note = ""
        if train_chars > NLTK_MAX_TRAIN_CHARS:
            nltk_note = (f"skipped: the train split has {train_chars:,} predicted characters, over the "
                         f"{NLTK_MAX_TRAIN_CHARS:,} nltk is fitted on here")
        else:
            train_words = _copies(train)
            nltk_kn_fit(train_words[:10], 2, 0.1)  # nltk's first import and fit cost about a second: not fit time
    except ImportError:
        nltk_note = "nltk not installed (pip install nltk)"
    # the seeded order in which nltk takes dev names until its time is spent
    dev_order = torch.randperm(dev.num_unique, generator=torch.Generator().manual_seed(seed)).tolist()
    dev_weights = dev.item_weights().tolist()
    base = {"corpus": corpus.name}
    rows = []
    for order in orders:
        subset_rows, subset_idx, nltk_rows = [], None, []
        if nltk_note:
            for d in NLTK_DISCOUNTS:
                nltk_rows.append({**base, "order": order, "method": "nltk-kn", "discount": d, "phase": "fit",
                                  "scope": "train", "note": nltk_note})
        else:
            for d in NLTK_DISCOUNTS:
                t0 = time.perf_counter()
                lm = nltk_kn_fit(train_words, order, d)
                fit_s = time.perf_counter() - t0
                start_mass = nltk_start_mass(lm, order)
                nltk_rows.append({**base, "order": order, "method": "nltk-kn", "discount": d, "phase": "fit",
                                  "scope": "train", "items": train.num_items(), "chars": train_chars,
                                  "seconds": fit_s, "chars_per_s": train_chars / fit_s, "repeats": 1,
                                  "note": f"vocabulary of {len(lm.vocab)} (with <s>, </s>, <UNK>); "
                                          f"P(. | <s>^{order - 1}) sums to 1 {start_mass - 1:+.1e}"})
                nll, chars, scored = 0.0, 0, []
                t0 = time.perf_counter()
                for i in (dev_order if subset_idx is None else subset_idx):
                    w = dev.items[i]
                    nll += dev_weights[i] * nltk_item_nll(lm, w, order)
                    chars += dev_weights[i] * (len(w) + 1)
                    scored.append(i)
                    if subset_idx is None and time.perf_counter() - t0 >= nltk_seconds:
                        break
                score_s = time.perf_counter() - t0
                subset_idx = scored
                nltk_rows.append({**base, "order": order, "method": "nltk-kn", "discount": d, "phase": "score",
                                  "scope": "dev-subset", "items": sum(dev_weights[i] for i in scored), "chars": chars,
                                  "seconds": score_s, "chars_per_s": chars / score_s, "repeats": 1,
                                  "nll_nats": nll / chars})
                log(f"  order {order} nltk-kn d={d}: fit {train_chars / fit_s / 1e3:.0f} K chars/s, "
                    f"score {chars / score_s / 1e3:.1f} K chars/s on {len(scored):,} of {dev.num_unique:,} dev names, "
                    f"NLL {nll / chars:.4f}")
        scopes = [("dev", dev)]
        if subset_idx is not None:
            scopes.insert(0, ("dev-subset", dev.subset(torch.tensor(sorted(subset_idx), dtype=torch.int64))))
        for method in METHODS[:-1]:
            for d in (NLTK_DISCOUNTS if method == "harness-kn-nltkdef" else (None,)):
                fit = _ours(method, d)
                dev_win = windows(dev, order)
                seconds, repeats = timed(lambda: fit(windows(train, order), dev_win), device, min_seconds)
                model = fit(windows(train, order), dev_win)
                row = {**base, "order": order, "method": method, "discount": d}
                if method == "harness-kn":
                    row["note"] = "discounts (D1, D2, D3+) by order: " + "; ".join(
                        f"{k}: " + ", ".join(f"{x:.3f}" for x in D) + (" (fallback)" if fb else "")
                        for k, (D, fb) in enumerate(zip(model.discounts, model.fallback), start=1))
                rows_here = [{**row, "phase": "fit", "scope": "train", "items": train.num_items(), "chars": train_chars,
                              "seconds": seconds, "chars_per_s": train_chars / seconds, "repeats": repeats}]
                for scope, part in scopes:
                    chars = part.num_predictions()
                    seconds, repeats = timed(lambda: mean_nll(model, windows(part, order)), device, min_seconds)
                    rows_here.append({**base, "order": order, "method": method, "discount": d, "phase": "score",
                                      "scope": scope, "items": part.num_items(), "chars": chars, "seconds": seconds,
                                      "chars_per_s": chars / seconds, "repeats": repeats,
                                      "nll_nats": mean_nll(model, windows(part, order))})
                subset_rows += rows_here
                shown = rows_here[-1]
                log(f"  order {order} {method}" + (f" d={d}" if d is not None else "") +
                    f": fit {rows_here[0]['chars_per_s'] / 1e6:.2f} M chars/s, score {shown['chars_per_s'] / 1e6:.2f} "
                    f"M chars/s, dev NLL {shown['nll_nats']:.4f}")
        rows += subset_rows + nltk_rows
    return rows


# ---------------------------------------------------------------------------------------------
# files


def write_rows(rows: list[dict], csv_path: Path) -> None:
    """Write rows to smoothing.csv, replacing earlier rows of the same corpus, order, method, discount, phase and scope."""
    import pandas as pd

    new = pd.DataFrame(rows).reindex(columns=CSV_COLUMNS)
    if csv_path.exists():
        old = pd.read_csv(csv_path, keep_default_na=False, na_values=[""])
        key = ["corpus", "order", "method", "discount", "phase", "scope"]
        new_keys = set(map(tuple, new[key].astype(str).values.tolist()))
        old = old[[tuple(k) not in new_keys for k in old.reindex(columns=CSV_COLUMNS)[key].astype(str).values.tolist()]]
        new = pd.concat([old.reindex(columns=CSV_COLUMNS), new], ignore_index=True)
    new.to_csv(csv_path, index=False)


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
our windows' n-grams it equals nltk to 1e-12 (tests/test_smoothing.py). What remains between it and
`nltk-kn` is the padding of 3: nltk's end padding and its `<s>` and `</s>` n-grams.
"""


def _rate(x: float) -> str:
    if x != x:
        return "—"
    return f"{x / 1e6:.2f} M/s" if x >= 1e6 else f"{x / 1e3:.1f} K/s"


def _label(method: str, discount) -> str:
    return method if discount != discount or discount is None else f"{method} d={discount:g}"


def render_markdown(csv_path: Path) -> str:
    """smoothing.md from smoothing.csv: environment, definitions, then per corpus speed and dev NLL tables."""
    import pandas as pd

    df = pd.read_csv(csv_path, keep_default_na=False, na_values=[""])
    latest = df.iloc[-1]
    lines = ["# Smoothed count models against nltk.lm.KneserNeyInterpolated", ""]
    commands = [c for c in dict.fromkeys(df["command"].dropna()) if c]
    if commands:
        lines += [f"`{c}`" for c in commands] + [""]
    lines += ["## Environment", "",
              f"- device: {latest['device']} — {latest['device_name']}",
              f"- machine: {latest['machine']}; load average (1, 5, 15 min) when the latest run started: "
              f"{latest['load_avg_start']}, when its rows were written: {latest['load_avg']}",
              f"- torch {latest['torch']} on {latest['threads']} CPU thread(s) while measuring (--threads), "
              f"python {latest['python']}, nltk {latest['nltk']}",
              f"- git commit: {latest['git_commit']}; latest rows {latest['timestamp']}; split seed {latest['split_seed']}",
              "",
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
            "fit": fits["chars_per_s"].map(_rate),
            "fit s": fits["seconds"].map(lambda s: "—" if s != s else f"{s:.3f}"),
            "fit × nltk": [_times(r, ref_fit.get(o)) for (o, _), r in fits["chars_per_s"].items()],
            "score (subset)": sub["chars_per_s"].reindex(fits.index).map(_rate),
            "score × nltk": [_times(r, ref_score.get(o)) for (o, _), r in sub["chars_per_s"].reindex(fits.index).items()],
            "dev NLL (subset)": sub["nll_nats"].reindex(fits.index).map(_nll),
            "score (dev)": full["chars_per_s"].reindex(fits.index).map(_rate),
            "dev NLL (dev)": full["nll_nats"].reindex(fits.index).map(_nll),
        })
        table.index = [f"{o} {label}" for o, label in table.index]
        table.index.name = "order, method"
        lines += ["Characters per second (× nltk-kn d=0.1 of the same order), and dev NLL in nats per predicted "
                  "character:", "", table.to_markdown(disable_numparse=True), ""]
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


def smoothing_main(args: argparse.Namespace) -> int:
    """`bench --smoothing`: measure, merge into smoothing.csv, render smoothing.md."""
    import shlex
    import sys

    from harness.bench.loss import device_kind, parse_orders, resolve_device

    device = resolve_device(args.device)
    orders = parse_orders(args.orders, (2,) if args.quick else DEFAULT_ORDERS)
    nltk_seconds = args.nltk_seconds if args.nltk_seconds is not None else (5.0 if args.quick else DEFAULT_NLTK_SECONDS)
    if nltk_seconds <= 0:
        raise HarnessError(f"--nltk-seconds must be > 0, got {nltk_seconds}")
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    out_dir = Path(args.out) if args.out else Path("reports") / f"smoothing-{device_kind(device)}-{stamp}"
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.threads < 1:
        raise HarnessError(f"--threads must be >= 1, got {args.threads}")
    load_start = _load_avg()
    seed = RunConfig.seed
    threads_before = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        rows = run_smoothing(args.corpus, orders, device, nltk_seconds, min_seconds=0.2 if args.quick else 1.0,
                             seed=seed, log=lambda line: print(line, flush=True))
        prov = provenance(device)  # its device name states the threads
    finally:
        torch.set_num_threads(threads_before)
    command = "python -m harness " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["bench"] else ""
    prov.update(load_avg_start=load_start, split_seed=seed, threads=args.threads, command=command)
    write_rows([{**r, **prov} for r in rows], out_dir / "smoothing.csv")
    (out_dir / "smoothing.md").write_text(render_markdown(out_dir / "smoothing.csv"))
    print(f"report: {out_dir / 'smoothing.md'}", flush=True)
    return 0
