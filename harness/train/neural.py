"""Training the neural families: minibatch AdamW, warm-up and cosine decay, best-on-dev, checkpoints.

One step draws `batch_size` training items with probability proportional to their weights (a
weighted corpus is never expanded: ssa-births trains like its 348 M births), encodes them as a
padded batch of whole items and takes the token-mean cross-entropy through
`kernels.cross_entropy`. Every `eval_interval` steps the whole dev split is scored exactly; the
weights with the best dev NLL are kept (test is never looked at), and training stops when dev
has not improved for `patience` scores, at `steps`, or when the time budget is spent.

Nothing is lost: at every dev score the full state (model, optimizer, step, the batch sampler's
and dropout's RNG states, the best weights, the losses so far) goes to `checkpoint_dir/
checkpoint.pt`, and the best weights to `best.pt`. `resume=True` continues from the last
checkpoint; on the CPU the resumed run's losses equal the uninterrupted run's exactly.

Under torchrun the model trains with DistributedDataParallel (harness.train.distributed): each
rank draws its share of every minibatch from its own seeded generator, the gradient is that of the
token mean over all ranks' draws, rank 0 scores dev and writes; every rank ends with the same weights.
"""
from __future__ import annotations

import contextlib
import copy
import math
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import nn

import kernels
from harness.core.errors import HarnessError
from harness.data.corpus import Corpus, Vocab
from harness.models.neural.common import IGNORE, NeuralModel, NeuralSettings, encode_batch, longest_item
from harness.models.neural.families import build_model
from harness.evaluation.evaluate import corpus_nll
from harness.train import distributed

CHECKPOINT = "checkpoint.pt"
BEST = "best.pt"
ADAM_BETAS = (0.9, 0.99)  # makemore.py's


def default_threads(cpu_count: int | None = None, load: float | None = None) -> int:
    """Intra-op threads for training on the CPU: 1 on a machine of 2 cores or fewer, else the
    cores the 1-minute load average leaves idle (at least 1).

    Measured on the project's 2-core machine (default Transformer and MLP steps, batch 32, 1 and
    2 threads alternating in one process, load average 4.7-6.6 from other users): 1 thread ran
    10-16x more steps per second than 2 (Transformer 38 vs 3 steps/s; with one more busy process
    11.5 vs 0.7). These models' ops are too small to split, and a thread that waits for a busy
    core stalls every op; the cores were never idle during the measurement, so the gain of 2
    threads on an idle machine is unmeasured and cannot pay for that risk.
    """
    cores = cpu_count if cpu_count is not None else (os.cpu_count() or 1)
    if cores <= 2:
        return 1
    if load is None:
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return max(1, min(cores, cores - math.ceil(load)))


def lr_at(step: int, settings: NeuralSettings, horizon: int) -> float:
    """Learning rate of step `step` (0-based): linear warm-up to lr over warmup_steps, then a
    cosine from lr down to min_lr_ratio * lr at step `horizon`, flat after it."""
    if step < settings.warmup_steps:
        return settings.lr * (step + 1) / settings.warmup_steps
    span = max(1, horizon - settings.warmup_steps)
    progress = min(1.0, (step - settings.warmup_steps) / span)
    floor = settings.min_lr_ratio * settings.lr
    return floor + 0.5 * (settings.lr - floor) * (1.0 + math.cos(math.pi * progress))


@dataclass
class NeuralFit:
    """A trained neural model (holding its best-on-dev weights) and how the training went.

    train_losses: the minibatch loss of every step, before its update; dev_curve: one record per
    dev score {step, dev_nll, train_loss (mean since the previous score), lr, seconds};
    stop_reason: "steps", "patience" or "time"; tokens: predicted tokens trained on.
    """

    model: NeuralModel
    family: str
    settings: NeuralSettings
    block_size: int
    fit_seconds: float
    steps: int
    train_losses: list[float]
    dev_curve: list[dict]
    best_step: int
    best_dev_nll: float | None
    stop_reason: str
    tokens: int
    threads: int
    horizon: int = 0  # the step the cosine schedule ends at
    resumed_from: int | None = None

    @property
    def num_parameters(self) -> int:
        return self.model.num_parameters()

    @property
    def steps_per_second(self) -> float:
        return self.steps / self.fit_seconds if self.fit_seconds > 0 else float("inf")

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.fit_seconds if self.fit_seconds > 0 else float("inf")


@dataclass
class _State:
    """What a checkpoint holds besides the modules and the RNGs."""

    step: int = 0
    horizon: int = 0
    seconds: float = 0.0
    tokens: int = 0
    best_dev: float = math.inf
    best_step: int = 0
    bad_scores: int = 0
    stop_reason: str | None = None
    train_losses: list = field(default_factory=list)
    dev_curve: list = field(default_factory=list)


