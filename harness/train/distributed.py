"""Many devices: torchrun starts one process (rank) per device; counts are summed with all_reduce,
gradient models train with DistributedDataParallel.

    torchrun --standalone --nproc_per_node=K -m harness run ...                  one machine, K ranks
    torchrun --nnodes=N --node_rank=I --nproc_per_node=K \\
             --rdzv-backend=c10d --rdzv-endpoint=HOST:PORT -m harness run ...     N machines

torchrun sets WORLD_SIZE, RANK and LOCAL_RANK in each process; `launched` reads them and `init`
joins the process group: NCCL where the run's device is CUDA (rank r on cuda:LOCAL_RANK), gloo on
CPU. Every rank loads the whole corpus and draws the same seeded split; what is a sum over
windows is split by rank:

- counts: each rank counts a contiguous shard of the windows and the (V^(n-1), V) float64 tables
  are summed with all_reduce. The counts are sums of integer weights, which float64 adds exactly
  below 2^53 in any order, so the summed table equals the single-process table bit for bit.
- gradient models: each rank computes the loss on its part of the batch; DDP averages the
  gradients (see `batch_part`).
- neural families: each rank draws its own share of every minibatch (its generator seeded by
  `rank_seed`) and scales its token-mean loss by world x (its tokens / the batch's), so the gradient
  DDP averages is that of the token mean over the union of the ranks' draws; rank 0 alone scores dev
  and broadcasts the score (and, under a time budget, the schedule's end), so every rank takes the same
  decisions and holds the same weights; rank 0 alone writes checkpoints, holding every rank's RNGs.
- evaluation and sampling run on every rank over the full data from identical tables (the
  same numbers as one process, no communication); only rank 0 writes files and prints.

No state lives here beyond what torch.distributed keeps: each function takes what it needs.
"""
from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import torch
import torch.distributed as dist
from torch import nn

from harness.data.corpus import BOUNDARY, Corpus, ExpandedCorpus
from harness.core.errors import HarnessError
from harness.data.ngrams import Windows, WindowStream, _row_end_at_or_after, count, count_chunked


def launched(environ: Mapping[str, str] = os.environ) -> bool:
    """True in a process torchrun started with more than one rank in all (WORLD_SIZE > 1)."""
    return int(environ.get("WORLD_SIZE", "1")) > 1


TORCHRUN_MODULES = ("torch.distributed.run", "torch.distributed.launch")
TORCHRUN_SWITCHES = ("--standalone", "--no-python", "--no_python", "--run-path", "--run_path")  # flags without a value


def launcher_from_cmdline(argv: list[str]) -> str | None:
    """The launcher part of a torchrun agent's command line, as its user typed it ("torchrun
    --standalone --nproc_per_node=2 -m harness"), or None where `argv` is not torchrun's.

    `torchrun ...` and `python -m torch.distributed.run ...` both count; the flags are those
    before the rank's own `-m MODULE` or script.
    """
    start = None
    for i, arg in enumerate(argv):
        if Path(arg).name == "torchrun":
            start = i + 1
            break
        if arg == "-m" and i + 1 < len(argv) and argv[i + 1] in TORCHRUN_MODULES:
            start = i + 2
            break
    if start is None:
        return None
    flags, rest = [], iter(argv[start:])
    for arg in rest:
        if arg in ("-m", "--module") or not arg.startswith("-"):
            break  # the rank's module or script
        flags.append(arg)
        if "=" not in arg and arg not in TORCHRUN_SWITCHES:
            flags.append(next(rest, ""))  # "--nproc_per_node 2": the flag's value
    return shlex.join(["torchrun", *flags, "-m", "harness"])


def launcher(environ: Mapping[str, str] = os.environ, proc: Path = Path("/proc")) -> str:
    """How this rank was started, for the report's command line: torchrun's own flags
    (--standalone, --rdzv-*) never reach the ranks, so they are read from the parent process,
    torchrun's agent; where /proc cannot say, the one flag the environment tells (LOCAL_WORLD_SIZE)."""
    try:
        argv = (proc / str(os.getppid()) / "cmdline").read_bytes().decode().split("\0")
        found = launcher_from_cmdline([a for a in argv if a])
    except (OSError, UnicodeDecodeError):
        found = None
    return found or f"torchrun --nproc_per_node={environ.get('LOCAL_WORLD_SIZE', '?')} -m harness"


