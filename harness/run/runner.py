"""`python -m harness run`: every configuration of a grid, trained, evaluated, sampled and reported."""
from __future__ import annotations

import datetime as dt
import time
import traceback
from pathlib import Path

import torch

import kernels
from harness.train import distributed
from harness.run import report
from harness.run.config import RunConfig, grid_toml, resolve_device, smoothing_k
from harness.data.corpus import Corpus, expand_corpus, load_corpus
from harness.core.env import environment
from harness.evaluation.evaluate import mean_nll, perplexity
from harness.models.count import dense_table_fits
from harness.data.ngrams import Windows, WindowStream, count, windows_for
from harness.core.memory import memory_budget, parse_bytes
from harness.core.progress import Progress
from harness.evaluation.sampling import sample_batched
from harness.data.splits import FILES_PREFIX, SPLIT_NAMES, load_split_files, split_corpus, write_split
from harness.train.fit import FitResult, GradientSettings, fit_count, fit_gradient


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


def load_data(cfg: RunConfig, device) -> tuple[Corpus, dict[str, Corpus], dict | None]:
    """The corpus and its splits as the run configures them; the overlap of user-given split files."""
    if cfg.split.startswith(FILES_PREFIX):
        return load_split_files(cfg.split, device)
    corpus = load_corpus(cfg.corpus, device, casefold=cfg.casefold, min_char_count=cfg.min_char_count)
    return corpus, make_splits(corpus, cfg), None


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
    """The configurations of a run, in order: order x (count: smoothing | gradient: loss x reg)."""
    grid = []
    for order in cfg.orders:
        for method in cfg.methods:
            if method == "count":
                grid.extend({"order": order, "method": "count", "loss": None, "smoothing_spec": s, "reg": None}
                            for s in cfg.smoothing)
                continue
            losses = ("suffstats",) if cfg.input == "counts" else cfg.losses  # the exact step is plain torch
            grid.extend({"order": order, "method": "gradient", "loss": loss, "smoothing_spec": None, "reg": reg}
                        for loss in losses for reg in cfg.regs)
    return grid


def config_key(point: dict) -> str:
    """A configuration's identity in results.json (what --resume matches on)."""
    if point["method"] == "count":
        return f"order={point['order']} count smoothing={point['smoothing_spec']}"
    return f"order={point['order']} gradient loss={point['loss']} reg={point['reg']!r}"


