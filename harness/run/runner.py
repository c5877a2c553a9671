"""`python -m harness run`: every configuration of a grid, trained, evaluated, sampled and reported."""
from __future__ import annotations

import datetime as dt
import re
import traceback
from pathlib import Path

import torch

from harness.train import distributed
from harness.train.fit import one_cpu_thread
from harness.run import report
from harness.run.config import RunConfig, grid_toml, resolve_device
from harness.data.corpus import Corpus, expand_corpus, load_corpus
from harness.core import jsonio
from harness.core.env import cpu_cores, environment, load_average
from harness.core.errors import HarnessError
from harness.core.rundir import content_hash
from harness.evaluation.evaluate import corpus_nll, item_nll, mean_nll, perplexity
from harness.evaluation.intervals import nll_interval
from harness.models.families import (FAMILIES, MIX, MIX_SOURCES, NEURAL_METHODS, SMOOTHED_METHODS, TUNED_K, FitData,
                                     Fitted, Skipped, count_point, family, fit_configuration)
from harness.models.protocol import LanguageModel, NGramModel
from harness.models.tables import dense_table_fits
from harness.data.ngrams import Windows, WindowStream, count, windows_for
from harness.core.memory import memory_budget, parse_bytes
from harness.core.progress import Progress
from harness.evaluation.sampling import SamplingControls, sample_names
from harness.run.models_io import save_fitted
from harness.data.splits import FILES_PREFIX, SPLIT_NAMES, load_split_files, split_corpus, write_split

REPEAT_UNDER_SECONDS = 1.0  # fits shorter than this are timed again, for a noise band of their time
REPEATED_FITS = 5


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
    """The configurations of a run, in order: order x method x the family's own points, then the points
    of the families fitted once per run (the neural ones: order None), then --mix's mixture of them."""
    per_order = [point for order in cfg.orders for method in cfg.methods if FAMILIES[method].per_order
                 for point in FAMILIES[method].points(cfg, order)]
    return per_order + [point for method in (*cfg.methods, MIX) if not FAMILIES[method].per_order
                        for point in FAMILIES[method].points(cfg, None)]


def config_key(point: dict) -> str:
    """A configuration's identity in results.json (what --resume matches on)."""
    return family(point["method"]).key(point)


def checkpoint_name(key: str) -> str:
    """A configuration's key as the name of its folder under RUN/checkpoints/."""
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", key)


