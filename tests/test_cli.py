"""The command line as a user meets it: real subprocesses, exit codes, one-line errors."""
import json
import math
import os
import subprocess
import sys

import pytest

from harness.core.constants import LECTURE_SEED
from tests.conftest import REPO


def harness(*args, cwd=None):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("TRITON_INTERPRET", None)
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, cwd=cwd or REPO, env=env, timeout=300)


def assert_clean_error(proc, *fragments):
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def assert_clean_error_in_process(capsys, args, *fragments):
    """The same contract through harness.cli.main in this process (no interpreter start-up per case)."""
    from harness.cli import main

    capsys.readouterr()
    code = main(list(args))
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0]


def test_score_reproduces_the_lecture(names_path):
    proc = harness("score", "--corpus", str(names_path), "--order", "2", "--smoothing", "1", "andrej", "andrejq")
    assert proc.returncode == 0, proc.stderr
    assert "mean NLL 3.036772" in proc.stdout and "mean NLL 3.483402" in proc.stdout
    proc = harness("score", "--corpus", str(names_path), "--order", "2", "--smoothing", "0", "andrejq")
    assert proc.returncode == 0 and "mean NLL inf" in proc.stdout


def test_sample_lecture_switch(names_path):
    proc = harness("sample", "--corpus", str(names_path), "--order", "2", "--smoothing", "1", "--num", "5", "--lecture")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["cexze", "momasurailezitynn", "konimittain", "llayn", "ka"]


