"""`python -m harness run`: every configuration of a grid, trained, evaluated, sampled and reported."""
from __future__ import annotations

import datetime as dt
import time
import traceback
from pathlib import Path

import torch

from harness.train import distributed
from harness.run import report
from harness.run.config import RunConfig, grid_toml, resolve_device
from harness.data.corpus import Corpus, expand_corpus, load_corpus
from harness.core.env import environment
from harness.evaluation.evaluate import corpus_nll, item_nll, mean_nll, perplexity
from harness.evaluation.intervals import nll_interval
from harness.models.families import (FAMILIES, SMOOTHED_METHODS, TUNED_K, FitData, Fitted, Skipped, count_point,
                                     family, fit_configuration)
from harness.models.protocol import LanguageModel
from harness.models.tables import dense_table_fits
from harness.data.ngrams import Windows, WindowStream, count, windows_for
from harness.core.memory import memory_budget, parse_bytes
from harness.core.progress import Progress
from harness.evaluation.sampling import sample_batched
from harness.run.models_io import save_fitted
from harness.data.splits import FILES_PREFIX, SPLIT_NAMES, load_split_files, split_corpus, write_split


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


def split_items(splits: dict[str, Corpus]) -> dict:
    """Per held-out split, each unique item's predicted characters and copies, in split order: with the
    records' `item_nll` this is what a bootstrap over items needs, at report time too."""
    return {s: {"chars": (part.lengths + 1).tolist(), "copies": part.item_weights().tolist()}
            for s, part in splits.items() if s != "train"}


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
    """The configurations of a run, in order: order x method x the family's own points."""
    return [point for order in cfg.orders for method in cfg.methods for point in FAMILIES[method].points(cfg, order)]


def config_key(point: dict) -> str:
    """A configuration's identity in results.json (what --resume matches on)."""
    return family(point["method"]).key(point)


