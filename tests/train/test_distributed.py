"""Many devices: 2 gloo ranks on CPU give the counts of one process exactly and the same trained
gradient bigram within float tolerance; a neural model's DDP step is one process's step on the union
of the ranks' draws; `torchrun -m harness run` writes once, the same results."""
import fcntl
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from harness.core.constants import LECTURE_SEED
from harness.train import distributed
from harness.cli import main
from harness.data.corpus import expand_corpus, load_corpus
from harness.data.ngrams import WindowStream, count, count_chunked, windows
from harness.data.splits import split_corpus
from harness.models.neural.common import IGNORE, NeuralSettings, encode_batch
from harness.models.neural.families import build_model
from harness.train.fit import GradientSettings, fit_count, fit_gradient
from harness.train.neural import fit_neural, lr_at, make_optimizer
from tests.conftest import REPO

pytestmark = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                reason="torch.distributed with the gloo backend is not available in this torch build")

WORLD = 2
SEED = LECTURE_SEED
CORPUS = "ssa:1900"  # 3,394 names, 23 K windows: small enough for 2 processes on 2 cores
WEIGHTED = "ssa-births:1900"
STREAM_BUDGET = {"weighted": 4096, "expanded": 2**20}  # bytes: ~100-250 chunks, so shards are cut mid-stream
FULL = GradientSettings(steps=20)
MINIBATCH = GradientSettings(steps=10, batch_size=257)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measurements() -> dict:
    """What a rank (or the single process) computes: counts, count NLLs, gradient losses and tables."""
    splits = split_corpus(load_corpus(CORPUS), SEED)
    out = {}
    for order in (2, 3):
        train, dev = windows(splits["train"], order), windows(splits["dev"], order)
        out[f"counts{order}"] = distributed.summed_counts(train)
        fit = fit_count(train, dev, None, (0.1, 0.5, 1.0), counter=distributed.summed_counts)
        out[f"count_dev_nll{order}"] = [t["dev_nll"] for t in fit.tuning]
    weighted = split_corpus(load_corpus(WEIGHTED), SEED)["train"]
    for name, rows in (("weighted", weighted), ("expanded", expand_corpus(weighted, 2**20))):
        stream = distributed.summed_stream(WindowStream(rows, 3, STREAM_BUDGET[name]))
        out[f"stream_{name}"] = stream.counts()
    # weighted rows: the ranks' halves carry very different weight, so each must be scaled by its share
    bigram = windows(weighted, 2)
    for name, settings in (("full", FULL), ("minibatch", MINIBATCH)):
        fit = fit_gradient(bigram, settings, "cpu")
        out[f"losses_{name}"] = torch.tensor(fit.losses, dtype=torch.float64)
        out[f"table_{name}"] = fit.model.tables[0].detach().clone()
    return out


# an odd batch: the ranks draw 3 and 4 names, so their token counts differ and the loss scaling matters
NEURAL = NeuralSettings(n_embd=8, n_embd2=16, block_size=5, batch_size=7, lr=0.01, steps=2, warmup_steps=0,
                        eval_interval=1, threads=1, loss="torch")


def neural_steps() -> dict:
    """A rank's MLP after NEURAL.steps DDP steps: its weights and the gradient of its last step (left in .grad)."""
    train = split_corpus(load_corpus(CORPUS), SEED)["train"]
    model = fit_neural("mlp", NEURAL, train, None).model
    return {"params": {n: p.detach().clone() for n, p in model.named_parameters()},
            "grads": {n: p.grad.detach().clone() for n, p in model.named_parameters()}}


