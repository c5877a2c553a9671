"""`python -m harness run`: every configuration of a grid, trained, evaluated, sampled and reported."""
from __future__ import annotations

import datetime as dt
import traceback
from pathlib import Path
from typing import Callable

import torch

import kernels
from harness import report
from harness.config import RunConfig, resolve_device
from harness.corpus import Corpus, load_corpus
from harness.env import environment
from harness.evaluate import mean_nll, perplexity
from harness.ngrams import Windows, windows
from harness.sampling import sample_batched
from harness.splits import SPLIT_NAMES, split_corpus
from harness.train import FitResult, GradientSettings, fit_count, fit_gradient


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


def grid_of(cfg: RunConfig) -> list[dict]:
    """The configurations of a run, in order: one per order x method (x loss backend for gradient)."""
    grid = []
    for order in cfg.orders:
        for method in cfg.methods:
            if method == "count":
                grid.append({"order": order, "method": "count", "loss": None})
            elif cfg.input == "counts":  # sufficient statistics: plain torch on the count table
                grid.append({"order": order, "method": "gradient", "loss": "suffstats"})
            else:
                grid.extend({"order": order, "method": "gradient", "loss": loss} for loss in cfg.losses)
    return grid


def config_key(point: dict) -> str:
    return f"order={point['order']} method={point['method']} loss={point['loss']}"


class Runner:
    """Holds a run's corpus, splits and cached windows; evaluates one configuration at a time."""

    def __init__(self, cfg: RunConfig, device: torch.device):
        self.cfg = cfg
        self.device = device
        self.corpus = load_corpus(cfg.corpus, device)
        self.splits = make_splits(self.corpus, cfg)
        self._windows: dict[tuple[int, str], Windows] = {}
        self._count_fits: dict[int, FitResult] = {}

    def win(self, order: int, split: str) -> Windows:
        if (order, split) not in self._windows:
            self._windows[(order, split)] = windows(self.splits[split], order)
        return self._windows[(order, split)]

    def count_fit(self, order: int) -> FitResult:
        """The count model of an order (tuned as the run says), fitted once per run."""
        if order not in self._count_fits:
            dev = self.win(order, "dev") if "dev" in self.splits else None
            self._count_fits[order] = fit_count(self.win(order, "train"), dev, self.cfg.smoothing_value(), self.cfg.k_grid)
        return self._count_fits[order]

    def losses_of(self, log_probs: torch.Tensor, order: int) -> dict:
        nll = {s: (mean_nll(log_probs, self.win(order, s)) if s in self.splits else None) for s in SPLIT_NAMES}
        out = {f"{s}_nll": v for s, v in nll.items()}
        out.update({f"{s}_ppl": (perplexity(v) if v is not None else None) for s, v in nll.items()})
        return out

    def samples_of(self, probs: torch.Tensor, order: int) -> dict:
        generator = torch.Generator(device=self.device).manual_seed(self.cfg.seed)
        samples = sample_batched(probs.to(self.device), order, self.corpus.vocab, self.cfg.samples, generator)
        return {"samples": samples, **sample_stats(samples, self.splits)}

    def evaluate(self, point: dict, progress=None) -> dict:
        order, method = point["order"], point["method"]
        record = {"corpus": self.corpus.name, "order": order, "method": method, "loss": point["loss"]}
        if method == "count":
            fit = self.count_fit(order)
            record.update(smoothing=fit.model.k, fit_seconds=fit.fit_seconds, tuning=fit.tuning)
            record.update(self.losses_of(fit.model.log_probs(), order))
            record.update(self.samples_of(fit.model.probs_float32(), order))
            return record
        cfg = self.cfg
        loss = point["loss"]
        record.update(smoothing=None, reg=cfg.reg, lr=cfg.lr, steps=cfg.steps, batch_size=cfg.batch_size,
                      input=cfg.input, additive=cfg.additive)
        if loss != "suffstats":
            ok, why = kernels.backend_available(loss, self.device)
            if not ok:
                record.update(status="skipped", error=why)
                return record
        settings = GradientSettings(steps=cfg.steps, lr=cfg.lr, reg=cfg.reg, batch_size=cfg.batch_size,
                                    loss=loss if loss != "suffstats" else "torch", input=cfg.input,
                                    additive=cfg.additive, seed=cfg.seed)
        fit = fit_gradient(self.win(order, "train"), settings, self.device, progress=progress)
        log_probs = fit.model.log_probs()
        record.update(fit_seconds=fit.fit_seconds, steps_per_second=fit.steps_per_second,
                      train_losses=fit.losses)
        record.update(self.losses_of(log_probs, order))
        count = self.count_fit(order)
        count_losses = self.losses_of(count.model.log_probs(), order)
        ref_split = "dev" if "dev" in self.splits else "train"
        record["count_k"] = count.model.k
        record["count_nll"] = count_losses[f"{ref_split}_nll"]
        record["nll_vs_count"] = record[f"{ref_split}_nll"] - record["count_nll"]
        record["max_prob_diff"] = float((log_probs.exp() - count.model.log_probs().exp()).abs().max())
        record.update(self.samples_of(fit.model.probs_float32(), order))
        return record


def run_grid(cfg: RunConfig, out_dir: Path, log: Callable[[str], None], command: str) -> dict:
    """Run every configuration of `cfg`, writing the results after each one; return the results.

    A configuration that raises is recorded with its error and the others still run; Ctrl-C
    stops the run with every finished configuration already on disk.
    """
    device = resolve_device(cfg.device)
    started = dt.datetime.now(dt.timezone.utc)
    runner = Runner(cfg, device)
    corpus = runner.corpus
    log(f"corpus {corpus.name}: {corpus.num_items():,} items ({corpus.num_unique:,} unique), "
        f"vocabulary {corpus.vocab.size}, device {device}")
    results = {
        "run": {
            "started": started.isoformat(timespec="seconds"),
            "command": command,
            "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.__dict__.items()},
            "environment": environment(device),
            "corpus": corpus_stats(corpus, runner.splits),
        },
        "results": [],
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    grid = grid_of(cfg)
    for i, point in enumerate(grid, 1):
        try:
            record = runner.evaluate(point)
            record.setdefault("status", "ok")
        except Exception as exc:  # noqa: BLE001 - recorded with its traceback; the other configurations still run
            record = {"corpus": corpus.name, **point, "status": "failed", "error": f"{type(exc).__name__}: {exc}",
                      "traceback": traceback.format_exc(limit=3)}
        results["results"].append(record)
        report.write_run(out_dir, results)
        log(f"[{i}/{len(grid)}] {describe(record)}")
    return results


def describe(record: dict) -> str:
    head = f"order {record['order']} {record['method']}"
    if record["method"] == "count":
        head += f" k={record['smoothing']:g}"
    else:
        head += f" loss={record['loss']}"
    if record.get("status") != "ok":
        return f"{head}: {record.get('status')} ({record.get('error')})"
    shown = " ".join(f"{s} {record[f'{s}_nll']:.4f}" for s in SPLIT_NAMES if record.get(f"{s}_nll") is not None)
    return f"{head}: {shown} ({record['fit_seconds']:.2f} s)"