def on_device(corpus: Corpus, device: torch.device) -> Corpus:
    """The corpus with its tensors on `device` (itself when already there)."""
    if corpus.device == device:
        return corpus
    weights = None if corpus.weights is None else corpus.weights.to(device)
    return replace(corpus, codes=corpus.codes.to(device), offsets=corpus.offsets.to(device), weights=weights)


def make_optimizer(model: NeuralModel, settings: NeuralSettings) -> torch.optim.AdamW:
    """AdamW decaying the matrices and embeddings only: biases and norm gains are left alone."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": settings.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=settings.lr, betas=ADAM_BETAS, eps=1e-8)


def _check_backend(settings: NeuralSettings, device: torch.device) -> str:
    try:
        return kernels.resolve_backend(settings.loss, device)
    except kernels.KernelUnavailableError as exc:
        raise HarnessError(f"{exc}; choose another loss backend (torch runs everywhere)") from None


@contextlib.contextmanager
def _cpu_threads(settings: NeuralSettings, device: torch.device):
    """torch's intra-op threads set for the fit on the CPU, and restored after it."""
    if device.type != "cpu":
        yield torch.get_num_threads()
        return
    before = torch.get_num_threads()
    threads = settings.threads or default_threads()
    torch.set_num_threads(threads)
    try:
        yield threads
    finally:
        torch.set_num_threads(before)