def _rank(rank: int, port: int, path: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(WORLD),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    assert distributed.launched()
    distributed.init(torch.device("cpu"))
    try:
        result = measurements()
        result["neural"] = neural_steps()
        result["world"] = distributed.world_size()
        torch.save(result, f"{path}.{rank}")
    finally:
        distributed.teardown()


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> list[dict]:
    path = str(tmp_path_factory.mktemp("ranks") / "result")
    mp.spawn(_rank, args=(free_port(), path), nprocs=WORLD, join=True)
    return [torch.load(f"{path}.{r}") for r in range(WORLD)]


@pytest.fixture(scope="module")
def one_process() -> dict:
    assert not distributed.active()
    return measurements()


def test_shards_cover_every_row_once():
    for n in (0, 1, 2, 7, 23236):
        for world in (1, 2, 3, 8):
            parts = [distributed.shard_range(n, r, world) for r in range(world)]
            assert parts[0][0] == 0 and parts[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
            assert max(b - a for a, b in parts) - min(b - a for a, b in parts) <= 1


def test_counts_equal_one_process_exactly(two_ranks, one_process):
    splits = split_corpus(load_corpus(CORPUS), SEED)
    weighted = split_corpus(load_corpus(WEIGHTED), SEED)["train"]
    for result in two_ranks:
        assert result["world"] == WORLD
        for order in (2, 3):  # against ngrams.count in one process, the oracle
            assert torch.equal(result[f"counts{order}"], count(windows(splits["train"], order)))
            assert result[f"count_dev_nll{order}"] == one_process[f"count_dev_nll{order}"]
        expected = count_chunked(WindowStream(weighted, 3, STREAM_BUDGET["weighted"]))
        assert torch.equal(result["stream_weighted"], expected)
        assert torch.equal(result["stream_expanded"], expected)  # expanded == weighted, across ranks too


@pytest.mark.parametrize("batch", ["full", "minibatch"])
def test_gradient_bigram_trains_as_in_one_process(two_ranks, one_process, batch):
    expected = one_process[f"losses_{batch}"]
    assert len(expected) == (FULL if batch == "full" else MINIBATCH).steps
    for result in two_ranks:
        torch.testing.assert_close(result[f"losses_{batch}"], expected, rtol=1e-5, atol=0)
        torch.testing.assert_close(result[f"table_{batch}"], one_process[f"table_{batch}"], rtol=1e-4, atol=1e-5)
    # every rank holds the same table after DDP's averaged steps
    assert torch.equal(two_ranks[0][f"table_{batch}"], two_ranks[1][f"table_{batch}"])


def test_neural_ddp_step_is_one_step_on_the_union_of_the_ranks_draws(two_ranks):
    """The oracle: one process, plain F.cross_entropy's token mean over the union of what each rank drew
    (rank r's share of the batch from a generator seeded rank_seed(seed, r)), AdamW from the same init."""
    train = split_corpus(load_corpus(CORPUS), SEED)["train"]
    V = train.vocab.size
    torch.manual_seed(NEURAL.seed)
    model = build_model("mlp", V, NEURAL.block_size, NEURAL)
    optimizer = make_optimizer(model, NEURAL)
    samplers = [torch.Generator().manual_seed(distributed.rank_seed(NEURAL.seed, r)) for r in range(WORLD)]
    weights = train.item_weights().double()
    for step in range(NEURAL.steps):
        parts = [torch.multinomial(weights, size, replacement=True, generator=g) for size, g in zip((3, 4), samplers)]
        assert not torch.equal(parts[0], parts[1][:3])  # the ranks draw different names
        x, y = encode_batch(train, torch.cat(parts))
        loss = torch.nn.functional.cross_entropy(model(x).reshape(-1, V), y.reshape(-1), ignore_index=IGNORE)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, NEURAL, NEURAL.steps)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    for result in two_ranks:
        for name, p in model.named_parameters():
            torch.testing.assert_close(result["neural"]["grads"][name], p.grad, rtol=0, atol=1e-6)
            torch.testing.assert_close(result["neural"]["params"][name], p.detach(), rtol=0, atol=1e-6)
    for name in two_ranks[0]["neural"]["params"]:  # DDP keeps every rank's weights identical
        assert torch.equal(two_ranks[0]["neural"]["params"][name], two_ranks[1]["neural"]["params"][name])


VOLATILE = ("fit_seconds", "fit_seconds_range", "steps_per_second")


def test_torchrun_run_writes_once_and_equals_one_process(tmp_path):
    grid = ["--corpus", CORPUS, "--orders", "2,3", "--methods", "count,gradient,mlp", "--smoothing", "auto,1",
            "--steps", "20", "--samples", "5", "--device", "cpu", "--nn-embd", "8", "--nn-embd2", "16",
            "--nn-batch-size", "15", "--nn-lr", "0.01", "--nn-warmup", "2", "--nn-steps", "20", "--nn-eval-interval", "10"]
    single, many = tmp_path / "single", tmp_path / "many"
    assert main(["run", *grid, "--out", str(single), "--quiet"]) == 0
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    env.pop("TRITON_INTERPRET", None)
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={WORLD}",
                           "-m", "harness", "run", *grid, "--out", str(many)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # rank 0 alone prints: one corpus line, one table, one report line
    assert proc.stdout.count("corpus ssa:1900") == 1 and proc.stdout.count("report:") == 1, proc.stdout
    assert sorted(p.name for p in many.iterdir()) == sorted(p.name for p in single.iterdir())
    one = json.loads((single / "results.json").read_text())
    two = json.loads((many / "results.json").read_text())
    assert two["run"]["world_size"] == WORLD and "world_size" not in one["run"]
    assert two["run"]["command"].startswith(f"torchrun --standalone --nproc_per_node={WORLD} -m harness run")
    assert len(two["results"]) == len(one["results"]) == 7
    for a, b in zip(one["results"], two["results"]):
        assert a["status"] == b["status"] == "ok"
        if a["method"] == "mlp":  # DDP: the ranks drew other names than one process does, so other numbers
            assert b["steps_trained"] == a["steps_trained"] == 20 and [c["step"] for c in b["dev_curve"]] == [10, 20]
            assert b["tokens_trained"] > 0 and abs(b["dev_nll"] - a["dev_nll"]) < 0.2 and len(b["samples"]) == 5
            # rank 0 wrote the checkpoint once, with both ranks' generators, so --resume can go on under torchrun
            folder = next((many / "checkpoints").iterdir())
            assert len(torch.load(folder / "checkpoint.pt", weights_only=True)["rank_rngs"]) == WORLD
            continue
        a, b = ({k: v for k, v in r.items() if k not in VOLATILE} for r in (a, b))
        if a["method"] == "count":
            assert a == b  # counts are exact, so are their NLLs, tuning and samples
            continue
        torch.testing.assert_close(b.pop("train_losses"), a.pop("train_losses"), rtol=1e-5, atol=0)
        for key in [k for k, v in a.items() if isinstance(v, float)]:
            assert b.pop(key) == pytest.approx(a.pop(key), rel=1e-5, abs=1e-7), key
        for key in [k for k in a if k.endswith("_nll_ci")]:  # intervals of float-rounded per-item NLLs
            assert b.pop(key) == pytest.approx(a.pop(key), rel=1e-5), key
        for split, per_item in a.pop("item_nll").items():
            assert b["item_nll"].pop(split) == pytest.approx(per_item, rel=1e-5), split
        assert b.pop("item_nll") == {}
        assert a == b  # the rest (samples included) is identical
    assert (many / "split" / "train.txt").read_text() == (single / "split" / "train.txt").read_text()


@pytest.mark.parametrize("argv, expected", [
    (["/v/bin/python", "/v/bin/torchrun", "--standalone", "--nproc_per_node=2", "-m", "harness", "run", "--orders", "2"],
     "torchrun --standalone --nproc_per_node=2 -m harness"),
    (["python", "-m", "torch.distributed.run", "--nnodes=2", "--rdzv-endpoint=h:29500", "-m", "harness", "run"],
     "torchrun --nnodes=2 --rdzv-endpoint=h:29500 -m harness"),
    (["torchrun", "--nproc_per_node", "2", "--standalone", "-m", "harness"], "torchrun --nproc_per_node 2 --standalone -m harness"),
    (["python", "-m", "harness", "run"], None),
    (["bash"], None),
])
def test_launcher_reads_torchrun_flags_from_its_command_line(argv, expected):
    assert distributed.launcher_from_cmdline(argv) == expected


def lock_freed(path, deadline: float) -> bool:
    """Whether the flock on `path` could be taken (and was dropped again) before `deadline`."""
    with open(path) as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.time() > deadline:
                    return False
                time.sleep(0.01)
                continue
            fcntl.flock(handle, fcntl.LOCK_UN)
            return True


def torchrun(*args, **popen):
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    env.pop("TRITON_INTERPRET", None)
    return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={WORLD}",
                             "-m", "harness", "run", *args], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen)


