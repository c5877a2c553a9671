"""Saved models: one fitted model, its vocabulary and where it came from, in one file.

A model file is `torch.save` of plain values (dicts, lists, strings, numbers, tensors), read back
with `torch.load(weights_only=True)`, so loading runs no pickled code:

    {"format": FORMAT, "version": 1, "class": "KneserNeyModel", "state": {...},
     "vocab": [".", "a", ...], "order": 3, "method": "count", "meta": {...}}

`meta` is what the saver states (the configuration's key, smoothing, settings, the sha256 of the
training split, the corpus). Dense count tables are stored as their observed cells only (a
names order-5 table is 115 MB dense, under 1 MB as cells) and rebuilt dense on loading, so the
loaded model scores and samples exactly as the saved one did.

The n-gram classes are listed in `_CODECS` (class name -> state out, model back). A family whose
model is not listed (the neural families, which save their own checkpoints) gets None from
`save_model` and no file: give its class a codec here, or a `saved_state()` method and a
`from_saved_state(state)` classmethod, which `save_model`/`load_model` use when present.
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict
from pathlib import Path

import torch

from harness.core.constants import BOUNDARY_CHAR
from harness.core.errors import HarnessError, input_file_problem
from harness.data.corpus import Vocab
from harness.models.backoff import BackoffModel
from harness.models.count import CountModel, SparseCountModel
from harness.models.gradient import GradientModel
from harness.models.smoothed import AddKInterpolationModel, KneserNeyModel, Level, WittenBellModel

FORMAT = "makemore-harness model"
VERSION = 1
SUFFIX = ".pt"


def training_sha256(items, weights=None) -> str:
    """sha256 of a training split: its items one per line, then their weights (when weighted)."""
    digest = hashlib.sha256("\n".join(items).encode("utf-8"))
    if weights is not None:
        digest.update(b"\0" + ",".join(str(int(w)) for w in weights).encode())
    return digest.hexdigest()


def _levels_out(levels) -> list[dict]:
    return [asdict(level) for level in levels]


def _levels_in(levels) -> list[Level]:
    return [Level(**level) for level in levels]


def _dense_out(m: CountModel) -> dict:
    flat = m.counts.flatten()
    cells = flat.nonzero().squeeze(1)
    return {"order": m.order, "vocab_size": m.vocab_size, "k": m.k, "cells": cells, "values": flat[cells]}


def _dense_in(s: dict) -> CountModel:
    V, n = s["vocab_size"], s["order"]
    counts = torch.zeros(V ** n, dtype=s["values"].dtype)
    counts[s["cells"]] = s["values"]
    return CountModel(n, V, counts.view(V ** (n - 1), V), s["k"])


def _fields_out(m) -> dict:
    state = {k: v for k, v in m.__dict__.items() if not k.startswith("_") and k != "method"}
    if "levels" in state:
        state["levels"] = _levels_out(state["levels"])
    return state


def _smoothed_in(cls):
    def build(s: dict):
        return cls(**{**s, "levels": _levels_in(s["levels"])})
    return build


def _backoff_out(m: BackoffModel) -> dict:
    return {"order": m.order, "vocab_size": m.vocab_size, "keys": m.keys, "log10_probs": m.log10_probs, "log10_bows": m.log10_bows}


def _gradient_out(m: GradientModel) -> dict:
    return {"order": m.order, "vocab_size": m.vocab_size, "tables": [t.detach() for t in m.tables], "additive": m.additive}


_CODECS = {  # class name -> (model -> state, state -> model)
    "CountModel": (_dense_out, _dense_in),
    "SparseCountModel": (_fields_out, lambda s: SparseCountModel(**s)),
    "KneserNeyModel": (_fields_out, _smoothed_in(KneserNeyModel)),
    "WittenBellModel": (_fields_out, _smoothed_in(WittenBellModel)),
    "AddKInterpolationModel": (_fields_out, _smoothed_in(AddKInterpolationModel)),
    "BackoffModel": (_backoff_out, lambda s: BackoffModel(**s)),
    "GradientModel": (_gradient_out, lambda s: GradientModel(**s)),
}


def _to_cpu(value):
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(v) for v in value)
    return value


def _to_device(value, device):
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {k: _to_device(v, device) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_device(v, device) for v in value]
    return value


def can_save(model) -> bool:
    return type(model).__name__ in _CODECS or hasattr(model, "saved_state")


def save_model(model, path, vocab: Vocab, method: str, meta: dict) -> Path | None:
    """Write `model` with its vocabulary, method and `meta` to `path` (atomically); None where the
    model's class has no codec (module docstring) and nothing is written."""
    name = type(model).__name__
    if name in _CODECS:
        state = _CODECS[name][0](model)
    elif hasattr(model, "saved_state"):
        state = model.saved_state()
    else:
        return None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, "version": VERSION, "class": name, "state": _to_cpu(state), "vocab": list(vocab.itos),
               "order": model.order, "method": method, "meta": _to_cpu(meta)}
    partial = path.with_name(path.name + ".partial")
    torch.save(payload, partial)
    partial.replace(path)
    return path