class Runner:
    """Holds a run's corpus, splits and cached windows; evaluates one configuration at a time."""

    def __init__(self, cfg: RunConfig, device: torch.device):
        self.cfg = cfg
        self.device = device
        self.corpus, self.splits, self.overlap = load_data(cfg, device)
        if cfg.prefix:
            self.corpus.vocab.encode(cfg.prefix)  # a --prefix character outside the vocabulary: one line, before any fit
        self._windows: dict[tuple[int, str], Windows] = {}
        self._expanded: dict = {}
        self._kept_fits: dict[str, Fitted] = {}
        self.checkpoints: Path | None = None  # RUN/checkpoints: a folder per neural configuration (run_grid sets it)
        self.resume = False  # neural configurations continue from their checkpoints
        self.save_to: Path | None = None  # the run folder each fitted model is saved into (rank 0 only)
        self.run_dir: Path | None = None  # the run folder, on every rank (--mix reloads a kept configuration's model from it)
        self.finished: dict[str, dict] = {}  # key -> record of the configurations finished so far (run_grid's)
        self._mixable: dict[str, LanguageModel] = {}  # with --mix: the count and neural models fitted, by key

    def checkpoint_dir(self, point: dict) -> Path | None:
        """Where a configuration keeps its checkpoints: RUN/checkpoints/<its key, as a file name>."""
        if self.checkpoints is None:
            return None
        return self.checkpoints / checkpoint_name(config_key(point))

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
        if not family(point["method"]).per_order:  # fitted on the split corpora themselves, whatever the orders
            data = FitData(self.splits["train"], self.splits.get("dev"), self.device, self.cfg, progress=progress,
                           checkpoint_dir=self.checkpoint_dir(point), resume=self.resume,
                           finished=tuple(self.finished.values()), model_of=self.model_of)
            return fit_configuration(point, data)
        data = self.order_data(order, progress)
        if not family(point["method"]).reused:
            return fit_configuration(point, data)
        key = config_key(point)
        if key not in self._kept_fits:
            self._kept_fits[key] = fit_configuration(point, data)
        return self._kept_fits[key]

    def order_data(self, order: int, progress=None) -> FitData:
        """What an n-gram family's fit of `order` uses: the order's train and dev windows."""
        train = self.win(order, "train")
        return FitData(train, self.win(order, "dev") if "dev" in self.splits else None, self.device, self.cfg,
                       counter=self.counter(train), progress=progress, vocab=self.corpus.vocab)

    def fit_seconds_range(self, point: dict, record: dict) -> list[float] | None:
        """[low, high] of a short fit's time over REPEATED_FITS fits (the recorded one and fresh refits, at
        most REPEAT_UNDER_SECONDS in all), so that `compare` shows time ratios only beyond their noise.
        A fit that took longer keeps its own estimate (a gradient model's, from its steps) or none (neural
        families, whose wall time is their budget)."""
        seconds = record.get("fit_seconds")
        if record.get("fit_seconds_range") or seconds is None or not family(point["method"]).per_order \
                or seconds >= REPEAT_UNDER_SECONDS or distributed.world_size() > 1:  # ranks must call collectives alike
            return record.get("fit_seconds_range")
        runs, data = [seconds], self.order_data(point["order"])
        while len(runs) < REPEATED_FITS and sum(runs) < REPEAT_UNDER_SECONDS:
            runs.append(fit_configuration(point, data).record["fit_seconds"])
        return [min(runs), max(runs)] if len(runs) >= 3 else None

    def model_of(self, key: str) -> LanguageModel:
        """The fitted model of a finished configuration (what --mix mixes): kept in memory when fitted in this
        process, else, for a configuration kept from the stored run on --resume, loaded from the run folder
        (its models/ file, or a neural configuration's checkpoints/<key>/best.pt)."""
        if key in self._mixable:
            return self._mixable[key]
        record = self.finished.get(key)
        if record is None or self.run_dir is None:
            raise HarnessError(f"--mix: configuration {key!r} has no fitted model in this run")
        if record.get("model_file"):
            from harness.models.store import load_model

            model = load_model(self.run_dir / record["model_file"], self.device)[0]
        else:
            from harness.train.neural import BEST, load_model as load_neural

            model = load_neural(self.run_dir / "checkpoints" / checkpoint_name(key) / BEST, self.device)
        self._mixable[key] = model
        return model

    def reference_count_fit(self, order: int) -> Fitted:
        """The count model a gradient model is compared with: the run's first add-k smoothing (auto when
        none is given); without a dev split to tune on, auto becomes the lecture's k = 1."""
        add_k = [s for s in self.cfg.smoothing if s not in SMOOTHED_METHODS]
        spec = add_k[0] if add_k else TUNED_K
        if spec == TUNED_K and "dev" not in self.splits:
            spec = "1.0"
        return self.fit(count_point(order, spec))

    def nll_of(self, model: LanguageModel, split: str) -> float:
        """A split's mean NLL: an n-gram model (the protocol's NGramModel, which scores context ids) over its
        order's (cached, maybe streamed) windows, any other (e.g. an MLP, whose order is its block size + 1)
        over the split's items through `token_log_probs`."""
        if not isinstance(model, NGramModel):
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
        controls = SamplingControls(temperature=self.cfg.temperature, top_k=self.cfg.top_k, prefix=self.cfg.prefix,
                                    exclude_train=self.cfg.exclude_train)
        samples = sample_names(model, self.corpus.vocab, self.cfg.samples, generator, controls, self.splits["train"].items)
        return {"samples": samples, **sample_stats(samples, self.splits)}

    def compared_with_count(self, model: LanguageModel, own_nll: dict) -> dict:
        """How far a model lies from the run's add-k count model of its order (its reference)."""
        count = self.reference_count_fit(model.order).model
        ref_split = "dev" if "dev" in self.splits else "train"
        count_losses = self.losses_of(count, intervals=False)
        count_nll = count_losses[f"{ref_split}_nll"]
        # count_train_nll: the level the training-loss figure draws beside the curves, even where no
        # count configuration ran
        return {"count_k": count.settings()["smoothing"], "count_nll": count_nll, "count_train_nll": count_losses["train_nll"],
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
        record["fit_seconds_range"] = self.fit_seconds_range(point, record)
        if self.cfg.mix and any(point["method"] in methods for methods in MIX_SOURCES.values()):
            self._mixable[record["key"]] = fit.model  # what --mix may mix, without refitting or reloading it
        if self.save_to is not None:  # RUN/models/<key>.pt, what score/sample/export --model load
            record["model_file"] = save_fitted(self.save_to, point, record["key"], fit.model, self.corpus.vocab,
                                               self.splits["train"], record)
        with one_cpu_thread(self.device):  # float sums in one order whatever --threads says (see one_cpu_thread)
            record.update(self.losses_of(fit.model))
        # what comes after the losses may fail (sampling out of memory) without losing them: the record keeps
        # its NLLs and says which part failed; the CLI exits 1 for it, as for a failed configuration
        failed = {}
        if fam.compare_with_count:
            try:
                with one_cpu_thread(self.device):
                    record.update(self.compared_with_count(fit.model, record))
            except Exception as exc:  # noqa: BLE001 - recorded; the NLLs above stand
                failed["compare_with_count"] = f"{type(exc).__name__}: {exc}"
        try:
            record.update(self.samples_of(fit.model))
        except Exception as exc:  # noqa: BLE001 - recorded; the NLLs above stand
            failed["samples"] = f"{type(exc).__name__}: {exc}"
            record.update(samples=[], new_share=None, heldout_share=None)
        if failed:
            record["part_failed"] = failed
        return record


def config_dict(cfg: RunConfig) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.__dict__.items()}


