"""A run folder belongs to one run: an exclusive lock while it writes, no silent overwrite.

The lock is `fcntl.flock` on RUN_DIR/.lock, which the kernel drops when its process ends, even
by kill -9: a crashed run never leaves its folder locked, and `--resume` after a crash just works.
The lock file names its holder (pid, host, start time, command) for the message a second run gets.
"""
from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import os
import shutil
import socket
from pathlib import Path

from harness.core.errors import HarnessError
from harness.core.jsonio import stale_temporaries

LOCK_NAME = ".lock"
RESULTS_NAME = "results.json"


def _holder(lock_path: Path) -> str:
    try:
        info = json.loads(lock_path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return "another process"
    if not isinstance(info, dict):
        return "another process"
    return f"pid {info.get('pid', '?')} on {info.get('host', '?')} since {info.get('started', '?')} ({info.get('command', '?')})"


class RunFolderLock:
    """Held for as long as one run writes `folder`; a second holder is refused at once."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self._handle = None

    def acquire(self, command: str) -> "RunFolderLock":
        path = self.folder / LOCK_NAME
        try:
            handle = open(path, "a+", encoding="utf-8")
        except OSError as exc:
            raise HarnessError(f"cannot lock run folder {self.folder}: {exc.strerror or exc}; give a writable --out") from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise HarnessError(f"run folder {self.folder} is in use by {_holder(path)}; wait for that run to end "
                               "or give another --out") from None
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "command": command,
                                 "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}))
        handle.flush()
        self._handle = handle
        return self

    def release(self) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


def make_run_folder(folder: Path) -> Path:
    """Create `folder` (and its parents), or say in one line why it cannot be a run folder."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise HarnessError(f"--out {folder} is a file, not a folder; give a folder path")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HarnessError(f"cannot create run folder {folder}: {exc.strerror or exc}; give a writable --out") from None
    return folder


def claim_run_folder(folder: Path, command: str, resume: bool = False, overwrite: bool = False) -> RunFolderLock:
    """Lock `folder` for a run, refusing to write over a run or another program's files by accident.

    - a folder that already holds a run (results.json) needs `resume` (finish it) or `overwrite`;
    - a non-empty folder without results.json is somebody else's: refused unless `overwrite`;
    - with `overwrite` the folder's contents are removed once the lock is held.
    """
    folder = make_run_folder(folder)
    lock = RunFolderLock(folder).acquire(command)
    try:
        others = [p for p in folder.iterdir() if p.name != LOCK_NAME]
        if resume:
            if not (folder / RESULTS_NAME).is_file():
                raise HarnessError(f"--resume {folder}: no {RESULTS_NAME} there, so there is no run to resume; "
                                   "start it without --resume")
            for tmp in stale_temporaries(folder):  # half-written by a run killed mid-write; we hold the lock
                tmp.unlink(missing_ok=True)
        elif others and not overwrite:
            if (folder / RESULTS_NAME).exists():
                raise HarnessError(f"--out {folder} holds a run; use --resume {folder} to finish that run, --overwrite to "
                                   "replace what is there, or another --out")
            raise HarnessError(f"--out {folder} is not empty and holds no run (somebody else's files?); give another --out, "
                               "or --overwrite to delete everything in it first")
        elif others:
            for p in others:
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
    except BaseException:
        lock.release()
        raise
    return lock


def content_hash(*parts) -> str:
    """sha256 of the parts (str, bytes, or JSON-able values), in order: what a resumed run must match."""
    h = hashlib.sha256()
    for part in parts:
        data = part if isinstance(part, bytes) else (part if isinstance(part, str) else json.dumps(part, sort_keys=True)).encode()
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()
