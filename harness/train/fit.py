"""Fitting models: count models (k tuned on dev) and gradient models (gradient descent on the NLL)."""
from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

import kernels
from harness.train import distributed
from harness.core.errors import HarnessError
from harness.evaluation.evaluate import mean_nll
from harness.core.constants import LECTURE_SEED
from harness.models.count import CountModel, fit_add_k
from harness.models.gradient import GradientModel
from harness.models.protocol import LanguageModel
from harness.data.ngrams import Windows
from kernels.suffstats import count_cross_entropy, target_counts


@dataclass
class FitResult:
    model: LanguageModel
    fit_seconds: float
    tuning: list[dict]  # [{"k": k, "dev_nll": nll}, ...] when k was tuned, else []


def fit_count(train: Windows, dev: Windows | None, k: float | None, k_grid, counter=None) -> FitResult:
    """Count the training windows once; with k None pick k from `k_grid` by dev NLL (exercise E03).

    Ties go to the smaller k. The test split is never looked at here. Windows may be a
    WindowStream (counted in chunks); the model is sparse where a dense table is past the budget.
    `counter(train)`, when given, counts the windows into a dense table instead of `count`
    (under torchrun: a shard per rank, summed, `distributed.summed_counts`).
    """
    with one_cpu_thread(train.context.device if isinstance(train, Windows) else train.corpus.device):
        return _fit_count(train, dev, k, k_grid, counter)


def _fit_count(train, dev, k, k_grid, counter) -> FitResult:
    start = time.perf_counter()
    k0 = k if k is not None else 0.0
    model = fit_add_k(train, k0) if counter is None else CountModel(train.order, train.vocab_size, counter(train), k0)
    tuning = []
    if k is None:
        best = None
        for candidate in k_grid:
            nll = mean_nll(model.with_smoothing(candidate), dev)
            tuning.append({"k": float(candidate), "dev_nll": nll})
            if best is None or nll < best[1]:
                best = (candidate, nll)
        model = model.with_smoothing(best[0])
    return FitResult(model, time.perf_counter() - start, tuning)


@dataclass(frozen=True)
class GradientSettings:
    """How a gradient model trains: the lecture's defaults (lr 50, reg 0.01, full batch)."""

    steps: int = 100
    lr: float = 50.0
    reg: float = 0.01
    batch_size: int = 0  # 0 = full batch
    loss: str = "torch"  # kernels backend
    input: str = "table"  # table (fused gather) | index (W[ctx]) | onehot (lecture) | counts (sufficient statistics)
    additive: bool = False
    seed: int = LECTURE_SEED


@dataclass
class GradientFit:
    model: GradientModel
    fit_seconds: float
    losses: list[float]  # training loss (data + reg) at each step, before its update
    compile_seconds: float = 0.0  # part of fit_seconds spent compiling (the compiled backend's first calls)
    step_seconds: list[float] = field(default_factory=list)  # each step's wall time (the noise of fit_seconds)

    def fit_seconds_range(self) -> list[float] | None:
        """[low, high] of fit_seconds under the noise its steps show: fit_seconds scaled by p20/median and
        p80/median of the per-step times (wider than the noise of their sum: a conservative band);
        None below 5 steps."""
        if len(self.step_seconds) < 5:
            return None
        times = torch.tensor(self.step_seconds, dtype=torch.float64)
        p20, median, p80 = torch.quantile(times, torch.tensor([0.2, 0.5, 0.8], dtype=torch.float64)).tolist()
        if not median > 0:
            return None
        return [self.fit_seconds * p20 / median, self.fit_seconds * p80 / median]

    @property
    def steps_per_second(self) -> float:
        """Steps per second of training, the one-off compile time left out."""
        seconds = self.fit_seconds - self.compile_seconds
        return len(self.losses) / seconds if seconds > 0 else float("inf")


def data_loss(model: GradientModel, context, target, weight, settings: GradientSettings, counts=None) -> torch.Tensor:
    """Mean weighted NLL of the rows through the configured input path and loss backend."""
    if settings.input == "counts":
        return count_cross_entropy(model.tables[0], counts)
    if settings.input == "table" and not model.additive:
        return kernels.table_cross_entropy(model.tables[0], context, target, weight, backend=settings.loss)
    logits = model.logits(context, onehot=settings.input == "onehot")
    # the logits are a temporary of this step: the fused backends may write the gradient over them
    return kernels.cross_entropy(logits, target, weight, backend=settings.loss, overwrite_logits=True)