def init(device: torch.device, environ: Mapping[str, str] = os.environ) -> torch.device:
    """Join torchrun's process group (NCCL for CUDA, gloo for CPU); return this rank's device.

    On CUDA rank r of a machine takes cuda:LOCAL_RANK. The rendezvous (MASTER_ADDR, MASTER_PORT,
    RANK, WORLD_SIZE) is read by torch from the environment torchrun set.
    """
    if device.type == "cuda":
        device = torch.device("cuda", int(environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device)
    else:
        dist.init_process_group("gloo")
    return device


def teardown() -> None:
    """Leave the process group, if this process joined one."""
    if active():
        dist.destroy_process_group()


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's rank, 0 without a process group."""
    return dist.get_rank() if active() else 0


def world_size() -> int:
    """Ranks in all, 1 without a process group."""
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """Rank 0, the one that writes files and prints (every process when there is no group)."""
    return rank() == 0


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum `tensor` over ranks in place and return it (unchanged without a process group)."""
    if active():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def mean_over_ranks(value: torch.Tensor) -> float:
    """The average over ranks of a scalar tensor, as a float: what DDP does to gradients, done to a loss."""
    if not active():
        return value.item()
    total = value.detach().to(torch.float64).reshape(1).clone()
    return float(all_reduce_sum(total)) / world_size()


def shard_range(n: int, rank: int, world: int) -> tuple[int, int]:
    """[start, stop) of rank's contiguous part of n things: sizes differ by at most one, in rank order."""
    return rank * n // world, (rank + 1) * n // world


def shard_windows(win: Windows, rank: int, world: int) -> Windows:
    """Rank's contiguous slice of the windows (views, no copy). Counts add over any cut."""
    start, stop = shard_range(len(win.target), rank, world)
    return Windows(win.order, win.vocab_size, win.context[start:stop], win.target[start:stop],
                   win.weight[start:stop], win.item[start:stop])


def summed_counts(win: Windows) -> torch.Tensor:
    """count(win) computed a shard per rank and summed over ranks: (V^(n-1), V) float64, exact."""
    return all_reduce_sum(count(shard_windows(win, rank(), world_size())))


ROW_COUNT_STEP = 1 << 26  # tokens compared at once when counting a shard's rows (a 64 MiB bool temporary)


def shard_rows(rows: Corpus | ExpandedCorpus, rank: int, world: int) -> Corpus | ExpandedCorpus:
    """Rank's contiguous part of a corpus's rows: items [a, b) of a Corpus; whole rows of an
    ExpandedCorpus, cut at the end token after rank * N / world of its N tokens."""
    if isinstance(rows, Corpus):
        start, stop = shard_range(rows.num_unique, rank, world)
        return rows.subset(torch.arange(start, stop, device=rows.device))
    tokens = rows.tokens
    n = tokens.numel()
    start, stop = (_row_start_at_or_after(tokens, n * r // world) for r in (rank, rank + 1))
    part = tokens[start:stop]
    num_rows = sum(int((part[i:i + ROW_COUNT_STEP] == BOUNDARY).sum()) for i in range(0, part.numel(), ROW_COUNT_STEP))
    return ExpandedCorpus(source=rows.source, tokens=part, num_rows=num_rows)


def _row_start_at_or_after(tokens: torch.Tensor, position: int) -> int:
    """The first row start at or after `position` (0 stays 0; past the end is the end)."""
    return 0 if position <= 0 else _row_end_at_or_after(tokens, position)


@dataclass(frozen=True)
class SummedStream(WindowStream):
    """A WindowStream whose dense counts are counted over rank's rows by each rank and summed.

    Counting and scoring a dense table read a stream only through `counts()`, so both are split
    across ranks; whatever reads `chunks()` (a sparse model) still sees the whole stream.
    """

    rank: int = 0
    world: int = 1

    def counts(self) -> torch.Tensor:
        if "counts" not in self._cache:
            part = WindowStream(shard_rows(self.corpus, self.rank, self.world), self.order, self.max_bytes)
            self._cache["counts"] = all_reduce_sum(count_chunked(part))
        return self._cache["counts"]


def summed_stream(stream: WindowStream) -> SummedStream:
    return SummedStream(stream.corpus, stream.order, stream.max_bytes, rank=rank(), world=world_size())


def rank_seed(seed: int, rank: int) -> int:
    """The seed of what rank `rank` draws on its own (its minibatches, its dropout): seed + rank, mod 2^64.
    Rank 0's is `seed` itself, so one process draws exactly as it does without torchrun."""
    return (seed + rank) % 2**64


def batch_share(batch_size: int) -> int:
    """This rank's share of a minibatch of `batch_size` items drawn across ranks (sizes differ by at most one)."""
    world = world_size()
    if batch_size < world:
        raise HarnessError(f"a minibatch of {batch_size} items cannot be shared by {world} ranks; "
                           "give nn_batch_size (--nn-batch-size) at least the number of ranks")
    start, stop = shard_range(batch_size, rank(), world)
    return stop - start


def broadcast_floats(values: list[float], device: torch.device) -> list[float]:
    """Rank 0's `values` on every rank, as float64 (exactly), unchanged without a process group."""
    if not active():
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.broadcast(tensor, src=0)
    return tensor.tolist()


def broadcast_object(obj):
    """Rank 0's picklable `obj` on every rank (itself without a process group)."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(obj) -> list:
    """Every rank's picklable `obj`, in rank order, on every rank ([obj] without a process group)."""
    if not active():
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def batch_part(num_rows: int, weight: torch.Tensor | None = None) -> tuple[slice, float]:
    """This rank's contiguous part of a batch of rows and the factor its mean loss is scaled by.

    DistributedDataParallel averages gradients over ranks, but the full-batch loss is the sum over
    ranks of each part's weighted NLL over the *global* total weight. So a rank's loss is its
    part's weighted mean times world x (its part's weight / the batch's weight): the average over
    ranks of these losses, and so of their gradients, is the full-batch loss and gradient. A term
    every rank computes whole, like the regulariser, averages to itself and is added unscaled.
    `weight` (num_rows,) holds the rows' weights, None for 1 each. Without a process group the
    part is the whole batch and the factor exactly 1.
    """
    world = world_size()
    if world > 1 and num_rows < world:
        raise HarnessError(f"a batch of {num_rows} rows cannot be split over {world} ranks; use a larger batch or fewer ranks")
    start, stop = shard_range(num_rows, rank(), world)
    if world == 1:
        return slice(start, stop), 1.0
    if weight is None:
        share = (stop - start) / num_rows
    else:
        share = float(weight[start:stop].sum(dtype=torch.float64)) / float(weight.sum(dtype=torch.float64))
    return slice(start, stop), world * share


class _Loss(nn.Module):
    """Parameter tables and a loss of them as a module, the shape DistributedDataParallel wraps."""

    def __init__(self, tables: list[torch.Tensor], loss: Callable[..., torch.Tensor]):
        super().__init__()
        self.tables = nn.ParameterList(tables)  # Parameters sharing the tables' storage
        self.loss = loss

    def forward(self, *args):
        return self.loss(*args)


def data_parallel(tables: list[torch.Tensor], loss: Callable[..., torch.Tensor], device: torch.device):
    """(Parameters, ddp_loss): the tables as Parameters of a DDP module whose forward is `loss`.

    The caller puts the returned Parameters in place of its tables (so `loss` reads them) and calls
    `ddp_loss(...)` instead of `loss(...)`; backward then averages the gradients over ranks.
    DDP also broadcasts rank 0's tables at the start (they are equal anyway: seeded).
    """
    module = _Loss(tables, loss)
    ddp = nn.parallel.DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)
    return list(module.tables), ddp