def grid_hash(config: dict) -> str:
    """The hash of a run's grid as results.json stores it; threads change no result, so they are left out."""
    return content_hash({k: v for k, v in config.items() if k != "threads"})


def _corpus_hash(corpus: Corpus) -> str:
    return content_hash(corpus.name, list(corpus.items), corpus.item_weights().tolist())


def run_hashes(cfg: RunConfig, runner: Runner) -> dict:
    """Content hashes of what a run's numbers depend on, stored at its start: --resume must find the same."""
    return {"corpus": _corpus_hash(runner.corpus),
            "split": content_hash({name: _corpus_hash(part) for name, part in runner.splits.items()}),
            "grid": grid_hash(config_dict(cfg))}


def check_limits(cfg: RunConfig, runner: Runner) -> None:
    """Values that are valid alone but not on this corpus, refused before any folder is made:
    an order whose V^n n-gram ids overflow int64, a minibatch larger than the training rows, a neural
    minibatch smaller than the torchrun ranks that share it, an ARPA file whose characters are not exactly
    the corpus's (its model could not score the splits)."""
    from harness.models.arpa_text import arpa_characters

    V = runner.corpus.vocab.size
    chars = set(runner.corpus.vocab.itos[1:])
    for path in cfg.arpa:
        listed = set(arpa_characters(path)[1:])
        if listed != chars:
            raise HarnessError(f"arpa (--arpa) {path!r}: its characters are not the corpus's (corpus only: {sorted(chars - listed)[:10]}, "
                               f"file only: {sorted(listed - chars)[:10]}); give an ARPA file of this corpus's characters, "
                               "e.g. lmplz's on its train split with every character of dev and test seen there")
    for order in cfg.orders:
        if V**order >= 2**63:
            raise HarnessError(f"orders (--orders): order {order} over this corpus's {V} tokens has {V}^{order} n-grams, "
                               "past 64-bit ids; give a lower order")
    world = distributed.world_size()
    if world > 1 and any(m in NEURAL_METHODS for m in cfg.methods) and min(cfg.nn_batch_size) < world:
        raise HarnessError(f"nn_batch_size (--nn-batch-size) {min(cfg.nn_batch_size)} is fewer items than the {world} ranks "
                           "that share each minibatch; give at least the number of ranks")
    if "gradient" in cfg.methods and cfg.batch_size:
        rows = len(runner.win(min(cfg.orders), "train").target)
        if cfg.batch_size > rows:
            raise HarnessError(f"batch_size (--batch-size) {cfg.batch_size:,} is more than the {rows:,} training rows; "
                               f"give at most {rows:,}, or 0 for the full batch")


