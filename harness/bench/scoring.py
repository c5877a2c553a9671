"""`python -m harness bench --suite scoring`: characters scored per second, the harness against KenLM's query.

For every order, a Kneser-Ney model is fitted on the corpus's seeded train split and the test split
is tiled into one file of about `--scoring-chars` predicted characters. The same file is scored by

    harness-rows       score_file_streamed over the one-lookup form (harness.models.rows): what
                       `score --file` and `score --arpa` use
    harness-backoff    the same over the backoff form (a lookup per order until a hit, harness.models.backoff)
    harness-interp     the same over the interpolated model itself (searchsorted per order)
    kenlm-query        KenLM's `query -v summary` on the model's ARPA file compiled by build_binary, a
                       whole process (start and load included), when --kenlm-bin (or $KENLM_BIN) holds it

Harness rows time the streamed pass alone (reading and encoding the file included, the model's
compilation reported apart as `compile_seconds`); query's row is its wall time. Every row's NLL
must equal harness-rows' within 1e-4 nats, or the row is marked failed. Rows go to scoring.csv
(long format, with provenance); scoring.md is rendered from that file.
"""
from __future__ import annotations

import math
import os
import subprocess
import time
from pathlib import Path

from harness.core.errors import HarnessError

DEFAULT_ORDERS = (3, 5)
DEFAULT_CHARS = 4_000_000
QUICK_CHARS = 300_000
NLL_TOLERANCE = 1e-4
CSV_COLUMNS = ["corpus", "order", "method", "predictions", "seconds", "chars_per_s", "compile_seconds", "nll_nats",
               "status", "note", "command", "threads", "device", "device_name", "machine", "load_avg_start",
               "load_avg", "torch", "python", "git_commit", "timestamp"]
CSV_KEY = ["corpus", "order", "method"]


def add_scoring_arguments(parser) -> None:
    g = parser.add_argument_group("scoring throughput (--suite scoring)")
    g.add_argument("--kenlm-bin", default=os.environ.get("KENLM_BIN"), metavar="DIR",
                   help="with --suite scoring: KenLM's bin folder (query, build_binary) to time against (default $KENLM_BIN)")
    g.add_argument("--scoring-chars", type=int, default=None,
                   help=f"with --suite scoring: predicted characters of the tiled test file (default {DEFAULT_CHARS:,}; "
                        f"{QUICK_CHARS:,} with --quick)")


def _tiled_test(items: list[str], chars: int, folder: Path) -> tuple[Path, Path, int]:
    """The test items repeated to about `chars` predicted characters: plain and space-separated (KenLM)."""
    per_pass = sum(len(s) + 1 for s in items)
    copies = max(1, math.ceil(chars / per_pass))
    text = "\n".join(items) + "\n"
    plain, spaced = folder / "scoring-test.txt", folder / "scoring-test.sp"
    plain.write_text(text * copies, encoding="utf-8")
    spaced.write_text(("\n".join(" ".join(s) for s in items) + "\n") * copies, encoding="utf-8")
    return plain, spaced, per_pass * copies


def _kenlm_tools(folder: str | None) -> tuple[Path | None, str]:
    if not folder:
        return None, "no --kenlm-bin / KENLM_BIN given"
    tools = Path(folder)
    missing = [t for t in ("query", "build_binary") if not (tools / t).is_file()]
    if missing:
        return None, f"{folder} lacks {', '.join(missing)}"
    return tools, ""


def _query(tools: Path, arpa: Path, spaced: Path, predictions: int) -> tuple[float, float]:
    """(seconds, nll nats per prediction) of one `query -v summary` process on the binary form of arpa."""
    binary = arpa.with_suffix(".bin")
    subprocess.run([str(tools / "build_binary"), str(arpa), str(binary)], check=True, capture_output=True)
    start = time.perf_counter()
    with spaced.open("rb") as stdin:
        out = subprocess.run([str(tools / "query"), "-v", "summary", str(binary)], stdin=stdin, check=True,
                             capture_output=True, text=True).stdout
    seconds = time.perf_counter() - start
    ppl = float(out.split("Perplexity including OOVs:")[1].split()[0])
    return seconds, math.log(ppl)  # query's perplexity is 10^(-total/tokens), tokens = our predictions