def _save(path: Path, payload: dict) -> None:
    """torch.save through a temporary file, so a crash mid-write leaves the previous file whole."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def _meta(family: str, settings: NeuralSettings, vocab: Vocab, block_size: int) -> dict:
    return {"family": family, "settings": settings.as_dict(), "vocab": list(vocab.itos), "block_size": block_size}


def load_model(path: str | Path, device="cpu") -> NeuralModel:
    """The model saved in `path` (a best.pt, or a checkpoint.pt: its best weights), on `device`."""
    payload = torch.load(Path(path), map_location=device, weights_only=True)
    settings = NeuralSettings(**payload["meta"]["settings"])
    model = build_model(payload["meta"]["family"], len(payload["meta"]["vocab"]), payload["meta"]["block_size"], settings)
    model.load_state_dict(payload["best_model"])
    return model.to(device).eval()


def _check_resumable(payload: dict, meta: dict, folder: Path) -> None:
    old = payload["meta"]
    for key in ("family", "vocab", "block_size"):
        if old[key] != meta[key]:
            raise HarnessError(f"cannot resume from {folder}: its checkpoint has another {key} "
                               f"({old[key]!r}, now {meta[key]!r}); resume with the same data and family or use a fresh folder")
    changed = [k for k in meta["settings"] if old["settings"].get(k) != meta["settings"][k]]
    if changed:
        k = changed[0]
        raise HarnessError(f"cannot resume from {folder}: setting {k} was {old['settings'].get(k)!r}, now "
                           f"{meta['settings'][k]!r}; resume with the checkpoint's settings or use a fresh folder")


def fit_neural(family: str, settings: NeuralSettings, train_corpus: Corpus, dev_corpus: Corpus | None,
               device="cpu", checkpoint_dir: str | Path | None = None, progress=None,
               resume: bool = False) -> NeuralFit:
    """Train `family` on `train_corpus`, keep the best-on-dev weights, return them in a NeuralFit.

    block_size 0 becomes the longest train/dev item + 1. The global RNGs are forked for the fit
    (seeded from settings.seed for the initialisation and dropout) and torch's CPU threads are
    restored after it, so the caller's state is untouched. `progress(record)` is called at every
    dev score with that score's dev_curve record. Without a dev split the last weights are kept.
    With `resume` and a checkpoint in `checkpoint_dir`, training continues from it (the same
    family, data and settings, else a HarnessError); a finished checkpoint returns at once.
    """
    device = torch.device(device)
    backend = _check_backend(settings, device)
    train = on_device(train_corpus, device)
    dev = None if dev_corpus is None else on_device(dev_corpus, device)
    if dev is not None and dev.vocab != train.vocab:
        raise HarnessError("the dev corpus has another vocabulary than train; split one corpus (or use --split files:, which shares one)")
    block_size = settings.block_size or longest_item(train, *([dev] if dev is not None else [])) + 1
    train_T = longest_item(train) + 1  # columns of a batch that holds the longest training item whole
    V = train.vocab.size
    meta = _meta(family, settings, train.vocab, block_size)
    folder = None if checkpoint_dir is None else Path(checkpoint_dir)
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    cuda = device.type == "cuda"
    rng_devices = [device.index if device.index is not None else torch.cuda.current_device()] if cuda else []
    world, rank = distributed.world_size(), distributed.rank()
    share = distributed.batch_share(settings.batch_size)  # items this rank draws per step (all of them in one process)

    with _cpu_threads(settings, device) as threads, torch.random.fork_rng(devices=rng_devices):
        torch.manual_seed(settings.seed)
        model = build_model(family, V, block_size, settings).to(device)
        if model.positions_limited and block_size < train_T:
            raise HarnessError(f"{family}: block_size {block_size} is shorter than the longest training item + 1 "
                               f"({train_T}); use block_size 0 (automatic) or at least {train_T}")
        optimizer = make_optimizer(model, settings)
        sampler = torch.Generator(device=device).manual_seed(distributed.rank_seed(settings.seed, rank))
        if rank:  # the same initial weights on every rank, but each rank's own dropout masks
            torch.manual_seed(distributed.rank_seed(settings.seed, rank))
        state = _State(horizon=settings.steps)
        best_weights = copy.deepcopy(model.state_dict())
        resumed_from = None
        payload = None
        if resume and folder is not None and (folder / CHECKPOINT).exists():
            payload = torch.load(folder / CHECKPOINT, map_location=device if world == 1 else "cpu", weights_only=True)
        if resume and world > 1:
            payload = distributed.broadcast_object(payload)  # rank 0 alone reads the folder
        if payload is not None:
            _check_resumable(payload, meta, folder)
            model.load_state_dict(payload["model"])
            optimizer.load_state_dict(payload["optimizer"])
            rngs = payload.get("rank_rngs") or [(payload["sampler"], payload["cpu_rng"], payload.get("cuda_rng"))]
            if len(rngs) != world:
                raise HarnessError(f"cannot resume from {folder}: its checkpoint was trained by {len(rngs)} ranks, now {world}; "
                                   f"resume with the same number of ranks ({len(rngs)})")
            sampler_state, cpu_rng, cuda_rng = rngs[rank]
            sampler.set_state(sampler_state.cpu())
            torch.set_rng_state(cpu_rng.cpu())
            if cuda:
                torch.cuda.set_rng_state(cuda_rng.cpu(), device)
            best_weights = payload["best_model"]
            state = _State(**payload["state"])
            resumed_from = state.step

        trained = model
        if world > 1:  # averages the gradients over ranks in backward (and broadcasts rank 0's weights now)
            trained = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if cuda else None)
        forward = torch.compile(trained) if settings.compile else trained
        # Trimmed batches (T = the longest drawn item + 1) cost one host sync and a new shape per
        # step: cheap on the CPU, where they save the padding's work; on CUDA or under compile the
        # batch keeps train_T columns, so no step waits on the host and shapes stay static.
        static_T = train_T if (cuda or settings.compile) else None
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda and settings.bf16 else contextlib.nullcontext()
        weights = train.item_weights().to(torch.float64)
        lengths = train.lengths
        pending, pending_tokens = [], torch.zeros((), dtype=torch.int64, device=device)

        def score_dev():
            """Score dev, keep the best weights, write the checkpoint; True when patience ran out."""
            nonlocal best_weights, pending, pending_tokens
            losses = torch.stack(pending) if pending else torch.zeros(0, device=device)
            if world > 1:  # each rank logged its scaled loss: their mean is the union's token mean
                losses = distributed.all_reduce_sum(losses.double()) / world
            losses = losses.tolist()
            pending = []
            state.tokens += int(pending_tokens)
            pending_tokens = torch.zeros((), dtype=torch.int64, device=device)
            bad = next((i for i, v in enumerate(losses) if not math.isfinite(v)), None)
            if bad is not None:
                raise HarnessError(f"{family} training diverged at step {len(state.train_losses) + bad + 1} "
                                   f"(loss {losses[bad]}); lower lr (now {settings.lr:g})")
            state.train_losses.extend(losses)
            dev_nll = corpus_nll(model, dev) if dev is not None and rank == 0 else None
            if dev is not None and world > 1:  # the same weights everywhere: rank 0 scores, every rank decides with it
                dev_nll = distributed.broadcast_floats([dev_nll if rank == 0 else 0.0], device)[0]
            record = {"step": state.step, "dev_nll": dev_nll, "train_loss": sum(losses) / len(losses) if losses else None,
                      "lr": lr_at(max(0, state.step - 1), settings, state.horizon), "seconds": state.seconds + (time.perf_counter() - started)}
            state.dev_curve.append(record)
            if dev_nll is None or dev_nll < state.best_dev:
                state.best_dev = dev_nll if dev_nll is not None else state.best_dev
                state.best_step, state.bad_scores = state.step, 0
                best_weights = copy.deepcopy(model.state_dict())
                if folder is not None:
                    _save(folder / BEST, {"meta": meta, "best_model": best_weights, "best_step": state.best_step,
                                          "best_dev_nll": dev_nll})
            else:
                state.bad_scores += 1
            return dev is not None and settings.patience > 0 and state.bad_scores >= settings.patience

        def checkpoint():
            rngs = None
            if world > 1:  # every rank's own generators, gathered on every rank (a collective: all call it)
                rngs = distributed.gather_objects((sampler.get_state(), torch.get_rng_state(),
                                                   torch.cuda.get_rng_state(device).cpu() if cuda else None))
            if folder is None:
                return
            payload = {"meta": meta, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                       "sampler": sampler.get_state(), "cpu_rng": torch.get_rng_state(),
                       "best_model": best_weights, "state": dict(vars(state))}
            if cuda:
                payload["cuda_rng"] = torch.cuda.get_rng_state(device)
            if rngs is not None:
                payload["rank_rngs"] = rngs
            _save(folder / CHECKPOINT, payload)

        model.train()
        started = time.perf_counter()
        while state.stop_reason is None:
            if state.step >= settings.steps:
                state.stop_reason = "steps"
                break
            elapsed = state.seconds + time.perf_counter() - started
            time_up = bool(settings.time_budget_seconds and elapsed >= settings.time_budget_seconds)
            if time_up and world == 1:
                state.stop_reason = "time"
                break
            rows = torch.multinomial(weights, share, replacement=True, generator=sampler)
            x, y = encode_batch(train, rows, static_T)
            step_tokens, scale = (lengths[rows] + 1).sum(), 1.0
            if world > 1:
                # one all_reduce: the batch's tokens over all ranks, and whether any rank's clock ran out (the
                # ranks must stop at the same step, or one would wait for the others' gradients forever)
                totals = distributed.all_reduce_sum(torch.stack([step_tokens.double(), torch.tensor(float(time_up),
                                                                 dtype=torch.float64, device=device)]))
                if float(totals[1]) > 0:
                    state.stop_reason = "time"
                    break
                # DDP averages gradients: world x (own tokens / all tokens) x own token mean averages to the
                # token mean over every rank's draws (distributed.batch_part's argument, per step)
                scale, step_tokens = world * step_tokens.double() / totals[0], totals[0].long()
            for group in optimizer.param_groups:
                group["lr"] = lr_at(state.step, settings, state.horizon)
            with autocast:
                logits = forward(x)
            logits = logits.reshape(-1, V)
            if backend in ("torch", "manual"):
                logits = logits.float()  # F.cross_entropy of bf16 logits would reduce in bf16
            # the logits are a temporary of this step: a fused backend may write the gradient over them
            loss = kernels.cross_entropy(logits, y.reshape(-1), ignore_index=IGNORE, backend=backend, overwrite_logits=True)
            if world > 1:
                loss = loss * scale
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            pending.append(loss.detach().float())
            pending_tokens += step_tokens
            state.step += 1
            if state.step % settings.eval_interval == 0:
                if settings.time_budget_seconds:
                    # the schedule ends where the budget will: at each score, the steps the time left
                    # allows at the mean speed so far (a shared machine's speed drifts during a run)
                    elapsed = state.seconds + time.perf_counter() - started
                    left = max(0.0, settings.time_budget_seconds - elapsed)
                    state.horizon = min(settings.steps, state.step + int(state.step / elapsed * left))
                    if world > 1:  # one schedule for all ranks: rank 0's clock
                        state.horizon = int(distributed.broadcast_floats([state.horizon], device)[0])
                if score_dev():
                    state.stop_reason = "patience"
                state.seconds += time.perf_counter() - started
                started = time.perf_counter()
                checkpoint()
                if progress is not None:
                    progress(state.dev_curve[-1])
        if pending:  # the steps since the last dev score get theirs
            score_dev()
            if progress is not None:
                progress(state.dev_curve[-1])
        state.seconds += time.perf_counter() - started
        checkpoint()
        model.load_state_dict(best_weights)
        model.eval()

    best_dev = state.best_dev if dev is not None else None
    return NeuralFit(model, family, settings, block_size, state.seconds, state.step, state.train_losses,
                     state.dev_curve, state.best_step, best_dev, state.stop_reason, state.tokens, threads,
                     state.horizon, resumed_from)