def check_resumable(previous: dict, hashes: dict, cfg: RunConfig, where: Path) -> None:
    """Refuse a resume whose corpus, split or grid is not the stored run's, or whose stored config
    no longer matches its records: kept results must have been computed on what the rest will be."""
    stored = previous["run"].get("hashes")
    fix = f"start a new run (another --out, or --overwrite) instead of --resume {where}"
    if not isinstance(stored, dict):
        raise HarnessError(f"{where / 'results.json'} stores no content hashes (written by an older harness), so "
                           f"--resume cannot check that the corpus and split are the same; {fix}")
    what = {"corpus": "the corpus content", "split": "the split", "grid": "the grid in results.json (edited since the run began?)"}
    differ = [what[k] for k in ("corpus", "split", "grid") if stored.get(k) != hashes[k]]
    if differ:
        raise HarnessError(f"--resume {where}: {' and '.join(differ)} differ from the stored run's; {fix}")
    points = {config_key(p): p for p in grid_of(cfg)}
    for r in previous["results"]:
        if r.get("status") not in ("ok", "skipped"):
            continue
        point = points.get(r.get("key"))
        if point is None:
            raise HarnessError(f"{where / 'results.json'}: record {r.get('key')!r} is not in its stored config's grid; {fix}")
        for name, value in family(point["method"]).fields(point, cfg).items():
            if name in r and r[name] != value:
                raise HarnessError(f"{where / 'results.json'}: record {r['key']!r} has {name} {r[name]!r} but the stored "
                                   f"config says {value!r}; {fix}")


def new_results(cfg: RunConfig, runner: Runner, command: str, hashes: dict | None = None) -> dict:
    return {
        "run": {
            "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "command": command,
            "config": config_dict(cfg),
            "hashes": hashes or run_hashes(cfg, runner),
            "environment": environment(runner.device),
            "machine_load": {"cores": cpu_cores(), "threads": torch.get_num_threads(), "start": load_average(), "end": None},
            "corpus": {**corpus_stats(runner.corpus, runner.splits), "split": cfg.split, "split_overlap": runner.overlap},
            "split_items": split_items(runner.splits),
        },
        "results": [],
    }