def test_run_on_names_split_none_reproduces_reference(names_path, tmp_path):
    out = tmp_path / "run"
    proc = harness("run", "--corpus", str(names_path), "--orders", "2", "--smoothing", "0", "--split", "none",
                   "--samples", "5", "--no-figures", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    results = json.loads((out / "results.json").read_text())
    (record,) = results["results"]
    assert record["train_nll"] == pytest.approx(2.454014, abs=5e-7)
    assert record["dev_nll"] is None and record["test_nll"] is None


def test_default_run_writes_the_report(tmp_path):
    out = tmp_path / "run"
    proc = harness("run", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "[2/2]" in proc.stdout
    results = json.loads((out / "results.json").read_text())
    keys = {"corpus", "order", "method", "smoothing", "train_nll", "dev_nll", "test_nll", "fit_seconds", "samples"}
    assert [r["order"] for r in results["results"]] == [2, 3]
    for r in results["results"]:
        assert keys <= r.keys() and r["corpus"] == "ssa:2017" and r["method"] == "count"
        assert len(r["samples"]) == 20 and all(math.isfinite(r[k]) for k in ("train_nll", "dev_nll", "test_nll"))
    assert results["results"][1]["dev_nll"] < results["results"][0]["dev_nll"]
    report = (out / "report.md").read_text()
    assert "- machine: " in report and "- device: cpu" in report
    assert (out / "results.csv").read_text().startswith("corpus,order,method,loss,smoothing,reg,train_nll")


@pytest.mark.parametrize("args, fragments", [
    (["run", "--corpus", "nosuch"], ["unknown corpus"]),
    (["run", "--corpus", "ssa:1492"], ["unknown SSA year"]),
    (["run", "--orders", "0"], ["order 0"]),
    (["run", "--smoothing", "-1"], ["k must be"]),
    (["run", "--smoothing", "nan"], ["--smoothing", "finite"]),
    (["run", "--steps", "0"], ["--steps", ">= 1"]),
    (["run", "--loss", "cuda-magic"], ["--loss", "cuda-magic"]),
    (["run", "--lr", "-1"], ["--lr", "> 0"]),
    (["run", "--device", "cuda"], ["no CUDA"]),
    (["run", "--split", "none"], ["--smoothing", "auto"]),
    (["score", "--corpus", "ssa", "andré"], ["'é'", "vocabulary"]),
    (["sample", "--order", "-2"], ["order -2"]),
    (["score", "--corpus", "ssa", ""], ["empty word"]),
    (["score", "--corpus", "ssa", "--file", "no/such/file.txt"], ["--file", "does not exist"]),
    (["run", "--k-grid", "0.1,-1"], ["k_grid (--k-grid)", ">= 0"]),
])
def test_bad_input_is_one_line_exit_2(capsys, args, fragments):
    if "cuda" in args and __import__("torch").cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert_clean_error_in_process(capsys, args, *fragments)


def test_bad_input_through_a_real_process():
    """One case end to end through `python -m harness`: stderr is one line, exit status 2."""
    assert_clean_error(harness("run", "--corpus", "nosuch"), "unknown corpus")


@pytest.mark.parametrize("content", [b"", b"\n\n", b"\xff\xfe\xfa", b"\x00\x01\x02"])
def test_bad_corpus_files(tmp_path, capsys, content):
    path = tmp_path / "corpus.txt"
    path.write_bytes(content)
    assert_clean_error_in_process(capsys, ["run", "--corpus", str(path)], str(path))


def test_missing_corpus_file(tmp_path, capsys):
    assert_clean_error_in_process(capsys, ["run", "--corpus", str(tmp_path / "missing.txt")], "does not exist")


def test_run_gradient_lists_unavailable_backends_as_skipped(names_path, tmp_path):
    out = tmp_path / "grad"
    proc = harness("run", "--corpus", str(names_path), "--orders", "2", "--methods", "count,gradient",
                   "--loss", "torch,triton", "--steps", "3", "--samples", "2", "--no-figures", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    records = json.loads((out / "results.json").read_text())["results"]
    assert [(r["method"], r["loss"], r["status"]) for r in records] == [
        ("count", None, "ok"), ("gradient", "torch", "ok"), ("gradient", "triton", "skipped")]
    assert "CUDA" in records[2]["error"]
    grad = records[1]
    assert len(grad["train_losses"]) == 3 and grad["steps_per_second"] > 0
    assert grad["nll_vs_count"] == pytest.approx(grad["dev_nll"] - records[0]["dev_nll"])
    assert "skipped" in (out / "report.md").read_text()


def test_sample_with_a_prefix_and_none_from_training(names_path):
    """issue 18: `sample --prefix ma --exclude-train --num 50` prints 50 names starting with ma, none in training."""
    proc = harness("sample", "--corpus", str(names_path), "--order", "3", "--smoothing", "0.1", "--split", "seeded",
                   "--prefix", "ma", "--exclude-train", "--num", "50")
    assert proc.returncode == 0, proc.stderr
    names = proc.stdout.split()
    from harness.data.corpus import load_corpus
    from harness.data.splits import split_corpus

    train = set(split_corpus(load_corpus(str(names_path)), LECTURE_SEED)["train"].items)
    assert len(names) == 50 and all(n.startswith("ma") for n in names) and not set(names) & train
    assert all(not n.endswith(".") for n in names)


def test_run_samples_follow_the_sampling_keys(names_path, tmp_path):
    from harness.cli import main

    out = tmp_path / "run"
    assert main(["run", "--device", "cpu", "--quiet", "--no-figures", "--corpus", str(names_path), "--orders", "2", "--smoothing", "1",
                 "--samples", "12", "--prefix", "jo", "--exclude-train", "--top-k", "5", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    from harness.data.splits import read_split_file

    train = set(read_split_file(out / "split" / "train.txt")[0])
    (record,) = results["results"]
    assert len(record["samples"]) == 12 and all(s.startswith("jo") and s not in train for s in record["samples"])
    assert "Drawn with top-5, prefix `jo`, names of the training split left out." in (out / "report.md").read_text()
    assert 'prefix = "jo"' in (out / "grid.toml").read_text()


@pytest.mark.parametrize("smoothing", ["auto", "interp"])
def test_score_tunes_on_the_seeded_dev_split_as_run_does(names_path, tmp_path, capsys, smoothing):
    """issue 18: `score --smoothing auto|interp --split seeded` tunes on the seeded dev part and gives run's test NLL."""
    from harness.cli import main

    out = tmp_path / "run"
    assert main(["run", "--device", "cpu", "--quiet", "--no-figures", "--corpus", str(names_path), "--orders", "3", "--smoothing", smoothing,
                 "--samples", "0", "--out", str(out)]) == 0
    (record,) = json.loads((out / "results.json").read_text())["results"]
    capsys.readouterr()
    assert main(["score", "--device", "cpu", "--corpus", str(names_path), "--order", "3", "--smoothing", smoothing,
                 "--split", "seeded", "--file", str(out / "split" / "test.txt")]) == 0
    line = capsys.readouterr().out
    nll = float(line.split("mean NLL ")[1].split()[0])
    assert nll == pytest.approx(record["test_nll"], abs=1e-6)


def test_score_refuses_tuning_without_a_dev_split(names_path, capsys):
    assert_clean_error_in_process(capsys, ["score", "--corpus", str(names_path), "--order", "3", "--smoothing", "interp",
                                           "--split", "none", "anna"], "tunes on a dev split", "--split seeded")
