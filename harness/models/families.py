"""The model families, named in one place: method name -> its grid, its key and how it is fitted.

`FAMILIES` is the only list of methods (`--methods` takes its keys, all but `mix`, which `--mix` adds
after every other configuration: the mixture of the run's best count and best neural model). A new
family (issue 15's MLP or Transformer, issue 17's ARPA file) is one module implementing the model protocol
(harness.models.protocol) and one entry here: a `Family` whose `fit` turns a configuration
(`point`, a dict with at least "order" and "method") and a `FitData` into a `Fitted`.

`fit_configuration` is the one fit path: `run`, `score` and `sample` all fit through it, so a
saved model (issue 17) slots in there, as a family whose `fit` loads instead of training.
"""
from __future__ import annotations

import itertools
import math
import os
import time
from dataclasses import dataclass
from typing import Callable

import torch

import kernels
from harness.core.errors import HarnessError
from harness.data.corpus import Corpus
from harness.data.ngrams import Windows, WindowStream
from harness.evaluation.evaluate import token_items
from harness.models.mixture import MixtureModel, fit_lambda_em
from harness.models.neural.common import NeuralSettings
from harness.models.neural.families import FAMILIES as NEURAL_FAMILIES
from harness.models.protocol import LanguageModel
from harness.models.smoothed import METHODS as SMOOTHED_METHODS
from harness.models.smoothed import fit_smoothed
from harness.train.fit import GradientSettings, fit_count, fit_gradient, one_cpu_thread
from harness.train.neural import fit_neural

# smoothing specs of the count family: one of these names, or a number k >= 0 (add-k with that k)
TUNED_K = "auto"  # add-k, k tuned on dev from the run's k_grid
SMOOTHING_NAMES = (TUNED_K, *SMOOTHED_METHODS)
TUNED_ON_DEV = (TUNED_K, "interp")  # need a dev split
SUFFSTATS = "suffstats"  # the gradient family's loss under --input counts: the exact step, plain torch


def smoothing_k(spec: str) -> float | None:
    """The add-k k of a smoothing spec, or None when it is tuned or not add-k."""
    return None if spec in SMOOTHING_NAMES else float(spec)


@dataclass(frozen=True)
class FitData:
    """What fitting one configuration may use.

    train / dev: the configuration's order's windows (dev None where the split has none), or the
    split corpora themselves for a family fitted once per run (`per_order` False: the neural ones);
    cfg: the run's settings (a RunConfig: k_grid, the gradient flags, seed); counter: how a dense
    count table is counted (under torchrun: a shard per rank, summed), None for plain counting;
    progress: called with each training step (a neural family: each dev score); checkpoint_dir:
    where a neural family keeps its checkpoints (None: none kept); resume: continue from them.
    """

    train: Windows | WindowStream | Corpus
    dev: Windows | WindowStream | Corpus | None
    device: object
    cfg: object
    counter: Callable | None = None
    progress: Callable | None = None
    checkpoint_dir: object = None
    resume: bool = False
    vocab: object = None  # the run's Vocab: a family that loads a model (arpa) checks it against the file's
    finished: tuple = ()
    model_of: Callable | None = None


@dataclass
class Fitted:
    """A fitted model and what its results record states about the fit (results.json keys, in order)."""

    model: LanguageModel
    record: dict


class Skipped(Exception):
    """A configuration that cannot run on this machine (e.g. the triton loss without CUDA): recorded as skipped."""


@dataclass(frozen=True)
class Family:
    """How the runner and the CLI handle one method.

    points(cfg, order): the configurations of one order in the grid (dicts with order, method,
    loss, smoothing_spec, reg); key(point): its identity in results.json; fields(point, cfg): the
    record's settings known before fitting; fit(point, data): the fitted model; steps(cfg): training
    steps a progress bar counts (0: none); compare_with_count: the record also states its distance to
    the run's add-k count model of the same order; reused: fitted once per run and kept (the count
    models are that reference); per_order: one set of points per order of the run (False: once per
    run, `points(cfg, None)`, order None in every point: the neural families, whose context is their
    block size or the whole prefix, not the run's n-gram order).
    """

    points: Callable[[object, int], list[dict]]
    key: Callable[[dict], str]
    fields: Callable[[dict, object], dict]
    fit: Callable[[dict, FitData], Fitted]
    steps: Callable[[object], int] = lambda cfg: 0
    compare_with_count: bool = False
    reused: bool = False
    per_order: bool = True


def count_point(order: int, spec: str) -> dict:
    return {"order": order, "method": "count", "loss": None, "smoothing_spec": spec, "reg": None}


def _fit_count(point: dict, data: FitData) -> Fitted:
    spec = point["smoothing_spec"]
    if spec in SMOOTHED_METHODS:
        start = time.perf_counter()
        model, tuning = fit_smoothed(spec, data.train, data.dev)
        seconds = time.perf_counter() - start
    else:
        fit = fit_count(data.train, data.dev, smoothing_k(spec), data.cfg.k_grid, data.counter)
        model, seconds, tuning = fit.model, fit.fit_seconds, fit.tuning
    return Fitted(model, {**model.settings(), "fit_seconds": seconds, "tuning": tuning})


