"""A run folder under attack by real processes (issue 16): runs started at once on one --out, and
kill -9 at several moments of a run. The oracle is an uninterrupted run of the same grid."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from harness.cli import main
from tests.conftest import REPO
from tests.test_hostile import tiny_names

GRID = ["--device", "cpu", "--quiet", "--orders", "1,2,3", "--smoothing", "1,kn,wb", "--methods", "count,gradient",
        "--steps", "30", "--samples", "3"]


def start(*args):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("TRITON_INTERPRET", None)
    return subprocess.Popen([sys.executable, "-m", "harness", "run", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def numbers(records):
    """What must not depend on interruptions: every configuration's NLLs, samples and training curve."""
    return {r["key"]: (r["status"], r.get("train_nll"), r.get("dev_nll"), r.get("test_nll"), r.get("samples"),
                       r.get("train_losses")) for r in records}


SMALL_GRID = ["--device", "cpu", "--quiet", "--no-figures", "--orders", "2", "--smoothing", "1"]  # the lock, not the grid, is on trial


def uninterrupted(tmp_path_factory, grid):
    folder = tmp_path_factory.mktemp("reference")
    corpus = folder / "tiny.txt"
    corpus.write_text(tiny_names(300), encoding="utf-8")
    # the numbers are the oracle, not the pictures (the killed run and its resume draw theirs)
    assert main(["run", *grid, "--no-figures", "--corpus", str(corpus), "--out", str(folder / "run")]) == 0
    return corpus, json.loads((folder / "run" / "results.json").read_text())["results"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return uninterrupted(tmp_path_factory, GRID)


@pytest.fixture(scope="module")
def small_reference(tmp_path_factory):
    return uninterrupted(tmp_path_factory, SMALL_GRID)


@pytest.mark.parametrize("n", [2, 3])
def test_runs_started_at_once_on_one_folder(small_reference, tmp_path, n):
    corpus, expected = small_reference
    out = tmp_path / "run"
    samples = [str(3 + i) for i in range(n)]  # tells the runs apart in what they leave
    procs = [start(*SMALL_GRID, "--samples", s, "--corpus", str(corpus), "--out", str(out)) for s in samples]
    ends = [p.communicate(timeout=240) for p in procs]
    codes = [p.returncode for p in procs]
    assert sorted(codes) == [0] + [2] * (n - 1), [e[1] for e in ends]
    for code, (_, err) in zip(codes, ends):
        if code == 2:
            lines = err.strip().splitlines()
            assert len(lines) == 1 and ("in use by pid" in lines[0] or "holds a run" in lines[0]), err
    winner = samples[codes.index(0)]
    saved = json.loads((out / "results.json").read_text())
    assert all(len(r["samples"]) == int(winner) for r in saved["results"])
    assert f"samples = {winner}" in (out / "grid.toml").read_text()  # the folder is the winner's alone
    got = {k: v[:4] for k, v in numbers(saved["results"]).items()}
    assert got == {k: v[:4] for k, v in numbers(expected).items()}
    assert not [p for p in out.rglob("*.tmp")]


def wait_for(out, proc, records_at_least, deadline=120):
    """Poll results.json until it holds `records_at_least` records; every read must be valid JSON."""
    end = time.time() + deadline
    while time.time() < end and proc.poll() is None:
        path = out / "results.json"
        if path.exists():
            data = json.loads(path.read_text())  # always whole: written to a temporary file, then renamed
            if len(data["results"]) >= records_at_least:
                return True
        time.sleep(0.01)
    return False


@pytest.mark.parametrize("records_at_least", [0, 1, 5, 12])
def test_kill_9_at_any_moment_then_resume_gives_the_uninterrupted_numbers(reference, tmp_path, records_at_least):
    """Killed with 0, 1 or 5 of 12 configurations saved, or with all 12 saved while it draws the figures."""
    corpus, expected = reference
    out = tmp_path / "run"
    proc = start(*GRID, "--corpus", str(corpus), "--out", str(out))
    reached = wait_for(out, proc, records_at_least)
    if not reached:
        _, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err
        pytest.skip(f"the run ended before it could be killed with {records_at_least} records saved (a fast machine)")
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    json.loads((out / "results.json").read_text())
    assert main(["run", "--resume", str(out), "--quiet"]) == 0
    saved = json.loads((out / "results.json").read_text())
    assert numbers(saved["results"]) == numbers(expected)
    assert [r["key"] for r in saved["results"]] == [r["key"] for r in expected]
    assert (out / "report.md").exists() and (out / "bigram_counts.png").exists()
    assert not [p for p in out.rglob("*.tmp")]
