"""JSON that keeps inf and NaN readable by any JSON parser: non-finite floats become strings."""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

from harness.core.errors import HarnessError

_NONFINITE = {"inf": float("inf"), "-inf": float("-inf"), "nan": float("nan")}


def _encode(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, dict):
        return {k: _encode(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_encode(v) for v in obj]
    return obj


def _floats(obj):
    """Under a float key: "inf"/"-inf"/"nan" back to floats, also inside lists and dicts (intervals, per-item NLLs)."""
    if isinstance(obj, str):
        return _NONFINITE.get(obj, obj)
    if isinstance(obj, list):
        return [_floats(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _floats(v) for k, v in obj.items()}
    return obj


def _decode(obj, float_keys: frozenset):
    if isinstance(obj, dict):
        return {k: (_floats(v) if k in float_keys else _decode(v, float_keys)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode(v, float_keys) for v in obj]
    return obj


def dumps(obj) -> str:
    return json.dumps(_encode(obj), indent=2, ensure_ascii=False, allow_nan=False) + "\n"


TEMPORARY_SUFFIX = ".tmp"  # write_atomic's temporaries: .NAME.XXXXXXXX.tmp beside NAME


def stale_temporaries(folder: Path) -> list[Path]:
    """The temporaries under a run folder: write_atomic's and the neural checkpoints' (NAME.tmp), which a
    writer killed between its write and its rename leaves; only call it holding the folder's lock,
    when no writer can be alive."""
    return sorted(p for p in Path(folder).rglob(f"*{TEMPORARY_SUFFIX}") if p.is_file())


def write_atomic(path: Path, text: str | bytes) -> None:
    """Write to a temporary file beside `path`, then rename: a crash never leaves half a file.

    The temporary file's name is unique to this writer (two writers never share one) and it is
    removed when the write fails; a file system that is full, read-only or not a folder is a
    HarnessError naming the path, with `path` left as it was.
    """
    path = Path(path)
    if path.exists() and not path.is_file():  # the rename would replace a device, FIFO or folder without a word
        raise HarnessError(f"cannot write {path}: it is not a regular file (a device, FIFO, socket or folder); give a file path")
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX)
        with (os.fdopen(fd, "wb") if isinstance(text, bytes) else os.fdopen(fd, "w", encoding="utf-8")) as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a report is for reading
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise HarnessError(f"cannot write {path}: {exc.strerror or exc}; free some space or give a writable folder") from None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def loads(text: str, float_keys=()) -> dict:
    """Parse JSON written by `dumps`, turning "inf"/"-inf"/"nan" back into floats under `float_keys`."""
    return _decode(json.loads(text), frozenset(float_keys))


def load(path: Path, float_keys=()) -> dict:
    return loads(Path(path).read_text(encoding="utf-8"), float_keys)


def load_object(path: Path, what: str, fix: str, float_keys=(), required=()) -> dict:
    """A JSON object from `path`, or a HarnessError saying what is wrong with the file and `fix`.

    Missing, empty, truncated, binary, a list instead of an object, or an object without the
    `required` keys: each is one line naming the file, never a traceback; the file is not touched.
    """
    path = Path(path)
    if not path.is_file():
        raise HarnessError(f"{path} does not exist or is not a file; {fix}")
    try:
        data = loads(path.read_text(encoding="utf-8"), float_keys)
    except UnicodeDecodeError:
        raise HarnessError(f"{path} is not UTF-8 text (binary?), so it is not {what}; {fix}") from None
    except json.JSONDecodeError as exc:
        raise HarnessError(f"{path} is not valid JSON ({exc.msg}: line {exc.lineno} column {exc.colno}), so it is not {what}; {fix}") from None
    except OSError as exc:
        raise HarnessError(f"cannot read {path}: {exc.strerror or exc}; {fix}") from None
    if not isinstance(data, dict):
        raise HarnessError(f"{path} holds a JSON {type(data).__name__}, not {what}; {fix}")
    missing = [k for k in required if k not in data]
    if missing:
        raise HarnessError(f"{path} lacks {', '.join(repr(k) for k in missing)}, so it is not {what}; {fix}")
    return data