def _gradient_points(cfg, order: int) -> list[dict]:
    losses = (SUFFSTATS,) if cfg.input == "counts" else cfg.losses
    return [{"order": order, "method": "gradient", "loss": loss, "smoothing_spec": None, "reg": reg}
            for loss in losses for reg in cfg.regs]


def _gradient_fields(point: dict, cfg) -> dict:
    return {"smoothing": None, "reg": point["reg"], "lr": cfg.lr, "steps": cfg.steps, "batch_size": cfg.batch_size,
            "input": cfg.input, "additive": cfg.additive}


def _fit_gradient(point: dict, data: FitData) -> Fitted:
    cfg, loss = data.cfg, point["loss"]
    if loss != SUFFSTATS:
        ok, why = kernels.backend_available(loss, data.device)
        if not ok:
            raise Skipped(why)
    settings = GradientSettings(steps=cfg.steps, lr=cfg.lr, reg=point["reg"], batch_size=cfg.batch_size,
                                loss=loss if loss != SUFFSTATS else "torch", input=cfg.input,
                                additive=cfg.additive, seed=cfg.seed)
    fit = fit_gradient(data.train, settings, data.device, progress=data.progress)
    return Fitted(fit.model, {"fit_seconds": fit.fit_seconds, "fit_seconds_range": fit.fit_seconds_range(),
                              "compile_seconds": fit.compile_seconds,
                              "steps_per_second": fit.steps_per_second, "train_losses": fit.losses})


# Neural families: run key -> NeuralSettings field. The run's keys carry an nn_ prefix where the gradient
# tables already own the plain name (lr, steps, batch_size); defaults are NeuralSettings's, written once.
NEURAL_SWEEPS = {"nn_embd": "n_embd", "nn_embd2": "n_embd2", "nn_layer": "n_layer", "nn_head": "n_head",
                 "nn_block_size": "block_size", "nn_dropout": "dropout", "nn_weight_decay": "weight_decay",
                 "nn_batch_size": "batch_size", "nn_lr": "lr"}  # a list sweeps: one configuration per combination
NEURAL_SCALARS = {"nn_steps": "steps", "nn_warmup": "warmup_steps", "nn_eval_interval": "eval_interval",
                  "nn_patience": "patience", "time_budget": "time_budget_seconds", "nn_compile": "compile"}  # one value per run
NEURAL_METHODS = tuple(NEURAL_FAMILIES)


def _neural_points(method: str):
    def points(cfg, order) -> list[dict]:
        sweeps = [[(key, value) for value in getattr(cfg, key)] for key in NEURAL_SWEEPS]
        return [{"order": None, "method": method, "loss": loss, "smoothing_spec": None, "reg": None, "nn": dict(combo)}
                for loss in cfg.losses for combo in itertools.product(*sweeps)]
    return points


def _neural_key(point: dict) -> str:
    shown = " ".join(f"{key.removeprefix('nn_')}={value!r}" for key, value in point["nn"].items())
    return f"{point['method']} loss={point['loss']} {shown}"


def neural_settings(point: dict, cfg) -> NeuralSettings:
    """The NeuralSettings of a neural configuration: its swept values, the run's scalars, seed and loss."""
    values = {NEURAL_SWEEPS[key]: value for key, value in point["nn"].items()}
    values.update({field: getattr(cfg, key) for key, field in NEURAL_SCALARS.items()})
    return NeuralSettings(**values, seed=cfg.seed, loss=point["loss"])


def _neural_fields(point: dict, cfg) -> dict:
    return {"smoothing": None, **point["nn"], **{key: getattr(cfg, key) for key in NEURAL_SCALARS}}


def _fit_neural(point: dict, data: FitData) -> Fitted:
    ok, why = kernels.backend_available(point["loss"], data.device)
    if not ok:
        raise Skipped(why)
    fit = fit_neural(point["method"], neural_settings(point, data.cfg), data.train, data.dev, data.device,
                     checkpoint_dir=data.checkpoint_dir, progress=data.progress, resume=data.resume)
    return Fitted(fit.model, {
        "parameters": fit.num_parameters, "block_size": fit.block_size, "fit_seconds": fit.fit_seconds,
        "steps_trained": fit.steps, "steps_per_second": fit.steps_per_second, "tokens_trained": fit.tokens,
        "tokens_per_second": fit.tokens_per_second, "threads": fit.threads, "stop_reason": fit.stop_reason,
        "best_step": fit.best_step, "best_dev_nll": fit.best_dev_nll, "resumed_from": fit.resumed_from,
        "load_avg": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,  # a shared machine's speed depends on it
        "dev_curve": fit.dev_curve, "train_losses": fit.train_losses})


