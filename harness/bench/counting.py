"""`python -m harness bench --counting`: characters counted per second, harness against baselines.

For each n-gram order the harness counts the corpus on the chosen device (`count` of
`windows_for`: all windows at once where they fit the memory budget, else chunk by chunk) and,
in the same process on the same names, two baselines count them too:

- `lecture-dict`: the lecture's loop, `b[gram] = b.get(gram, 0) + 1` over zip(chs, chs[1:], ...),
- `nltk-mle`: `nltk.lm.MLE(n).fit(*padded_everygram_pipeline(n, words))`, nltk's own way of
  fitting (it also counts the lower orders and pads both ends, as nltk does).

A throughput is predicted characters (each item's characters plus its end token) per second.
The baselines need Python strings: on a corpus past `baseline_chars` they run on a seeded
sample of rows drawn in proportion to the items' weights (the same names, fewer of them).
With `--expand` (e.g. ssa-births:all: 2.4 G characters) the expansion itself is timed too,
and every row states the memory peak so far. Rows go to counting.csv (merged with rows already
there, so several corpora share one report); counting.md is rendered from that file.
"""
from __future__ import annotations

import time

import torch

from harness.bench.common import LOAD_COLUMNS, sync, timed, wide_spread
from harness.core.constants import LECTURE_SEED
from harness.core.memory import memory_budget, peak_bytes
from harness.data.corpus import Corpus, ExpandedCorpus, expand_corpus, load_corpus
from harness.data.ngrams import WindowStream, count, windows_for

DEFAULT_ORDERS = (2, 3, 4, 5)
QUICK_ORDERS = (2, 3)
DEFAULT_BASELINE_CHARS = 300_000  # covers ssa:2017 (214,764) and names.txt (228,146) whole
QUICK_BASELINE_CHARS = 20_000
METHODS = ("expand", "harness", "harness-stream", "lecture-dict", "nltk-mle")
CSV_COLUMNS = [
    "corpus", "expanded", "method", "order", "chars", "seconds", "chars_per_s", "speedup_vs_lecture",
    "repeats", "spread", "wide_spread", "peak_bytes", "budget_bytes", "note",
    "device", "device_name", "machine", *LOAD_COLUMNS, "load_avg", "torch", "python", "nltk", "git_commit", "timestamp",
]
CSV_KEY = ["corpus", "expanded", "method", "order"]  # a new row replaces an old one with the same key


def lecture_dict_counts(words: list[str], order: int) -> dict:
    """The lecture's counting loop, for any order: boundary-padded characters, one dict update per n-gram."""
    b = {}
    for w in words:
        chs = ["."] * (order - 1) + list(w) + ["."]
        for gram in zip(*(chs[i:] for i in range(order))):
            b[gram] = b.get(gram, 0) + 1
    return b


def nltk_mle_fit(words: list[str], order: int):
    """nltk.lm.MLE of `order` fitted on the words' characters, as nltk's documentation fits it."""
    from nltk.lm import MLE
    from nltk.lm.preprocessing import padded_everygram_pipeline

    train, vocab = padded_everygram_pipeline(order, [list(w) for w in words])
    lm = MLE(order)
    lm.fit(train, vocab)
    return lm


def baseline_words(corpus: Corpus | ExpandedCorpus, max_chars: int, seed: int) -> tuple[list[str], str]:
    """Python strings for the baselines: every row where the corpus is small enough, else a sample.

    Rows are drawn (with replacement) in proportion to the items' weights, so the sample has the
    corpus's distribution of names; the note says which.
    """
    source = corpus.source if isinstance(corpus, ExpandedCorpus) else corpus
    weights = source.item_weights()
    if corpus.num_predictions() <= max_chars:
        words = [w for w, n in zip(source.items, weights.tolist()) for _ in range(n)]
        return words, "all rows"
    mean_chars = corpus.num_predictions() / corpus.num_items()
    rows = max(1, int(max_chars / mean_chars))
    g = torch.Generator().manual_seed(seed)
    picks = torch.multinomial(weights.cpu().to(torch.float64), rows, replacement=True, generator=g).tolist()
    return [source.items[i] for i in picks], f"seeded sample of {rows:,} rows by weight"