def run_scoring(corpus_spec: str, orders, chars: int, kenlm_bin: str | None, out_dir: Path, log) -> list[dict]:
    import torch

    from harness.data.corpus import load_corpus
    from harness.data.ngrams import windows
    from harness.data.splits import split_corpus
    from harness.models.arpa import write_arpa
    from harness.models.backoff import score_file_streamed, to_backoff
    from harness.models.rows import compile_rows
    from harness.models.smoothed import KneserNeyModel
    from harness.run.config import RunConfig

    corpus = load_corpus(corpus_spec, "cpu")
    splits = split_corpus(corpus, RunConfig.seed)
    plain, spaced, predictions = _tiled_test(list(splits["test"].items), chars, out_dir)
    tools, why_not = _kenlm_tools(kenlm_bin)
    rows = []
    for order in orders:
        model = KneserNeyModel.fit(windows(splits["train"], order))
        start = time.perf_counter()
        backoff = to_backoff(model)
        backoff_seconds = time.perf_counter() - start
        start = time.perf_counter()
        compiled = compile_rows(backoff)
        rows_seconds = time.perf_counter() - start + backoff_seconds
        forms = [("harness-rows", compiled, rows_seconds), ("harness-backoff", backoff, backoff_seconds),
                 ("harness-interp", model, 0.0)]
        reference = None
        for method, scorer, compile_seconds in forms:
            if scorer is None:
                rows.append({"corpus": corpus.name, "order": order, "method": method, "status": "skipped",
                             "note": "past compile_rows' table limits"})
                continue
            start = time.perf_counter()
            scored = score_file_streamed(scorer, plain, corpus.vocab, device="cpu")
            seconds = time.perf_counter() - start
            reference = scored.mean_nll if reference is None else reference
            rows.append(_row(corpus.name, order, method, predictions, seconds, scored.mean_nll, reference, compile_seconds))
            log(f"order {order} {method}: {predictions / seconds / 1e6:.2f} M chars/s")
        if tools is None:
            rows.append({"corpus": corpus.name, "order": order, "method": "kenlm-query", "status": "skipped", "note": why_not})
            continue
        arpa = out_dir / f"scoring-order{order}.arpa"
        write_arpa(backoff, arpa, corpus.vocab)
        seconds, nll = _query(tools, arpa, spaced, predictions)
        rows.append(_row(corpus.name, order, "kenlm-query", predictions, seconds, nll, reference, None,
                         note="one process: start, binary load, reading the space-separated file"))
        log(f"order {order} kenlm-query: {predictions / seconds / 1e6:.2f} M chars/s")
    return rows


def _row(corpus, order, method, predictions, seconds, nll, reference, compile_seconds, note="") -> dict:
    ok = reference is None or abs(nll - reference) <= NLL_TOLERANCE
    return {"corpus": corpus, "order": order, "method": method, "predictions": predictions, "seconds": seconds,
            "chars_per_s": predictions / seconds, "compile_seconds": compile_seconds, "nll_nats": nll,
            "status": "ok" if ok else "failed", "note": note if ok else f"NLL {nll:.6f} differs from harness-rows' {reference:.6f}"}


def render_scoring(csv_path: Path) -> str:
    """scoring.md from scoring.csv: environment, then chars/s per order and method."""
    from harness.bench.common import read_rows

    df = read_rows(csv_path)
    latest = df.iloc[-1]
    lines = ["# Scoring throughput: the harness against KenLM's query", "",
             f"`{latest['command']}`" if isinstance(latest["command"], str) and latest["command"] else "", "",
             "## Environment", "",
             f"- device: {latest['device']} — {latest['device_name']}; {latest['threads']} torch thread(s)",
             f"- machine: {latest['machine']}; load average (1, 5, 15 min) at start: {latest['load_avg_start']}, "
             f"at the end: {latest['load_avg']}",
             f"- torch {latest['torch']}, python {latest['python']}; git commit {latest['git_commit']}; {latest['timestamp']}",
             "", "Predicted characters (every character and each line's end) per second over one tiled test file; "
                 "harness rows time the streamed pass in process, kenlm-query a whole `query` process on build_binary's form.",
             "", "## Results", ""]
    shown = df[["corpus", "order", "method", "predictions", "seconds", "chars_per_s", "compile_seconds", "nll_nats", "status", "note"]]
    lines.append(shown.astype(object).where(shown.notna(), "").to_markdown(index=False, floatfmt=".4g"))
    return "\n".join(lines) + "\n"


def scoring_main(args) -> int:
    """`bench --suite scoring`: measure, merge into scoring.csv, render scoring.md; 1 when a row failed."""
    import torch

    from harness.bench.common import command_line, load_avg, out_dir_for, parse_orders, parse_threads, provenance, torch_threads, write_rows

    if args.device not in ("auto", "cpu"):
        raise HarnessError("bench --suite scoring measures the CPU path (KenLM's query is a CPU program); use --device cpu")
    device = torch.device("cpu")
    orders = parse_orders(args.orders, (3,) if args.quick else DEFAULT_ORDERS)
    chars = args.scoring_chars or (QUICK_CHARS if args.quick else DEFAULT_CHARS)
    if chars <= 0:
        raise HarnessError(f"--scoring-chars must be > 0, got {chars}")
    out_dir = out_dir_for(args.out, "scoring", device)
    out_dir.mkdir(parents=True, exist_ok=True)
    load_start = load_avg()
    threads, _ = parse_threads(args.threads, 1)  # one thread by default: KenLM's query, the peer, runs on one
    with torch_threads(threads):
        rows = run_scoring(args.corpus, orders, chars, args.kenlm_bin, out_dir, lambda line: print(line, flush=True))
        prov = provenance(device)
    prov.update(load_avg_start=load_start, threads=threads, command=command_line())
    write_rows([{**r, **prov} for r in rows], out_dir / "scoring.csv", CSV_COLUMNS, key=CSV_KEY)
    (out_dir / "scoring.md").write_text(render_scoring(out_dir / "scoring.csv"))
    print(f"report: {out_dir / 'scoring.md'}", flush=True)
    return 1 if any(r.get("status") == "failed" for r in rows) else 0