class Runner:
    """Holds a run's corpus, splits and cached windows; evaluates one configuration at a time."""

    def __init__(self, cfg: RunConfig, device: torch.device):
        self.cfg = cfg
        self.device = device
        self.corpus, self.splits, self.overlap = load_data(cfg, device)
        self._windows: dict[tuple[int, str], Windows] = {}
        self._expanded: dict = {}
        self._count_fits: dict[tuple[int, str], FitResult] = {}

    def rows(self, split: str, budget: int):
        """A split as counted: with --expand every copy a row (expanded once, after the split by unique
        item, so all copies of a name share a split), else the weighted split itself."""
        if not self.cfg.expand:
            return self.splits[split]
        if split not in self._expanded:
            self._expanded[split] = expand_corpus(self.splits[split], budget)
        return self._expanded[split]

    def win(self, order: int, split: str) -> Windows:
        if (order, split) not in self._windows:
            budget = memory_budget(self.device, parse_bytes(self.cfg.max_memory))
            win = windows_for(self.rows(split, budget), order, budget)
            if isinstance(win, WindowStream) and distributed.world_size() > 1:
                win = distributed.summed_stream(win)  # its counts: a shard of rows per rank, summed
            self._windows[(order, split)] = win
        return self._windows[(order, split)]

    def counter(self, win):
        """How `fit_count` counts training windows: a shard per rank, summed, under torchrun (a stream
        sums its own counts); None (plain `count`) in one process or where the table is sparse."""
        if distributed.world_size() > 1 and isinstance(win, Windows) and dense_table_fits(win.vocab_size, win.order):
            return distributed.summed_counts
        return None

    def count_fit(self, order: int, spec: str) -> FitResult:
        """The count model of an order and smoothing spec, fitted once per run."""
        if (order, spec) not in self._count_fits:
            dev = self.win(order, "dev") if "dev" in self.splits else None
            train = self.win(order, "train")
            if spec in ("kn", "wb", "interp"):
                from harness.models.smoothed import fit_smoothed

                start = time.perf_counter()
                model, tuning = fit_smoothed(spec, train, dev)
                fit = FitResult(model, time.perf_counter() - start, tuning)
            else:
                fit = fit_count(train, dev, smoothing_k(spec), self.cfg.k_grid, self.counter(train))
            self._count_fits[(order, spec)] = fit
        return self._count_fits[(order, spec)]

    def reference_count_fit(self, order: int) -> FitResult:
        """The count model a gradient model is compared with: the run's first add-k smoothing (auto when
        none is given); without a dev split to tune on, auto becomes the lecture's k = 1."""
        add_k = [s for s in self.cfg.smoothing if s not in ("kn", "wb", "interp")]
        spec = add_k[0] if add_k else "auto"
        if spec == "auto" and "dev" not in self.splits:
            spec = "1.0"
        return self.count_fit(order, spec)

    def losses_of(self, log_probs: torch.Tensor, order: int) -> dict:
        nll = {s: (mean_nll(log_probs, self.win(order, s)) if s in self.splits else None) for s in SPLIT_NAMES}
        out = {f"{s}_nll": v for s, v in nll.items()}
        out.update({f"{s}_ppl": (perplexity(v) if v is not None else None) for s, v in nll.items()})
        return out

    def samples_of(self, probs, order: int) -> dict:
        generator = torch.Generator(device=self.device).manual_seed(self.cfg.seed)
        if isinstance(probs, torch.Tensor):
            probs = probs.to(self.device)
        samples = sample_batched(probs, order, self.corpus.vocab, self.cfg.samples, generator)
        return {"samples": samples, **sample_stats(samples, self.splits)}

    def evaluate(self, point: dict, progress=None) -> dict:
        order, method = point["order"], point["method"]
        record = {"key": config_key(point), "corpus": self.corpus.name, "order": order, "method": method,
                  "loss": point["loss"], "smoothing_spec": point["smoothing_spec"]}
        if method == "count":
            fit = self.count_fit(order, point["smoothing_spec"])
            k = getattr(fit.model, "k", None)
            record.update(smoothing=k, fit_seconds=fit.fit_seconds, tuning=fit.tuning)
            table = fit.model.log_probs() if hasattr(fit.model, "log_probs") else fit.model
            record.update(self.losses_of(table, order))
            probs = fit.model.probs_float32() if hasattr(fit.model, "probs_float32") else fit.model
            record.update(self.samples_of(probs, order))
            return record
        cfg = self.cfg
        loss = point["loss"]
        record.update(smoothing=None, reg=point["reg"], lr=cfg.lr, steps=cfg.steps, batch_size=cfg.batch_size,
                      input=cfg.input, additive=cfg.additive)
        if loss != "suffstats":
            ok, why = kernels.backend_available(loss, self.device)
            if not ok:
                record.update(status="skipped", error=why)
                return record
        settings = GradientSettings(steps=cfg.steps, lr=cfg.lr, reg=point["reg"], batch_size=cfg.batch_size,
                                    loss=loss if loss != "suffstats" else "torch", input=cfg.input,
                                    additive=cfg.additive, seed=cfg.seed)
        fit = fit_gradient(self.win(order, "train"), settings, self.device, progress=progress)
        log_probs = fit.model.log_probs()
        record.update(fit_seconds=fit.fit_seconds, compile_seconds=fit.compile_seconds,
                      steps_per_second=fit.steps_per_second, train_losses=fit.losses)
        record.update(self.losses_of(log_probs, order))
        count = self.reference_count_fit(order)
        count_losses = self.losses_of(count.model.log_probs(), order)
        ref_split = "dev" if "dev" in self.splits else "train"
        record["count_k"] = count.model.k
        record["count_nll"] = count_losses[f"{ref_split}_nll"]
        record["nll_vs_count"] = record[f"{ref_split}_nll"] - record["count_nll"]
        record["max_prob_diff"] = float((log_probs.exp() - count.model.log_probs().exp()).abs().max())
        record.update(self.samples_of(fit.model.probs_float32(), order))
        return record