def _neural_family(method: str) -> Family:
    return Family(points=_neural_points(method), key=_neural_key, fields=_neural_fields, fit=_fit_neural,
                  steps=lambda cfg: -(-cfg.nn_steps // cfg.nn_eval_interval), per_order=False)


# run --mix: one more configuration, after every other, mixing the run's best count and best neural model.
# It is not a --methods entry: what it mixes is chosen from the run's own results.
MIX = "mix"
MIX_SOURCES = {"count": ("count",), "neural": NEURAL_METHODS}  # component -> the methods it is chosen among


def best_on_dev(records, methods) -> dict | None:
    """The finished record of `methods` with the lowest finite dev NLL (the first of equals), or None."""
    ok = [r for r in records if r.get("status") == "ok" and r.get("method") in methods
          and r.get("dev_nll") is not None and math.isfinite(r["dev_nll"])]
    return min(ok, key=lambda r: r["dev_nll"]) if ok else None


def _mix_points(cfg, order) -> list[dict]:
    return [{"order": None, "method": MIX, "loss": None, "smoothing_spec": None, "reg": None}] if cfg.mix else []


def _fit_mix(point: dict, data: FitData) -> Fitted:
    """λ p_count + (1 - λ) p_neural of the run's best count and best neural configurations on dev, λ by EM on dev."""
    best = {part: best_on_dev(data.finished, methods) for part, methods in MIX_SOURCES.items()}
    missing = [part for part, record in best.items() if record is None]
    if missing:
        raise Skipped(f"--mix found no finished {' and no '.join(missing)} configuration with a finite dev NLL to mix")
    if data.dev is None:
        raise Skipped("--mix tunes its weight on the dev split, which this run has none of")
    start = time.perf_counter()
    count, neural = (data.model_of(best[part]["key"]) for part in MIX_SOURCES)
    dev = data.dev
    with one_cpu_thread(data.device):  # float sums in one order whatever --threads says
        weight = dev.item_weights().to(torch.float64)[token_items(dev)]
        em = fit_lambda_em(count.token_log_probs(dev), neural.token_log_probs(dev), weight)
    model = MixtureModel(count, neural, em.lam, (best["count"]["key"], best["neural"]["key"]))
    return Fitted(model, {"smoothing": None, "lambda": em.lam, "mix_count": best["count"]["key"],
                          "mix_neural": best["neural"]["key"], "em_iterations": em.iterations,
                          "em_converged": em.converged, "em_path": em.path, "newton_steps": em.newton_steps,
                          "fit_seconds": time.perf_counter() - start})


def _arpa_points(cfg, order: int) -> list[dict]:
    from harness.models.arpa_text import arpa_order

    return [{"order": order, "method": "arpa", "loss": None, "smoothing_spec": None, "reg": None, "arpa": path}
            for path in cfg.arpa if arpa_order(path) == order]


def _fit_arpa(point: dict, data: FitData) -> Fitted:
    """An ARPA file read, not fitted: the run's vocabulary must hold exactly the file's characters."""
    from harness.models.arpa import read_arpa

    start = time.perf_counter()
    model, _ = read_arpa(point["arpa"], vocab=data.vocab, order=point["order"])
    return Fitted(model.to(data.device), {"smoothing": None, "fit_seconds": time.perf_counter() - start, "tuning": []})


FAMILIES: dict[str, Family] = {
    "count": Family(
        points=lambda cfg, order: [count_point(order, s) for s in cfg.smoothing],
        key=lambda p: f"order={p['order']} count smoothing={p['smoothing_spec']}",
        fields=lambda point, cfg: {},
        fit=_fit_count,
        reused=True,
    ),
    "gradient": Family(
        points=_gradient_points,
        key=lambda p: f"order={p['order']} gradient loss={p['loss']} reg={p['reg']!r}",
        fields=_gradient_fields,
        fit=_fit_gradient,
        steps=lambda cfg: cfg.steps,
        compare_with_count=True,
    ),
    **{method: _neural_family(method) for method in NEURAL_METHODS},  # mlp, cnn, gru, transformer
    "arpa": Family(  # ARPA files given as --arpa / arpa = [...]: read, then evaluated like any n-gram model
        points=_arpa_points,
        key=lambda p: f"order={p['order']} arpa={p['arpa']}",
        fields=lambda point, cfg: {"arpa": point["arpa"]},
        fit=_fit_arpa,
    ),
    MIX: Family(points=_mix_points, key=lambda p: "mix best count + best neural", fields=lambda point, cfg: {"smoothing": None},
                fit=_fit_mix, per_order=False),
}


def family(method: str) -> Family:
    if method not in FAMILIES:
        raise HarnessError(f"unknown method {method!r}; choose from {', '.join(FAMILIES)}")
    return FAMILIES[method]


def fit_configuration(point: dict, data: FitData) -> Fitted:
    """Fit one configuration of any family: the one fit path of run, score and sample."""
    return family(point["method"]).fit(point, data)
