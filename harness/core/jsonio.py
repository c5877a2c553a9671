"""JSON that keeps inf and NaN readable by any JSON parser: non-finite floats become strings."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

_NONFINITE = {"inf": float("inf"), "-inf": float("-inf"), "nan": float("nan")}


def _encode(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, dict):
        return {k: _encode(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_encode(v) for v in obj]
    return obj


def _decode(obj, float_keys: frozenset):
    if isinstance(obj, dict):
        return {k: (_NONFINITE[v] if k in float_keys and isinstance(v, str) and v in _NONFINITE else _decode(v, float_keys))
                for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode(v, float_keys) for v in obj]
    return obj


def dumps(obj) -> str:
    return json.dumps(_encode(obj), indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def write_atomic(path: Path, text: str) -> None:
    """Write to a temporary file beside `path`, then rename: a crash never leaves half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def loads(text: str, float_keys=()) -> dict:
    """Parse JSON written by `dumps`, turning "inf"/"-inf"/"nan" back into floats under `float_keys`."""
    return _decode(json.loads(text), frozenset(float_keys))


def load(path: Path, float_keys=()) -> dict:
    return loads(Path(path).read_text(encoding="utf-8"), float_keys)
