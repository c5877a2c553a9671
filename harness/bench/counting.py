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

import argparse
import datetime as dt
import time
from pathlib import Path

import torch

from harness.data.corpus import Corpus, ExpandedCorpus, load_corpus
from harness.core.env import environment
from harness.core.errors import HarnessError
from harness.core.memory import memory_budget, parse_bytes, peak_bytes
from harness.data.ngrams import WindowStream, count, windows_for

DEFAULT_ORDERS = (2, 3, 4, 5)
QUICK_ORDERS = (2, 3)
DEFAULT_BASELINE_CHARS = 300_000  # covers ssa:2017 (214,764) and names.txt (228,146) whole
QUICK_BASELINE_CHARS = 20_000
METHODS = ("expand", "harness", "harness-stream", "lecture-dict", "nltk-mle")
CSV_COLUMNS = [
    "corpus", "expanded", "method", "order", "chars", "seconds", "chars_per_s", "speedup_vs_lecture",
    "repeats", "peak_bytes", "budget_bytes", "note",
    "device", "device_name", "machine", "load_avg", "torch", "python", "nltk", "git_commit", "timestamp",
]


def add_counting_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `bench --counting` that the loss benchmark does not have."""
    g = parser.add_argument_group("counting throughput (--counting)")
    g.add_argument("--counting", action="store_true",
                   help="characters counted per second for orders 2-5 against the lecture's dict loop and nltk.lm.MLE "
                        "(writes counting.csv and counting.md; --corpus, --orders, --device, --out, --quick apply)")
    g.add_argument("--expand", action="store_true", help="count the corpus with every copy of a weighted item as a row")
    g.add_argument("--max-memory", default="auto",
                   help="byte budget of chunked passes, e.g. 4G (default auto: a quarter of the free device memory)")
    g.add_argument("--baseline-chars", type=int, default=None,
                   help=f"predicted characters the baselines count at most (default {DEFAULT_BASELINE_CHARS:,}; "
                        f"{QUICK_BASELINE_CHARS:,} with --quick)")


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


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(step, device: torch.device, min_seconds: float, max_repeats: int = 50) -> tuple[float, int]:
    """Median seconds of `step` over repeats until `min_seconds` have passed (at least one, after one untimed
    call when a call is short): a 60 s pass over an expanded corpus runs once."""
    times = []
    t0 = time.perf_counter()
    step()
    _sync(device)
    first = time.perf_counter() - t0
    if first >= min_seconds:
        return first, 1
    spent = 0.0
    while spent < min_seconds and len(times) < max_repeats:
        t0 = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - t0)
        spent += times[-1]
    return float(torch.tensor(times, dtype=torch.float64).median()), len(times)


def run_counting(corpus_spec: str, orders, device: torch.device, expand: bool, max_memory: int,
                 baseline_chars: int, min_seconds: float, seed: int = 2147483647, log=print) -> list[dict]:
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
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        source = corpus
        from harness.data.corpus import expand_corpus

        corpus = expand_corpus(source, budget)
        _sync(device)
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
            seconds, repeats = timed(lambda: count(make()), device, min_seconds)
            kind = "chunked" if isinstance(make(), WindowStream) else "all windows at once"
            harness_rows[method] = {**base, "method": method, "order": order, "chars": processed, "seconds": seconds,
                                    "chars_per_s": processed / seconds, "repeats": repeats,
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


def provenance(device: torch.device) -> dict:
    env = environment(device)
    try:
        import nltk

        nltk_version = nltk.__version__
    except ImportError:
        nltk_version = "not installed"
    try:  # a shared machine's other work slows every method; the report states it
        load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        load = "unknown"
    return {"device": env["device"], "device_name": env["device_name"], "machine": env["machine"], "load_avg": load,
            "torch": env["torch"],
            "python": env["python"], "nltk": nltk_version, "git_commit": env["git_commit"],
            "timestamp": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}


def write_rows(rows: list[dict], csv_path: Path) -> None:
    """Write rows to counting.csv, replacing earlier rows of the same corpus, expansion, method and order."""
    import pandas as pd

    new = pd.DataFrame(rows).reindex(columns=CSV_COLUMNS)
    if csv_path.exists():
        old = pd.read_csv(csv_path, keep_default_na=False, na_values=[""])
        key = ["corpus", "expanded", "method", "order"]
        new_keys = set(map(tuple, new[key].astype(str).values.tolist()))
        old = old[[tuple(k) not in new_keys for k in old[key].astype(str).values.tolist()]]
        new = pd.concat([old.reindex(columns=CSV_COLUMNS), new], ignore_index=True)
    new.to_csv(csv_path, index=False)


def _gib(x) -> str:
    return "—" if x is None or x != x else f"{x / 2**30:.2f} GiB"


def render_markdown(csv_path: Path, commands: list[str] | None = None) -> str:
    """counting.md from counting.csv: environment, then one section per corpus (and expansion)."""
    import pandas as pd

    df = pd.read_csv(csv_path, keep_default_na=False, na_values=[""])
    first = df.iloc[-1]
    lines = ["# Counting throughput", ""]
    if commands:
        lines += [f"`{c}`" for c in commands] + [""]
    lines += ["## Environment", "",
              f"- device: {first['device']} — {first['device_name']}",
              f"- machine: {first['machine']}; load average (1, 5, 15 min) when the latest rows were written: {first['load_avg']}",
              f"- torch {first['torch']}, python {first['python']}, nltk {first['nltk']}",
              f"- git commit: {first['git_commit']}; latest rows {first['timestamp']}", "",
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
                                       f"{_rate(r.chars_per_s)} ({r.speedup_vs_lecture:.{1 if r.speedup_vs_lecture >= 1 else 3}f}×)")
                                      for r in measured.itertuples()])
        table = cells.pivot_table(index="order", columns="method", values="cell", aggfunc="first")
        table = table[[m for m in METHODS if m in table.columns]]
        lines += ["Characters per second (× the lecture's dict loop):", "", table.to_markdown(), ""]
        detail = measured[measured["method"].str.startswith("harness")]
        lines += ["Harness passes:", "", pd.DataFrame({
            "order": detail["order"], "method": detail["method"], "characters": detail["chars"].map("{:,}".format),
            "seconds": detail["seconds"].map("{:.3f}".format), "repeats": detail["repeats"],
            "peak memory": detail["peak_bytes"].map(_gib), "chunk budget": detail["budget_bytes"].map(_gib),
            "how": detail["note"],
        }).to_markdown(index=False), ""]
        notes = sorted(set(measured.loc[measured["method"].isin(["lecture-dict", "nltk-mle"]), "note"]))
        chars = sorted(set(measured.loc[measured["method"] == "lecture-dict", "chars"]))
        lines += [f"Baselines: {', '.join(notes)}; {', '.join(f'{c:,}' for c in chars)} predicted characters.", ""]
    return "\n".join(lines) + "\n"


def _rate(x: float) -> str:
    return f"{x / 1e9:.2f} G/s" if x >= 1e9 else (f"{x / 1e6:.1f} M/s" if x >= 1e6 else f"{x / 1e3:.0f} K/s")


def counting_main(args: argparse.Namespace) -> int:
    """`bench --counting`: measure, merge into counting.csv, render counting.md."""
    import shlex
    import sys

    from harness.bench.loss import device_kind, parse_orders, resolve_device

    device = resolve_device(args.device)
    orders = parse_orders(args.orders, QUICK_ORDERS if args.quick else DEFAULT_ORDERS)
    baseline_chars = args.baseline_chars or (QUICK_BASELINE_CHARS if args.quick else DEFAULT_BASELINE_CHARS)
    if baseline_chars < 1:
        raise HarnessError(f"--baseline-chars must be >= 1, got {baseline_chars}")
    max_memory = parse_bytes(args.max_memory)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    out_dir = Path(args.out) if args.out else Path("reports") / f"counting-{device_kind(device)}-{stamp}"
    out_dir.mkdir(parents=True, exist_ok=True)
    log = lambda line: print(line, flush=True)  # noqa: E731
    rows = run_counting(args.corpus, orders, device, args.expand, max_memory, baseline_chars,
                        min_seconds=0.2 if args.quick else 1.0, log=log)
    prov = provenance(device)
    write_rows([{**r, **prov} for r in rows], out_dir / "counting.csv")
    command = "python -m harness " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["bench"] else ""
    commands_file = out_dir / "counting-commands.txt"
    commands = commands_file.read_text().splitlines() if commands_file.exists() else []
    if command and command not in commands:
        commands.append(command)
        commands_file.write_text("\n".join(commands) + "\n")
    (out_dir / "counting.md").write_text(render_markdown(out_dir / "counting.csv", commands))
    print(f"report: {out_dir / 'counting.md'}", flush=True)
    return 0