def descendants(pid: int) -> list[int]:
    """Every live process below `pid`, read from /proc."""
    parent = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat") as stat:
                parent[int(entry)] = int(stat.read().rsplit(")", 1)[1].split()[1])
        except OSError:  # ended meanwhile
            continue
    found, frontier = [], {pid}
    while frontier:
        frontier = {p for p, pp in parent.items() if pp in frontier}
        found += frontier
    return found


def test_torchrun_resumes_a_killed_neural_training_to_the_uninterrupted_losses(tmp_path):
    """README, Many devices: rank 0's checkpoint holds every rank's generators, so `--resume` under torchrun goes
    on from it with the losses of an uninterrupted torchrun run; one process (another number of ranks) is refused.
    Oracle: the same grid under torchrun, never interrupted."""
    grid = ["--corpus", CORPUS, "--orders", "2", "--methods", "mlp", "--samples", "2", "--device", "cpu", "--quiet",
            "--no-figures", "--nn-embd", "8", "--nn-embd2", "16", "--nn-batch-size", "15", "--nn-lr", "0.01",
            "--nn-warmup", "2", "--nn-steps", "120", "--nn-eval-interval", "10", "--nn-dropout", "0.1"]
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    proc = torchrun(*grid, "--out", str(whole))
    _, err = proc.communicate(timeout=180)  # (communicate: a full pipe never stalls the ranks)
    assert proc.returncode == 0, err[-3000:]
    (expected,) = json.loads((whole / "results.json").read_text())["results"]

    proc = torchrun(*grid, "--out", str(cut))
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not list(cut.glob("checkpoints/*/checkpoint.pt")):
        time.sleep(0.005)
    if proc.poll() is not None:
        pytest.skip("the run ended before a checkpoint could be caught (a fast machine)")
    ranks = descendants(proc.pid)  # killed one by one: torchrun starts them in sessions of their own
    for pid in [*ranks, proc.pid]:
        os.kill(pid, signal.SIGKILL)
    proc.wait(timeout=30)
    # Until the killed rank 0's lock is dropped. Not "until the ranks are zombies": a thread-group leader shows
    # Z while its other threads still exit and still share its open files, the lock among them (a CI failure).
    assert lock_freed(cut / ".lock", deadline=time.time() + 30), "the killed ranks still hold the run folder's lock"
    saved = [r["status"] for r in json.loads((cut / "results.json").read_text())["results"]]
    if saved == ["ok"]:
        pytest.skip("the training ended between seeing the checkpoint and the kill (a stalled test process)")
    assert saved == [], saved  # killed: the configuration was never recorded, only its checkpoint written

    assert main(["run", "--resume", str(cut), "--quiet", "--no-figures"]) == 1  # one rank: refused, the checkpoint kept
    (refused,) = json.loads((cut / "results.json").read_text())["results"]
    assert refused["status"] == "failed" and "trained by 2 ranks, now 1" in refused["error"]

    proc = torchrun("--resume", str(cut), "--quiet", "--no-figures")
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err[-3000:]
    (resumed,) = json.loads((cut / "results.json").read_text())["results"]
    assert resumed["status"] == "ok" and 0 < resumed["resumed_from"] < 120, (resumed["status"], resumed.get("resumed_from"))
    assert resumed["train_losses"] == expected["train_losses"]  # exactly: every rank's draws and dropout went on
    assert [c["dev_nll"] for c in resumed["dev_curve"]] == [c["dev_nll"] for c in expected["dev_curve"]]
    assert resumed["samples"] == expected["samples"]
