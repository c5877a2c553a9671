"""Run folders: one run at a time, no silent overwrite, locks that die with their process."""
import os
import signal
import subprocess
import sys
import time

import pytest

from harness.core.errors import HarnessError
from harness.core.rundir import RunFolderLock, claim_run_folder, content_hash

HOLD = """
import sys, time
from harness.core.rundir import RunFolderLock
lock = RunFolderLock(sys.argv[1]).acquire("holder-command")  # kept: a dropped lock object closes its file
print("held", flush=True)
time.sleep(60)
"""


def hold_in_child(folder):
    child = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "held"
    return child


def test_a_second_holder_is_refused_naming_the_first(tmp_path):
    child = hold_in_child(tmp_path)
    try:
        with pytest.raises(HarnessError, match=rf"in use by pid {child.pid} .*holder-command"):
            RunFolderLock(tmp_path).acquire("second")
    finally:
        child.kill()
        child.wait()


def test_kill_9_releases_the_lock(tmp_path):
    child = hold_in_child(tmp_path)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    with RunFolderLock(tmp_path).acquire("after the crash"):
        pass


def test_an_existing_run_needs_resume_or_overwrite(tmp_path):
    run = tmp_path / "run"
    claim_run_folder(run, "first").release()
    (run / "results.json").write_text("{}")
    (run / "old.png").write_text("x")
    with pytest.raises(HarnessError, match="holds a run; use --resume"):
        claim_run_folder(run, "second")
    claim_run_folder(run, "resume", resume=True).release()
    assert (run / "old.png").exists()
    claim_run_folder(run, "overwrite", overwrite=True).release()
    assert sorted(p.name for p in run.iterdir()) == [".lock"]


def test_a_foreign_folder_is_refused_and_resume_needs_a_run(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(HarnessError, match="not empty and holds no run"):
        claim_run_folder(tmp_path, "run")
    with pytest.raises(HarnessError, match="no results.json there"):
        claim_run_folder(tmp_path / "empty", "run", resume=True)
    assert (tmp_path / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("where", ["file", "under-file", "proc"])
def test_unusable_folders_are_one_line(tmp_path, where):
    target = {"file": tmp_path / "f", "under-file": tmp_path / "f" / "run", "proc": "/proc/run-here"}[where]
    (tmp_path / "f").write_text("x")
    with pytest.raises(HarnessError, match="--out|cannot"):
        claim_run_folder(target, "run")


def test_content_hash_tells_contents_apart():
    assert content_hash("ab", "c") != content_hash("a", "bc")
    assert content_hash({"a": 1, "b": 2}) == content_hash({"b": 2, "a": 1})
    assert content_hash(b"x") == content_hash("x")


def test_resume_removes_temporaries_a_killed_writer_left(tmp_path):
    """A writer killed between its write and its rename leaves .NAME.XXXX.tmp (or NAME.tmp): --resume, holding
    the lock, removes them and nothing else."""
    run = tmp_path / "run"
    claim_run_folder(run, "first").release()
    (run / "results.json").write_text("{}")
    (run / ".results.csv.u5ihq1k8.tmp").write_text("half")
    (run / "checkpoints" / "k").mkdir(parents=True)
    (run / "checkpoints" / "k" / "checkpoint.pt.tmp").write_bytes(b"half")
    (run / "checkpoints" / "k" / "checkpoint.pt").write_bytes(b"whole")
    claim_run_folder(run, "resume", resume=True).release()
    assert not list(run.rglob("*.tmp"))
    assert (run / "results.json").read_text() == "{}" and (run / "checkpoints" / "k" / "checkpoint.pt").exists()