def new_results(cfg: RunConfig, runner: Runner, command: str) -> dict:
    return {
        "run": {
            "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "command": command,
            "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.__dict__.items()},
            "environment": environment(runner.device),
            "corpus": {**corpus_stats(runner.corpus, runner.splits), "split": cfg.split, "split_overlap": runner.overlap},
        },
        "results": [],
    }


def run_grid(cfg: RunConfig, out_dir: Path, progress: Progress, command: str, previous: dict | None = None,
             device: torch.device | None = None) -> dict:
    """Run every configuration of `cfg`, writing the results after each one; return the results.

    With `previous` (the results.json of an interrupted run with the same grid) the
    configurations that finished there are kept and only the rest run. A configuration that
    raises is recorded with its error and the others still run; Ctrl-C records the
    interrupted configuration as such and re-raises, with every finished one already on disk.
    `device` is this rank's under torchrun (default: cfg.device); every rank runs the grid, and
    only rank 0 writes files (its `progress` is the only one not quiet).
    """
    device = device or resolve_device(cfg.device)
    writes = distributed.is_main()
    runner = Runner(cfg, device)
    corpus = runner.corpus
    progress.line(f"corpus {corpus.name}: {corpus.num_items():,} items ({corpus.num_unique:,} unique), "
                  f"vocabulary {corpus.vocab.size}, device {device}")
    results = new_results(cfg, runner, command)
    done = {}
    if previous is not None:
        results["run"]["started"] = previous["run"]["started"]
        results["run"]["command"] = previous["run"]["command"]
        results["run"]["resumed"] = previous["run"].get("resumed", []) + [dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")]
        done = {r["key"]: r for r in previous["results"] if r.get("status") in ("ok", "skipped")}
    if corpus.vocab.size <= report.HEATMAP_MAX_V:
        results["run"]["bigram_counts"] = count(runner.win(2, "train")).long().tolist()
    if distributed.world_size() > 1:
        results["run"]["world_size"] = distributed.world_size()
    if writes:
        out_dir.mkdir(parents=True, exist_ok=True)
        results["run"]["split_files"] = write_split(out_dir, runner.splits)
        (out_dir / "grid.toml").write_text(grid_toml(cfg), encoding="utf-8")
    grid = grid_of(cfg)
    records = {}

    def save():
        results["results"] = [records[config_key(p)] for p in grid if config_key(p) in records]
        if writes:
            report.write_run(out_dir, results)

    with progress.bar(len(grid), "configurations") as advance:
        for i, point in enumerate(grid, 1):
            key = config_key(point)
            if key in done:
                records[key] = done[key]
                save()  # kept configurations are results too, wherever they sit in the grid
                progress.line(f"[{i}/{len(grid)}] {describe(done[key])} (kept from the interrupted run)")
                advance()
                continue
            try:
                steps = cfg.steps if point["method"] == "gradient" else 0
                with progress.bar(steps, f"{key}") as step:
                    record = runner.evaluate(point, progress=step)
                record.setdefault("status", "ok")
            except KeyboardInterrupt:
                records[key] = {"key": key, "corpus": corpus.name, **point, "status": "interrupted",
                                "error": "interrupted (Ctrl-C)"}
                save()
                raise
            except Exception as exc:  # noqa: BLE001 - recorded with its traceback; the other configurations still run
                record = {"key": key, "corpus": corpus.name, **point, "status": "failed",
                          "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(limit=4)}
            records[key] = record
            save()
            progress.line(f"[{i}/{len(grid)}] {describe(record)}")
            advance()
    save()
    if writes:
        report.write_run(out_dir, results, figures=True)
    return results


def describe(record: dict) -> str:
    head = f"order {record['order']} {record['method']}"
    if record["method"] == "count":
        spec = record.get("smoothing_spec")
        head += f" smoothing={spec}" + (f" (k={record['smoothing']:g})" if spec == "auto" and record.get("smoothing") is not None else "")
    else:
        head += f" loss={record['loss']} reg={record.get('reg')}"
    if record.get("status") != "ok":
        return f"{head}: {record.get('status')} ({record.get('error')})"
    shown = " ".join(f"{s} {record[f'{s}_nll']:.4f}" for s in SPLIT_NAMES if record.get(f"{s}_nll") is not None)
    return f"{head}: {shown} ({record['fit_seconds']:.2f} s)"
