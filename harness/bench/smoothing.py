"""`python -m harness bench --smoothing`: our Kneser-Ney and Witten-Bell against nltk.lm.KneserNeyInterpolated.

On the corpus's seeded train/dev split (harness.data.splits.split_corpus, `run`'s default seed), for
every order, each method is fitted on the train names and scores the dev predictions (every
character and the end token of each dev name):

    harness-kn          ours: interpolated modified Kneser-Ney as `run --smoothing kn` fits it
    harness-wb          ours: interpolated Witten-Bell (`--smoothing wb`)
    harness-kn-nltkdef  ours under nltk's definition: one discount d at orders >= 2, an undiscounted
                        continuation unigram, padding counted as ordinary tokens (padding="continuation"),
                        the setting in which tests/models/test_smoothed.py finds nltk's probabilities equal to ours
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

import math
import time

import torch

from harness.bench.common import LOAD_COLUMNS, timed, wide_spread
from harness.data.corpus import Corpus, load_corpus
from harness.data.ngrams import windows
from harness.data.splits import split_corpus
from harness.evaluation.evaluate import mean_nll
from harness.models.smoothed import KneserNeyModel, fit_smoothed
from harness.run.config import RunConfig

DEFAULT_ORDERS = (2, 3, 4)
NLTK_DISCOUNTS = (0.1, 0.75)  # nltk's default, and the usual absolute discount
DEFAULT_NLTK_SECONDS = 60.0
SPLIT_SEED = RunConfig.seed  # run's default split: dev NLLs here compare with a run's
NLTK_MAX_TRAIN_CHARS = 2_000_000  # nltk fits Python tuples of every copy: past this its rows are skipped
METHODS = ("harness-kn", "harness-wb", "harness-kn-nltkdef", "nltk-kn")
CSV_COLUMNS = [
    "corpus", "order", "method", "discount", "phase", "scope", "items", "chars", "seconds", "chars_per_s",
    "repeats", "spread", "wide_spread", "nll_nats", "note",
    "command", "split_seed", *LOAD_COLUMNS, "device", "device_name", "machine", "load_avg", "torch", "python", "nltk",
    "git_commit", "timestamp",
]
CSV_KEY = ["corpus", "order", "method", "discount", "phase", "scope"]  # a new row replaces an old one with the same key


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


def _ours(method: str, discount: float | None):
    """A function fitting our model of `method` on training windows (and dev, which kn and wb do not use)."""
    if method == "harness-kn-nltkdef":
        return lambda train, dev: KneserNeyModel.fit(
            train, discounts=[(0.0,) * 3] + [(discount,) * 3] * (train.order - 1), padding="continuation")
    return lambda train, dev: fit_smoothed(method.removeprefix("harness-"), train, dev)[0]


def run_smoothing(corpus_spec: str, orders, device: torch.device, nltk_seconds: float, min_seconds: float,
                  seed: int = SPLIT_SEED, log=print) -> list[dict]:
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
                seconds, repeats, ratio = timed(lambda: fit(windows(train, order), dev_win), device, min_seconds)
                model = fit(windows(train, order), dev_win)
                row = {**base, "order": order, "method": method, "discount": d}
                if method == "harness-kn":
                    row["note"] = "discounts (D1, D2, D3+) by order: " + "; ".join(
                        f"{k}: " + ", ".join(f"{x:.3f}" for x in D) + (" (fallback)" if fb else "")
                        for k, (D, fb) in enumerate(zip(model.discounts, model.fallback), start=1))
                rows_here = [{**row, "phase": "fit", "scope": "train", "items": train.num_items(), "chars": train_chars,
                              "seconds": seconds, "chars_per_s": train_chars / seconds, "repeats": repeats,
                              "spread": ratio, "wide_spread": wide_spread(ratio)}]
                for scope, part in scopes:
                    chars = part.num_predictions()
                    seconds, repeats, ratio = timed(lambda: mean_nll(model, windows(part, order)), device, min_seconds)
                    rows_here.append({**base, "order": order, "method": method, "discount": d, "phase": "score",
                                      "scope": scope, "items": part.num_items(), "chars": chars, "seconds": seconds,
                                      "chars_per_s": chars / seconds, "repeats": repeats,
                                      "spread": ratio, "wide_spread": wide_spread(ratio),
                                      "nll_nats": mean_nll(model, windows(part, order))})
                subset_rows += rows_here
                shown = rows_here[-1]
                log(f"  order {order} {method}" + (f" d={d}" if d is not None else "") +
                    f": fit {rows_here[0]['chars_per_s'] / 1e6:.2f} M chars/s, score {shown['chars_per_s'] / 1e6:.2f} "
                    f"M chars/s, dev NLL {shown['nll_nats']:.4f}")
        rows += subset_rows + nltk_rows
    return rows