def fit_gradient(train: Windows, settings: GradientSettings, device, progress=None) -> GradientFit:
    """Gradient descent on the mean NLL + reg * mean(W**2), from a seeded randn table.

    Full batch by default (the lecture's W -= lr * grad); with batch_size > 0 each step draws
    a minibatch of rows with a generator seeded from `settings.seed`, with probability
    proportional to each row's weight, and weighs them equally.

    Under torchrun the tables train with DistributedDataParallel: each rank scores its part of
    the batch (the full batch's windows, or every rank's same minibatch draw) and the averaged
    gradient and the logged loss are the full batch's (`distributed.batch_part`).
    """
    if settings.input == "counts" and (settings.additive or settings.batch_size):
        raise HarnessError("--input counts (sufficient statistics) needs a full-batch, non-additive table model")
    model = GradientModel.init(train.order, train.vocab_size, settings.seed, device, additive=settings.additive)
    context, target = train.context, train.target
    weight = train.weight.float()
    counts = None
    if settings.input == "counts":
        counts = target_counts(context, target, train.num_contexts, train.vocab_size, weight)
    sampler = torch.Generator(device=device).manual_seed(settings.seed) if settings.batch_size else None

    def loss_of(context, target, weight, counts=None):
        return data_loss(model, context, target, weight, settings, counts)

    # the counts path is already O(table) per step: every rank computes it whole (part = all, scale 1)
    part, scale = (slice(None), 1.0) if counts is not None else distributed.batch_part(len(target), weight)
    if distributed.world_size() > 1:
        model.tables, loss_of = distributed.data_parallel(model.tables, loss_of, torch.device(device))
    losses, step_seconds = [], []
    compiled_before = _compile_seconds()
    _sync(device)
    start = time.perf_counter()
    last = start
    with one_cpu_thread(device):  # bit-identical losses whatever the thread count (see one_cpu_thread)
        for step in range(settings.steps):
            if sampler is not None:
                rows = torch.multinomial(weight, settings.batch_size, replacement=True, generator=sampler)
                rows_part, rows_scale = distributed.batch_part(len(rows))  # every rank drew the same rows
                rows = rows[rows_part]
                loss = loss_of(context[rows], target[rows], None) * rows_scale
            else:
                loss = loss_of(context[part], target[part], weight[part], counts) * scale
            if settings.reg:
                loss = loss + settings.reg * model.regulariser()
            for W in model.parameters():
                W.grad = None
            loss.backward()
            with torch.no_grad():
                for W in model.parameters():
                    W -= settings.lr * W.grad
            losses.append(distributed.mean_over_ranks(loss.detach()))
            if not math.isfinite(losses[-1]):
                raise HarnessError(
                    f"training diverged at step {step + 1} (loss {losses[-1]}); lower --lr (now {settings.lr:g})"
                )
            now = time.perf_counter()  # losses[-1] synchronised the step
            step_seconds.append(now - last)
            last = now
            if progress is not None:
                progress(step)
    _sync(device)
    return GradientFit(model, time.perf_counter() - start, losses, float(_compile_seconds() - compiled_before),
                       step_seconds)


@contextmanager
def one_cpu_thread(device):
    """Float reductions on CPU (training steps, NLL sums, k tuned on dev) run on one intra-op thread,
    whatever the process's thread count; counting, windows and sampling keep every thread.

    Measured on names.txt (bigram, full batch): with two threads the backward of W[context]
    (index and table inputs) sums into W in a different order from run to run, so the loss
    differs from the first update on (3.3787903785 vs 3.3787884712); one_hot @ W's matmul blocks
    by thread count, so 1 and 2 threads differ too; and the count model's train NLL (a sum over
    182 K rows) differs in its last bit (2.453796984979984 vs 2.4537969849799834). On one thread
    all of it is bit-identical, so the same seed gives the same numbers whatever --threads says.
    CUDA is left as it is (its kernels choose their own order; see README)."""
    if torch.device(device).type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _compile_seconds() -> float:
    """Seconds the compiled loss backend has spent compiling in this process so far (0 if never imported)."""
    import sys

    compiled = sys.modules.get("kernels.compiled")
    return sum(compiled.KERNEL_CACHE.compile_seconds.values()) if compiled is not None else 0.0


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
