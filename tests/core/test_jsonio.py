"""Atomic JSON writes and loads that name what is wrong with a file."""
import errno
import json
import os

import pytest

from harness.core import jsonio
from harness.core.errors import HarnessError


def test_write_atomic_leaves_no_temporary_and_keeps_readable_mode(tmp_path):
    path = tmp_path / "results.json"
    jsonio.write_atomic(path, jsonio.dumps({"x": float("inf")}))
    assert json.loads(path.read_text()) == {"x": "inf"}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]
    assert os.stat(path).st_mode & 0o044 == 0o044


def test_a_failed_write_keeps_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "results.json"
    path.write_text('{"old": 1}')

    def full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(jsonio.os, "replace", full)
    with pytest.raises(HarnessError, match="cannot write .*No space left"):
        jsonio.write_atomic(path, "{}")
    assert path.read_text() == '{"old": 1}'
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_a_folder_that_vanished_is_one_line(tmp_path):
    with pytest.raises(HarnessError, match="cannot write .*missing-folder"):
        jsonio.write_atomic(tmp_path / "missing-folder" / "x.json", "{}")


@pytest.mark.parametrize("content, says", [
    (None, "does not exist"), (b"", "not valid JSON"), (b'{"run": {', "not valid JSON"),
    (b"\xff\xfe\x00binary", "not UTF-8"), (b"[1, 2]", "holds a JSON list"), (b'{"results": []}', "lacks 'run'"),
])
def test_load_object_names_the_problem(tmp_path, content, says):
    path = tmp_path / "results.json"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(HarnessError, match=says) as raised:
        jsonio.load_object(path, "a run's results", "rerun it", required=("run", "results"))
    assert " at at " not in str(raised.value)
    if content is not None:
        assert path.read_bytes() == content  # never overwritten


def test_write_atomic_never_replaces_a_fifo_or_a_folder(tmp_path):
    import os

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for target in (fifo, tmp_path):
        with pytest.raises(HarnessError, match="not a regular file"):
            jsonio.write_atomic(target, "{}")
    assert fifo.is_fifo() and tmp_path.is_dir() and sorted(p.name for p in tmp_path.iterdir()) == ["fifo"]
