"""The training benchmark: steps per second of full-batch gradient training, every variant checked against the baseline."""
import pandas as pd
import pytest

from harness.bench import train as bench
from harness.bench.config import BenchConfig, make_bench_config
from harness.core.errors import HarnessError
from kernels import reference
from tests.bench.helpers import parse

NAMES = ["emma", "olivia", "ava", "isabella", "sophia", "mia", "amelia", "harper", "evelyn", "abigail",
         "liam", "noah", "oliver", "elijah", "james", "william", "benjamin", "lucas", "henry", "theodore"]


def train_config(tmp_path, *extra: str) -> BenchConfig:
    corpus = tmp_path / "names.txt"
    corpus.write_text("\n".join(NAMES * 3) + "\n")
    return make_bench_config(parse(
        "--device", "cpu", "--out", str(tmp_path / "out"), "--suite", "train", "--corpus", str(corpus),
        "--orders", "2,3", "--backends", "torch,manual,triton", "--train-steps", "3", "--train-repeats", "1", *extra))


def test_training_bench_rows_and_report(tmp_path):
    from harness.cli import main

    config = train_config(tmp_path)
    rows = bench.run_train_bench(config, log=lambda line: None)
    by = {(r["variant"], r["order"]): r for r in rows}
    for order in (2, 3):
        assert by[("index-torch", order)]["speedup_vs_eager"] == 1.0
        counts = by[("counts", order)]
        assert counts["status"] == "ok" and counts["verified"] == "yes" and counts["grad_err"] < 1e-6
        assert by[("index-manual", order)]["status"] == "ok"
        assert "needs CUDA" in by[("index-triton", order)]["note"]
        assert abs(counts["last_loss"] - by[("index-torch", order)]["last_loss"]) < 1e-4
    assert ("index-compiled", 2) not in by  # --backends leaves the compiled backend out
    # --quick: the neural rows `--suite train` also runs (every family x backend, each checked against torch's
    # losses, a failed one failing the command) take 20 steps instead of 100; the rows above keep their flags
    argv = ["bench", "--device", "cpu", "--out", str(tmp_path / "cli"), "--suite", "train", "--corpus",
            str(tmp_path / "names.txt"), "--orders", "2", "--backends", "torch", "--train-steps", "2", "--train-repeats", "1",
            "--quick"]
    assert main(argv) == 0
    df = pd.read_csv(tmp_path / "cli" / "train.csv", keep_default_na=False, na_values=[""])
    assert list(df.columns) == bench.TRAIN_CSV_COLUMNS and set(df.variant) == {"index-torch", "onehot-torch", "counts"}
    md = (tmp_path / "cli" / "bench.md").read_text()
    assert "## Environment" in md and "## Training" in md and "### order 2" in md and "**" in md


def test_a_wrong_backend_fails_the_training_check(tmp_path, monkeypatch):
    original = reference.manual_cross_entropy
    monkeypatch.setattr(reference, "manual_cross_entropy", lambda *a, **k: original(*a, **k) * 1.1)
    with pytest.raises(HarnessError, match="index-manual .*leaves the baseline's losses"):
        bench.run_train_bench(train_config(tmp_path), log=lambda line: None)
