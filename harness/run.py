"""`python -m harness run`: every configuration of a grid, trained, evaluated, sampled and reported."""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Callable

import torch

from harness import report
from harness.config import RunConfig, resolve_device
from harness.corpus import Corpus, load_corpus
from harness.env import environment
from harness.evaluate import mean_nll, perplexity
from harness.ngrams import Windows, windows
from harness.sampling import sample_batched
from harness.splits import SPLIT_NAMES, split_corpus
from harness.train import fit_count


def corpus_stats(corpus: Corpus, splits: dict[str, Corpus]) -> dict:
    """Sizes a report states: items (with weights), unique items, characters, vocabulary, splits."""
    return {
        "name": corpus.name,
        "items": corpus.num_items(),
        "unique_items": corpus.num_unique,
        "characters": corpus.num_chars(),
        "predicted_characters": corpus.num_predictions(),
        "vocab_size": corpus.vocab.size,
        "vocab": "".join(corpus.vocab.itos[1:]),
        "weighted": corpus.weights is not None,
        "splits": {
            name: {"items": part.num_items(), "unique_items": part.num_unique, "predicted_characters": part.num_predictions()}
            for name, part in splits.items()
        },
    }


def make_splits(corpus: Corpus, cfg: RunConfig) -> dict[str, Corpus]:
    if cfg.split == "none":
        return {"train": corpus}
    return split_corpus(corpus, cfg.seed)


def sample_stats(samples: list[str], splits: dict[str, Corpus]) -> dict:
    """Share of samples that are new (not in train) and that are real held-out names (in dev/test)."""
    if not samples:
        return {"new_share": None, "heldout_share": None}
    train = set(splits["train"].items)
    heldout = set().union(*(set(splits[s].items) for s in ("dev", "test") if s in splits))
    return {
        "new_share": sum(s not in train for s in samples) / len(samples),
        "heldout_share": sum(s in heldout and s not in train for s in samples) / len(samples) if heldout else None,
    }


def run_grid(cfg: RunConfig, out_dir: Path, log: Callable[[str], None], command: str) -> dict:
    """Run every configuration of `cfg`, writing the results after each one; return the results."""
    device = resolve_device(cfg.device)
    started = dt.datetime.now(dt.timezone.utc)
    corpus = load_corpus(cfg.corpus, device)
    splits = make_splits(corpus, cfg)
    log(f"corpus {corpus.name}: {corpus.num_items():,} items ({corpus.num_unique:,} unique), "
        f"vocabulary {corpus.vocab.size}, device {device}")
    results = {
        "run": {
            "started": started.isoformat(timespec="seconds"),
            "command": command,
            "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.__dict__.items()},
            "environment": environment(device),
            "corpus": corpus_stats(corpus, splits),
        },
        "results": [],
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    window_cache: dict[tuple[int, str], Windows] = {}

    def win(order: int, split: str) -> Windows:
        if (order, split) not in window_cache:
            window_cache[(order, split)] = windows(splits[split], order)
        return window_cache[(order, split)]

    grid = [(order, method) for order in cfg.orders for method in cfg.methods]
    for i, (order, method) in enumerate(grid, 1):
        train = win(order, "train")
        dev = win(order, "dev") if "dev" in splits else None
        fit = fit_count(train, dev, cfg.smoothing_value(), cfg.k_grid)
        log_probs = fit.model.log_probs()
        nll = {s: (mean_nll(log_probs, win(order, s)) if s in splits else None) for s in SPLIT_NAMES}
        generator = torch.Generator(device=device).manual_seed(cfg.seed)
        samples = sample_batched(fit.model.probs_float32(), order, corpus.vocab, cfg.samples, generator)
        record = {
            "corpus": corpus.name,
            "order": order,
            "method": method,
            "smoothing": fit.model.k,
            "train_nll": nll["train"],
            "dev_nll": nll["dev"],
            "test_nll": nll["test"],
            "train_ppl": perplexity(nll["train"]),
            "dev_ppl": perplexity(nll["dev"]) if nll["dev"] is not None else None,
            "test_ppl": perplexity(nll["test"]) if nll["test"] is not None else None,
            "fit_seconds": fit.fit_seconds,
            "tuning": fit.tuning,
            "samples": samples,
            **sample_stats(samples, splits),
            "status": "ok",
        }
        results["results"].append(record)
        report.write_run(out_dir, results)
        shown = " ".join(f"{s} {v:.4f}" for s, v in nll.items() if v is not None)
        log(f"[{i}/{len(grid)}] order {order} {method} k={fit.model.k:g}: {shown} ({fit.fit_seconds:.2f} s)")
    return results