def load_model(path, device="cpu", classes: dict | None = None):
    """(model, vocab, payload) of a model file; a missing or foreign file is a HarnessError.

    classes: extra name -> class with `from_saved_state(state)` (the hook of families saved
    through `saved_state()`).
    """
    path = Path(path)
    where = f"model file {str(path)!r}"
    problem = input_file_problem(path)
    if problem:
        raise HarnessError(f"{where} {problem}; give a file from a run's models/ folder, or the run folder with --order/--smoothing")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise HarnessError(f"{where} cannot be read as a saved model ({type(exc).__name__}); give a .pt file a run wrote") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise HarnessError(f"{where} is not a makemore-harness model file; give a .pt file from a run's models/ folder")
    if payload.get("version") != VERSION:
        raise HarnessError(f"{where} is format version {payload.get('version')}, this harness reads {VERSION}; refit with this version")
    missing = [k for k in ("class", "state", "vocab", "order", "method", "meta") if k not in payload]
    if missing or not isinstance(payload["vocab"], (list, tuple)) or not isinstance(payload["meta"], dict):
        raise HarnessError(f"{where} is damaged: {'it lacks ' + ', '.join(missing) if missing else 'its vocab or meta is not a list / an object'}; "
                           "give a .pt file a run wrote, or rerun that run")
    name = payload["class"]
    if name not in _CODECS and not (classes and name in classes):
        raise HarnessError(f"{where} holds a {name}, which this harness cannot load; load it where its family is installed")
    try:  # the state's tensors rebuilt into a model: a damaged file fails here, in any of many ways
        state = _to_device(payload["state"], device)
        model = _CODECS[name][1](state) if name in _CODECS else classes[name].from_saved_state(state)
        vocab = Vocab(tuple(payload["vocab"]))
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, RuntimeError) as exc:
        raise HarnessError(f"{where} is damaged: its {name} state does not rebuild ({type(exc).__name__}: {str(exc)[:80]}); "
                           "give a .pt file a run wrote, or rerun that run") from None
    if vocab.size != model.vocab_size:
        raise HarnessError(f"{where}: its vocabulary has {vocab.size} tokens but its model {model.vocab_size}; the file is damaged")
    problem = _rebuilt_problem(model, payload)
    if problem:
        raise HarnessError(f"{where} is damaged: {problem}; give a .pt file a run wrote, or rerun that run")
    return model, vocab, payload


PROBE_CELLS = 1 << 20  # a dense table up to this many cells is checked whole on loading (order 4 here); larger ones by rows
COUNT_FIELDS = ("values", "counts", "context_totals")  # the counts in the state of a count model


def _has_nan(value) -> bool:
    if isinstance(value, torch.Tensor):
        return value.is_floating_point() and bool(value.isnan().any())
    if isinstance(value, float):
        return value != value
    if isinstance(value, dict):
        return any(_has_nan(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_has_nan(v) for v in value)
    return False


def _rebuilt_problem(model, payload) -> str | None:
    """What is wrong with a model rebuilt from a file, as words, or None: a file edited or damaged
    after its run wrote it would otherwise load and score garbage without a word."""
    itos = payload["vocab"]
    if not (itos and itos[0] == BOUNDARY_CHAR and all(isinstance(ch, str) and len(ch) == 1 for ch in itos)
            and len(set(itos)) == len(itos)):
        return f"its vocabulary is not {BOUNDARY_CHAR!r} then distinct single characters"
    if payload["order"] != model.order:
        return f"it says order {payload['order']!r} but holds an order-{model.order} model"
    state = payload["state"]
    if _has_nan(state):
        return "its state holds NaN"
    k = getattr(model, "k", 0.0)
    if isinstance(k, bool) or not isinstance(k, (int, float)) or not 0 <= k < float("inf"):
        return f"its smoothing k is {k!r}, not a finite number >= 0"
    if any(isinstance(state.get(f), torch.Tensor) and bool((state[f] < 0).any()) for f in COUNT_FIELDS if isinstance(state, dict)):
        return "its counts include negative values"
    try:  # its next-token distributions: after every one-token prefix and, where small, every context
        table = model.probs_table() if model.vocab_size ** (model.order or 1) <= PROBE_CELLS else None
        if table is None:
            first = torch.arange(model.vocab_size, device=_device_of(state)).unsqueeze(1)
            table = model.prefix_next_probs(first)
    except (HarnessError, ValueError, RuntimeError) as exc:
        return f"its {payload['class']} cannot give probabilities ({str(exc)[:80]})"
    table = table.double()
    if not bool(torch.isfinite(table).all()) or bool((table < 0).any()) or \
            not bool(torch.allclose(table.sum(1), torch.ones((), dtype=table.dtype, device=table.device), atol=1e-3)):
        return "its next-token probabilities are not finite, non-negative and summing to 1"
    return None


def _device_of(state) -> torch.device:
    tensors = [v for v in (state.values() if isinstance(state, dict) else ()) if isinstance(v, torch.Tensor)]
    return tensors[0].device if tensors else torch.device("cpu")
