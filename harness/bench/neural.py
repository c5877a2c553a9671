"""Neural training steps through each loss backend: part of `bench --suite train`.

For every neural family (makemore.py's default sizes) and every loss backend that can run on
the device, one untimed warm-up fit (so `compiled` has compiled, and caches are warm), then a
timed fit of `steps` minibatch AdamW steps on the corpus's train split with no dev scoring.
Before a row counts, its per-step losses are checked against the `torch` backend's from the
same seed (the fused backends must follow F.cross_entropy); a mismatch is a failed row.
Writes neural.csv (long format, one row per family x backend) and neural.md rendered from it.
"""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import torch

import kernels
from harness.bench.common import provenance, write_rows
from harness.data.corpus import load_corpus
from harness.data.splits import split_corpus
from harness.models.neural.common import NeuralSettings
from harness.models.neural.families import FAMILIES
from harness.train.neural import fit_neural

BACKENDS = ("torch", "compiled", "triton", "manual")
STEPS, QUICK_STEPS = 100, 20
LOSS_RTOL = 1e-4  # per-step loss of a backend against torch's, same seed (fp32 reductions differ in order)
CSV_COLUMNS = ["family", "backend", "status", "steps", "batch_size", "parameters", "seconds", "steps_per_second",
               "tokens_per_second", "vs_torch", "max_loss_rel_diff", "threads", "note", "corpus", "device",
               "device_name", "machine", "load_avg", "torch", "triton", "python", "git_commit", "timestamp"]


def run_neural_bench(corpus_spec: str, device: torch.device, quick: bool, seed: int, log=print,
                     families=tuple(FAMILIES), backends=BACKENDS, sizes: dict | None = None) -> list[dict]:
    """One row per family x backend: steps/s and predicted tokens/s of timed training steps.

    sizes: NeuralSettings fields to change from makemore.py's defaults (tests pass tiny ones)."""
    corpus = load_corpus(corpus_spec, device)
    train = split_corpus(corpus, seed)["train"]
    steps = QUICK_STEPS if quick else STEPS
    base = NeuralSettings(**{"steps": steps, "warmup_steps": min(10, steps), "eval_interval": steps, "seed": seed,
                             "patience": 0, **(sizes or {})})
    prov = provenance(device)
    rows = []
    for family in families:
        reference = None
        for backend in backends:
            row = {"family": family, "backend": backend, "steps": steps, "batch_size": base.batch_size,
                   "corpus": corpus.name, **prov}
            ok, why = kernels.backend_available(backend, device)
            if not ok:
                rows.append({**row, "status": "skipped", "note": why})
                continue
            settings = replace(base, loss=backend)
            fit_neural(family, replace(settings, steps=2, eval_interval=2, warmup_steps=1), train, None, device)
            started = time.perf_counter()
            fit = fit_neural(family, settings, train, None, device)
            seconds = time.perf_counter() - started
            losses = torch.tensor(fit.train_losses, dtype=torch.float64)
            if reference is None and backend == "torch":
                reference = (losses, fit.steps_per_second)
            diff = float(((losses - reference[0]).abs() / reference[0].abs()).max()) if reference else None
            status = "ok" if diff is None or diff <= LOSS_RTOL else "failed"
            rows.append({**row, "status": status, "parameters": fit.num_parameters, "seconds": seconds,
                         "steps_per_second": fit.steps_per_second, "tokens_per_second": fit.tokens_per_second,
                         "vs_torch": fit.steps_per_second / reference[1] if reference else None,
                         "max_loss_rel_diff": diff, "threads": fit.threads,
                         "note": "" if status == "ok" else f"per-step loss differs from torch's by {diff:.2e} (> {LOSS_RTOL:g})"})
            log(f"  {family:12s} {backend:9s} {fit.steps_per_second:8.1f} steps/s {fit.tokens_per_second:10,.0f} tokens/s"
                + (f"  ({rows[-1]['note']})" if status != "ok" else ""))
    return rows


def render_neural(csv_path: Path, command: str) -> str:
    """neural.md from neural.csv: an environment line, then one table row per family x backend."""
    import pandas as pd

    frame = pd.read_csv(csv_path, keep_default_na=False)
    first = frame.iloc[0]
    cell = lambda spec: lambda x: format(float(x), spec) if x != "" else ""  # noqa: E731 - a skipped row's cells stay empty
    shown = pd.DataFrame({
        "family": frame["family"], "backend": frame["backend"], "status": frame["status"],
        "parameters": frame["parameters"].map(cell(",.0f")), "steps": frame["steps"],
        "steps/s": frame["steps_per_second"].map(cell(".1f")), "tokens/s": frame["tokens_per_second"].map(cell(",.0f")),
        "vs torch": frame["vs_torch"].map(cell(".2f")), "max loss rel. diff": frame["max_loss_rel_diff"].map(cell(".1e")),
        "threads": frame["threads"].map(cell(".0f")), "note": frame["note"]})
    return "\n".join([
        "# Neural training steps per loss backend", "",
        f"- command: `{command}`",
        f"- device: {first['device']} — {first['device_name']}; machine {first['machine']}; load {first['load_avg']}",
        f"- torch {first['torch']}, triton {first['triton']}, commit {first['git_commit']}, {first['timestamp']}",
        f"- corpus {first['corpus']} (train split), batch {first['batch_size']} names, AdamW, no dev scoring; "
        "one untimed warm-up fit per row (compile time excluded)", "",
        shown.to_markdown(index=False, disable_numparse=True), ""])


def neural_train_bench(corpus_spec: str, device: torch.device, quick: bool, seed: int, out_dir: Path, command: str,
                       log=print) -> list[dict]:
    """Measure, write neural.csv and neural.md into out_dir; the rows (failed ones included)."""
    log(f"bench train (neural): {', '.join(FAMILIES)} x {', '.join(BACKENDS)} on {device}")
    rows = run_neural_bench(corpus_spec, device, quick, seed, log)
    write_rows(rows, out_dir / "neural.csv", CSV_COLUMNS)
    (out_dir / "neural.md").write_text(render_neural(out_dir / "neural.csv", command), encoding="utf-8")
    return rows