def run_counting(corpus_spec: str, orders, device: torch.device, expand: bool, max_memory: int,
                 baseline_chars: int, min_seconds: float, seed: int = LECTURE_SEED, log=print) -> list[dict]:
    """Measure every method of METHODS that applies, for every order; rows without provenance."""
    budget = memory_budget(device, max_memory)
    rows = []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    corpus = load_corpus(corpus_spec, device)
    load_seconds = time.perf_counter() - t0
    weighted_chars = corpus.num_predictions()
    base = {"corpus": corpus.name, "expanded": expand, "budget_bytes": budget}
    log(f"counting: {corpus.name}, {corpus.num_items():,} items ({corpus.num_unique:,} unique), "
        f"{weighted_chars:,} predicted characters, device {device}, chunk budget {budget / 2**30:.2f} GiB "
        f"(loaded in {load_seconds:.1f} s)")
    if expand:
        sync(device)
        t0 = time.perf_counter()
        corpus = expand_corpus(corpus, budget)
        sync(device)
        seconds = time.perf_counter() - t0
        rows.append({**base, "method": "expand", "order": None, "chars": corpus.num_predictions(), "seconds": seconds,
                     "chars_per_s": corpus.num_predictions() / seconds, "repeats": 1, "peak_bytes": peak_bytes(device),
                     "note": f"{corpus.num_items():,} rows, {corpus.tokens.numel():,} tokens as {str(corpus.tokens.dtype).removeprefix('torch.')} "
                             f"({corpus.tokens.numel() * corpus.tokens.element_size() / 2**30:.2f} GiB)"})
        log(f"  expanded to {corpus.num_items():,} rows in {seconds:.1f} s")
    # characters the harness actually processes: every row's when expanded, the unique items' when weighted
    processed = corpus.num_predictions() if expand else int((corpus.lengths + 1).sum())
    words, sample_note = baseline_words(corpus, baseline_chars, seed)
    sample_chars = sum(len(w) + 1 for w in words)
    try:
        nltk_mle_fit(words[:10], 2)  # nltk's first import and fit cost about a second: not counting time
    except ImportError:
        pass
    for order in orders:
        harness_rows = {}
        paths = [("harness", lambda: windows_for(corpus, order, budget))]
        if not expand:
            paths.append(("harness-stream", lambda: WindowStream(corpus, order, budget)))
        for method, make in paths:
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            seconds, repeats, ratio = timed(lambda: count(make()), device, min_seconds)
            kind = "chunked" if isinstance(make(), WindowStream) else "all windows at once"
            harness_rows[method] = {**base, "method": method, "order": order, "chars": processed, "seconds": seconds,
                                    "chars_per_s": processed / seconds, "repeats": repeats,
                                    "spread": ratio, "wide_spread": wide_spread(ratio),
                                    "peak_bytes": peak_bytes(device),
                                    "note": f"{kind}; " + ("every row" if expand else
                                            ("unique items with weights" if corpus.weights is not None else "every item"))}
            log(f"  order {order} {method}: {processed / seconds / 1e6:.1f} M chars/s ({seconds:.3f} s)")
        t0 = time.perf_counter()
        lecture_dict_counts(words, order)
        lecture_s = time.perf_counter() - t0
        lecture = {**base, "method": "lecture-dict", "order": order, "chars": sample_chars, "seconds": lecture_s,
                   "chars_per_s": sample_chars / lecture_s, "repeats": 1, "note": sample_note}
        log(f"  order {order} lecture-dict: {lecture['chars_per_s'] / 1e6:.2f} M chars/s")
        nltk = {**base, "method": "nltk-mle", "order": order, "chars": sample_chars, "repeats": 1, "note": sample_note}
        try:
            t0 = time.perf_counter()
            nltk_mle_fit(words, order)
            nltk_s = time.perf_counter() - t0
            nltk.update(seconds=nltk_s, chars_per_s=sample_chars / nltk_s)
            log(f"  order {order} nltk-mle: {nltk['chars_per_s'] / 1e3:.0f} K chars/s")
        except ImportError:
            nltk["note"] = "nltk not installed (pip install nltk)"
        for row in (*harness_rows.values(), lecture, nltk):
            if row.get("chars_per_s"):
                row["speedup_vs_lecture"] = row["chars_per_s"] / lecture["chars_per_s"]
            rows.append(row)
    return rows
