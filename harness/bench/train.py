"""`python -m harness bench --suite train`: steps per second of full-batch gradient training, verified.

Full-batch gradient descent on an n-gram table model (the lecture's bigram network, and its
trigram and 4-gram versions) through each way the logits can reach the loss and each kernels
backend; every variant's loss at every step must match the baseline's before its time counts.
Rows go to train.csv; the training section of bench.md is rendered from it.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Callable

import torch

from harness.bench.common import LOAD_COLUMNS, backend_unavailable, provenance, spread, wide_spread
from harness.bench.config import VARIANTS, BenchConfig
from harness.core.errors import HarnessError
from harness.data.corpus import load_corpus
from harness.data.ngrams import windows
from harness.models.gradient import GradientModel
from harness.train.fit import GradientSettings, fit_gradient
from kernels.reference import torch_cross_entropy
from kernels.suffstats import count_cross_entropy, target_counts

@dataclass(frozen=True)
class TrainVariant:
    input: str  # how the logits reach the loss (harness.train.fit.GradientSettings.input)
    loss: str  # the kernels backend
    what: str


# The first is the baseline of the speed-ups and of the loss check.
TRAIN_VARIANTS = {
    "index-torch": TrainVariant("index", "torch", "logits = W[context], eager F.cross_entropy (the baseline)"),
    "onehot-torch": TrainVariant("onehot", "torch", "the lecture's one_hot(context) @ W, eager F.cross_entropy"),
    "index-manual": TrainVariant("index", "manual", "W[context], the lecture's exp / normalise / log / mean"),
    "index-compiled": TrainVariant("index", "compiled", "W[context], our compiled loss (gradient over the logits)"),
    "index-triton": TrainVariant("index", "triton", "W[context], our Triton kernel (gradient over the logits)"),
    "table-compiled": TrainVariant("table", "compiled", "table_cross_entropy, compiled backend (no N x V logits)"),
    "table-triton": TrainVariant("table", "triton", "table_cross_entropy, Triton backend (no N x V logits)"),
    "counts": TrainVariant("counts", "torch", "sufficient statistics: loss and gradient from the (C, V) target counts"),
}
ONEHOT_MAX_BYTES = 256 * 2**20  # the lecture's one-hot matrix is N x C floats: past this it is not worth timing
TRAIN_CSV_COLUMNS = [
    "run", "variant", "input", "loss", "order", "corpus", "N", "C", "V", "status", "note", "verified",
    "loss_err", "grad_err", "steps", "repeats", "ms_per_step", "min_ms_per_step", "max_ms_per_step",
    "p20_ms_per_step", "p80_ms_per_step", "spread", "wide_spread", "steps_per_s",
    "speedup_vs_eager", "first_loss", "last_loss", "compile_s",
    "device", "device_name", "driver", "machine", *LOAD_COLUMNS, "torch", "triton", "python", "git_commit", "timestamp",
]


def train_variant_unavailable(name: str, device: torch.device) -> str:
    """Why a training variant cannot run on `device` ('' when it can)."""
    return backend_unavailable(TRAIN_VARIANTS[name].loss, device)


def check_counts_step(train, device: torch.device, seed: int) -> tuple[float, float]:
    """The sufficient-statistics loss and gradient against the per-row computation at the initial table.

    Returns (loss error, gradient error); raises HarnessError when they disagree.
    """
    (W,) = GradientModel.init(train.order, train.vocab_size, seed, device).tables
    # the per-row truth in float64: in float32 its gradient sums thousands of rows per context
    # and is itself the less accurate of the two
    W64 = W.detach().double().requires_grad_(True)
    per_row = torch_cross_entropy(W64[train.context], train.target, train.weight.double())
    (per_row_grad,) = torch.autograd.grad(per_row, W64)
    counts = target_counts(train.context, train.target, train.num_contexts, train.vocab_size, train.weight.float())
    from_counts = count_cross_entropy(W, counts)
    (counts_grad,) = torch.autograd.grad(from_counts, W)
    loss_err = float((from_counts.detach().double() - per_row.detach()).abs())
    grad_err = float((counts_grad.double() - per_row_grad).abs().max())
    scale = float(per_row_grad.abs().max())
    if loss_err > 1e-4 * float(per_row.detach().abs()) + 1e-6 or grad_err > 1e-4 * scale + 1e-9:
        raise HarnessError(f"sufficient statistics disagree with the per-row loss (order {train.order}): "
                           f"loss off by {loss_err:.3g}, gradient by {grad_err:.3g}")
    return loss_err, grad_err


def run_train_bench(config: BenchConfig, log: Callable[[str], None] = print) -> list[dict]:
    """Steps per second of full-batch gradient training of each order with each variant; one row each.

    The whole corpus is the training set (no split: this measures speed). Each variant first
    trains two steps untimed (compilation), then `train_repeats` fits of `train_steps` steps are
    timed by harness.train.fit.fit_gradient (a step includes loss.item(), as the harness trains).
    Every variant's loss at every step must match the baseline's (rtol 1e-3), and the
    sufficient-statistics step is checked against the per-row loss and gradient first.
    """
    device = torch.device(config.device)
    prov = dict(provenance(device), run=config.run_name)
    corpus = load_corpus(config.corpus, device)
    kernel_backends = {VARIANTS[b].backend for b in config.backends} | {"torch"}
    names = [n for n, v in TRAIN_VARIANTS.items() if v.loss in kernel_backends or v.input == "counts"]
    started = time.perf_counter()
    rows = []
    for order in config.orders:
        train = windows(corpus, order)
        n, c, v = int(train.target.numel()), train.num_contexts, train.vocab_size
        log(f"train: {corpus.name} order {order}: {n:,} rows, {c:,} contexts x {v} tokens")
        baseline_losses = None
        for name in names:
            variant = TRAIN_VARIANTS[name]
            row = dict(prov, variant=name, input=variant.input, loss=variant.loss, order=order,
                       corpus=corpus.name, N=n, C=c, V=v, steps=config.train_steps, repeats=config.train_repeats,
                       verified="no")
            rows.append(row)
            why = train_variant_unavailable(name, device)
            if not why and variant.input == "onehot" and n * c * 4 > ONEHOT_MAX_BYTES:
                why = f"the one-hot matrix would be N x C = {n:,} x {c:,} floats ({n * c * 4 / 2**30:.1f} GiB)"
            if not why and config.max_seconds and time.perf_counter() - started > config.max_seconds:
                why = f"time budget of {config.max_seconds:.0f} s spent (--max-seconds)"
            if why:
                row.update(status="skipped", note=why)
                continue
            settings = GradientSettings(steps=config.train_steps, loss=variant.loss, input=variant.input, seed=config.seed)
            try:
                if variant.input == "counts":
                    row["loss_err"], row["grad_err"] = check_counts_step(train, device, config.seed)
                t0 = time.perf_counter()
                fit_gradient(train, dataclasses.replace(settings, steps=2), device)  # compile, warm caches
                warm_s = time.perf_counter() - t0
                fits = [fit_gradient(train, settings, device) for _ in range(config.train_repeats)]
            except torch.OutOfMemoryError:
                row.update(status="skipped", note="out of memory")
                continue
            except Exception as exc:  # noqa: BLE001 - with --keep-going a broken backend must not lose the run
                if not config.keep_going or isinstance(exc, HarnessError):
                    raise
                row.update(status="failed", note=f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
                continue
            ms = sorted(f.fit_seconds / config.train_steps * 1e3 for f in fits)
            median_ms = ms[len(ms) // 2]
            p20, p80 = torch.quantile(torch.tensor(ms, dtype=torch.float64), torch.tensor([0.2, 0.8], dtype=torch.float64)).tolist()
            losses = fits[0].losses
            if baseline_losses is None:
                baseline_losses = losses
            err = max(abs(a - b) for a, b in zip(losses, baseline_losses))
            if any(abs(a - b) > 1e-3 * abs(b) + 1e-5 for a, b in zip(losses, baseline_losses)):
                message = (f"training with {name} (order {order}) leaves the baseline's losses: "
                           f"off by up to {err:.3g} over {config.train_steps} steps")
                if not config.keep_going:
                    raise HarnessError(message)
                row.update(status="failed", note=message)
                continue
            row.update(status="ok", note="", verified="yes", ms_per_step=median_ms, min_ms_per_step=ms[0],
                       max_ms_per_step=ms[-1], p20_ms_per_step=p20, p80_ms_per_step=p80,
                       spread=spread(p20, p80), wide_spread=wide_spread(spread(p20, p80)), steps_per_s=1e3 / median_ms, first_loss=losses[0],
                       last_loss=losses[-1], compile_s=max(0.0, warm_s - 2 * median_ms * 1e-3))
            row["loss_err"] = max(row.get("loss_err") or 0.0, err)
            log(f"  {name:16s} {median_ms:9.3f} ms/step  {1e3 / median_ms:9.1f} steps/s  final loss {losses[-1]:.4f}")
    for order in config.orders:
        base = [r for r in rows if r["order"] == order and r["variant"] == "index-torch" and r.get("status") == "ok"]
        for r in rows:
            if r["order"] == order and r.get("status") == "ok" and base:
                r["speedup_vs_eager"] = base[0]["ms_per_step"] / r["ms_per_step"]
    return rows