class Runner:
    """Holds a run's corpus, splits and cached windows; evaluates one configuration at a time."""

    def __init__(self, cfg: RunConfig, device: torch.device):
        self.cfg = cfg
        self.device = device
        self.corpus, self.splits, self.overlap = load_data(cfg, device)
        self._windows: dict[tuple[int, str], Windows] = {}
        self._expanded: dict = {}
        self._kept_fits: dict[str, Fitted] = {}
        self.save_to: Path | None = None  # the run folder each fitted model is saved into (rank 0 only)

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

    def fit(self, point: dict, progress=None) -> Fitted:
        """Fit a configuration through the one fit path; a reused family's (count models, the gradient
        models' reference) once per run."""
        order = point["order"]
        train = self.win(order, "train")
        data = FitData(train, self.win(order, "dev") if "dev" in self.splits else None, self.device, self.cfg,
                       counter=self.counter(train), progress=progress, vocab=self.corpus.vocab)
        if not family(point["method"]).reused:
            return fit_configuration(point, data)
        key = config_key(point)
        if key not in self._kept_fits:
            self._kept_fits[key] = fit_configuration(point, data)
        return self._kept_fits[key]

    def reference_count_fit(self, order: int) -> Fitted:
        """The count model a gradient model is compared with: the run's first add-k smoothing (auto when
        none is given); without a dev split to tune on, auto becomes the lecture's k = 1."""
        add_k = [s for s in self.cfg.smoothing if s not in SMOOTHED_METHODS]
        spec = add_k[0] if add_k else TUNED_K
        if spec == TUNED_K and "dev" not in self.splits:
            spec = "1.0"
        return self.fit(count_point(order, spec))

    def nll_of(self, model: LanguageModel, split: str) -> float:
        """A split's mean NLL: an n-gram model over its order's (cached, maybe streamed) windows, any
        other over the split's items."""
        if model.order is None:
            return corpus_nll(model, self.splits[split])
        return mean_nll(model, self.win(model.order, split))

    def losses_of(self, model: LanguageModel, intervals: bool = True) -> dict:
        """Each split's mean NLL and perplexity; with `intervals`, its 95 % bootstrap interval over items
        (`{split}_nll_ci`) and the dev/test per-item NLLs (`item_nll`) that paired comparisons need."""
        nll = {s: (self.nll_of(model, s) if s in self.splits else None) for s in SPLIT_NAMES}
        out = {f"{s}_nll": v for s, v in nll.items()}
        out.update({f"{s}_ppl": (perplexity(v) if v is not None else None) for s, v in nll.items()})
        if intervals:
            per_item = {}
            for s in SPLIT_NAMES:
                if s not in self.splits:
                    out[f"{s}_nll_ci"] = None
                    continue
                split = self.splits[s]
                summed, chars = item_nll(model, split)
                out[f"{s}_nll_ci"] = nll_interval(summed, chars, split.item_weights(), seed=self.cfg.seed).as_list()
                if s != "train":
                    per_item[s] = summed.tolist()
            out["item_nll"] = per_item
        return out

    def samples_of(self, model: LanguageModel) -> dict:
        generator = torch.Generator(device=self.device).manual_seed(self.cfg.seed)
        samples = sample_batched(model, self.corpus.vocab, self.cfg.samples, generator)
        return {"samples": samples, **sample_stats(samples, self.splits)}

    def compared_with_count(self, model: LanguageModel, own_nll: dict) -> dict:
        """How far a model lies from the run's add-k count model of its order (its reference)."""
        count = self.reference_count_fit(model.order).model
        ref_split = "dev" if "dev" in self.splits else "train"
        count_nll = self.losses_of(count, intervals=False)[f"{ref_split}_nll"]
        return {"count_k": count.settings()["smoothing"], "count_nll": count_nll,
                "nll_vs_count": own_nll[f"{ref_split}_nll"] - count_nll,
                "max_prob_diff": float((model.log_prob_table().exp() - count.log_prob_table().exp()).abs().max())}

    def evaluate(self, point: dict, progress=None) -> dict:
        fam = family(point["method"])
        record = {"key": config_key(point), "corpus": self.corpus.name, "order": point["order"], "method": point["method"],
                  "loss": point["loss"], "smoothing_spec": point["smoothing_spec"], **fam.fields(point, self.cfg)}
        try:
            fit = self.fit(point, progress)
        except Skipped as why:
            record.update(status="skipped", error=str(why))
            return record
        record.update(fit.record)
        if self.save_to is not None:  # RUN/models/<key>.pt, what score/sample/export --model load
            record["model_file"] = save_fitted(self.save_to, point, record["key"], fit.model, self.corpus.vocab,
                                               self.splits["train"], record)
        record.update(self.losses_of(fit.model))
        if fam.compare_with_count:
            record.update(self.compared_with_count(fit.model, record))
        record.update(self.samples_of(fit.model))
        return record


def new_results(cfg: RunConfig, runner: Runner, command: str) -> dict:
    return {
        "run": {
            "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "command": command,
            "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.__dict__.items()},
            "environment": environment(runner.device),
            "corpus": {**corpus_stats(runner.corpus, runner.splits), "split": cfg.split, "split_overlap": runner.overlap},
            "split_items": split_items(runner.splits),
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
    runner.save_to = out_dir if writes else None
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
                steps = family(point["method"]).steps(cfg)
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
        head += f" smoothing={spec}" + (f" (k={record['smoothing']:g})" if spec == TUNED_K and record.get("smoothing") is not None else "")
    elif record["method"] == "arpa":
        head += f" {record.get('arpa')}"
    else:
        head += f" loss={record['loss']} reg={record.get('reg')}"
    if record.get("status") != "ok":
        return f"{head}: {record.get('status')} ({record.get('error')})"
    shown = " ".join(f"{s} {record[f'{s}_nll']:.4f}" for s in SPLIT_NAMES if record.get(f"{s}_nll") is not None)
    return f"{head}: {shown} ({record['fit_seconds']:.2f} s)"