def run_grid(cfg: RunConfig, out_dir: Path, progress: Progress, command: str, previous: dict | None = None,
             device: torch.device | None = None, runner: Runner | None = None, figures: bool = True) -> dict:
    """Run every configuration of `cfg`, writing the results after each one; return the results.

    With `previous` (the results.json of an interrupted run with the same grid) the
    configurations that finished there are kept and only the rest run. A configuration that
    raises is recorded with its error and the others still run; Ctrl-C records the
    interrupted configuration as such and re-raises, with every finished one already on disk.
    `device` is this rank's under torchrun (default: cfg.device); every rank runs the grid, and
    only rank 0 writes files (its `progress` is the only one not quiet). `runner`: one already
    built (the CLI builds it to check limits and hashes before it claims the folder). `figures`:
    draw the PNGs at the end (False: leave them to `python -m harness report`, which draws them later).
    """
    device = device or resolve_device(cfg.device)
    writes = distributed.is_main()
    runner = runner or Runner(cfg, device)
    runner.save_to = out_dir if writes else None
    runner.run_dir = out_dir
    corpus = runner.corpus
    progress.line(f"corpus {corpus.name}: {corpus.num_items():,} items ({corpus.num_unique:,} unique), "
                  f"vocabulary {corpus.vocab.size}, device {device}")
    results = new_results(cfg, runner, command)
    if writes:
        runner.checkpoints = out_dir / "checkpoints"
    runner.resume = previous is not None
    done = {}
    if previous is not None:
        results["run"]["hashes"] = previous["run"].get("hashes", results["run"]["hashes"])
        results["run"]["started"] = previous["run"]["started"]
        results["run"]["command"] = previous["run"]["command"]
        results["run"]["resumed"] = previous["run"].get("resumed", []) + [dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")]
        done = {r["key"]: r for r in previous["results"] if r.get("status") in ("ok", "skipped")}
    if corpus.vocab.size <= report.HEATMAP_MAX_V:
        results["run"]["bigram_counts"] = count(runner.win(2, "train")).long().tolist()
    if distributed.world_size() > 1:
        results["run"]["world_size"] = distributed.world_size()
    grid = grid_of(cfg)
    records = runner.finished  # the mixture of --mix is chosen among the records finished before it
    records.clear()
    if previous is not None:  # until a kept record is saved again, the folder's results.json stays the old one
        records.update({config_key(p): done[config_key(p)] for p in grid if config_key(p) in done})
    if writes:
        out_dir.mkdir(parents=True, exist_ok=True)
        results["run"]["split_files"] = {name: f"split/{name}.txt" for name in runner.splits}
        save_now(out_dir, results, grid, records)  # first, so a folder killed from here on is a resumable run
        try:
            results["run"]["split_files"] = write_split(out_dir, runner.splits)
        except OSError as exc:
            raise HarnessError(f"cannot write the split files into {out_dir / 'split'}: {exc.strerror or exc}; "
                               "free some space or give a writable --out") from None
        jsonio.write_atomic(out_dir / "grid.toml", grid_toml(cfg))

    def save():
        if writes:
            save_now(out_dir, results, grid, records)
        else:
            results["results"] = [records[config_key(p)] for p in grid if config_key(p) in records]

    with progress.bar(len(grid), "configurations") as advance:
        for i, point in enumerate(grid, 1):
            key = config_key(point)
            if key in done:
                records[key] = done[key]
                save()  # kept configurations are results too, wherever they sit in the grid
                progress.line(f"[{i}/{len(grid)}] {describe(done[key])} (kept: finished in the stored run)")
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
    results["run"]["machine_load"]["end"] = load_average()  # the 1-minute load after the last configuration
    save()
    if writes:
        report.write_run(out_dir, results, figures=figures)
    return results


def save_now(out_dir: Path, results: dict, grid: list[dict], records: dict) -> None:
    """results.json, results.csv and report.md with the records so far, in grid order."""
    results["results"] = [records[config_key(p)] for p in grid if config_key(p) in records]
    report.write_run(out_dir, results)


def describe(record: dict) -> str:
    head = f"order {record['order']} {record['method']}"
    if record.get("order") is None:
        head = f"{record['method']} loss={record['loss']}"
    if record["method"] == "count":
        spec = record.get("smoothing_spec")
        head += f" smoothing={spec}" + (f" (k={record['smoothing']:g})" if spec == TUNED_K and record.get("smoothing") is not None else "")
    elif record["method"] == "arpa":
        head += f" {record.get('arpa')}"
    elif record["method"] == "gradient":
        head += f" loss={record['loss']} reg={record.get('reg')}"
    elif record["method"] == MIX:
        head = "mix of the best count and neural models" + (f" (λ={record['lambda']:.4f})" if record.get("lambda") is not None else "")
    if record.get("status") != "ok":
        return f"{head}: {record.get('status')} ({record.get('error')})"
    if record.get("part_failed"):
        head += " (" + "; ".join(f"{part} failed: {why}" for part, why in record["part_failed"].items()) + ")"
    shown = " ".join(f"{s} {record[f'{s}_nll']:.4f}" for s in SPLIT_NAMES if record.get(f"{s}_nll") is not None)
    return f"{head}: {shown} ({record['fit_seconds']:.2f} s)"
