"""The model families, named in one place: method name -> its grid, its key and how it is fitted.

`FAMILIES` is the only list of methods (`--methods` takes its keys). A new family (issue 15's
MLP or Transformer, issue 17's ARPA file) is one module implementing the model protocol
(harness.models.protocol) and one entry here: a `Family` whose `fit` turns a configuration
(`point`, a dict with at least "order" and "method") and a `FitData` into a `Fitted`.

`fit_configuration` is the one fit path: `run`, `score` and `sample` all fit through it, so a
saved model (issue 17) slots in there, as a family whose `fit` loads instead of training.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import kernels
from harness.core.errors import HarnessError
from harness.data.ngrams import Windows, WindowStream
from harness.models.protocol import LanguageModel
from harness.models.smoothed import METHODS as SMOOTHED_METHODS
from harness.models.smoothed import fit_smoothed
from harness.train.fit import GradientSettings, fit_count, fit_gradient

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

    train / dev: the configuration's order's windows (dev None where the split has none);
    cfg: the run's settings (a RunConfig: k_grid, the gradient flags, seed); counter: how a dense
    count table is counted (under torchrun: a shard per rank, summed), None for plain counting;
    progress: called with each training step.
    """

    train: Windows | WindowStream
    dev: Windows | WindowStream | None
    device: object
    cfg: object
    counter: Callable | None = None
    progress: Callable | None = None
    vocab: object = None  # the run's Vocab: a family that loads a model (arpa) checks it against the file's


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
    models are that reference).
    """

    points: Callable[[object, int], list[dict]]
    key: Callable[[dict], str]
    fields: Callable[[dict, object], dict]
    fit: Callable[[dict, FitData], Fitted]
    steps: Callable[[object], int] = lambda cfg: 0
    compare_with_count: bool = False
    reused: bool = False


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
    return Fitted(fit.model, {"fit_seconds": fit.fit_seconds, "compile_seconds": fit.compile_seconds,
                              "steps_per_second": fit.steps_per_second, "train_losses": fit.losses})


def _arpa_points(cfg, order: int) -> list[dict]:
    from harness.models.arpa import arpa_order

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
    "arpa": Family(  # ARPA files given as --arpa / arpa = [...]: read, then evaluated like any n-gram model
        points=_arpa_points,
        key=lambda p: f"order={p['order']} arpa={p['arpa']}",
        fields=lambda point, cfg: {"arpa": point["arpa"]},
        fit=_fit_arpa,
    ),
}


def family(method: str) -> Family:
    if method not in FAMILIES:
        raise HarnessError(f"unknown method {method!r}; choose from {', '.join(FAMILIES)}")
    return FAMILIES[method]


def fit_configuration(point: dict, data: FitData) -> Fitted:
    """Fit one configuration of any family: the one fit path of run, score and sample."""
    return family(point["method"]).fit(point, data)
