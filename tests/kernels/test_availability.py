"""kernels.availability: where each backend runs, one wording of why not, one error type."""
import sys

import pytest
import torch

import kernels
from kernels import availability


@pytest.mark.parametrize("backend", availability.BACKENDS)
@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_every_backend_answers_ok_or_why(backend, device):
    ok, why = availability.backend_available(backend, device)
    assert isinstance(ok, bool) and (ok == (why == ""))
    if backend in ("torch", "manual"):
        assert ok


def test_require_raises_the_same_why(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    ok, why = availability.backend_available("triton", "cpu")
    assert not ok
    assert "CUDA" in why and "TRITON_INTERPRET=1" in why  # the one wording, with the way out
    with pytest.raises(kernels.KernelUnavailableError) as raised:
        availability.require("triton", torch.device("cpu"))
    assert why in str(raised.value) and "'triton'" in str(raised.value)
    availability.require("torch", "cpu")  # runs anywhere: no error


def test_unknown_backend_names_the_choices():
    with pytest.raises(ValueError, match="auto, triton, compiled, torch, manual"):
        availability.backend_available("cuda-magic", "cpu")


def test_without_triton_says_it_does_not_import(monkeypatch):
    monkeypatch.setitem(sys.modules, "triton", None)
    monkeypatch.setattr(availability, "triton_import", availability.triton_import.__wrapped__)  # not the cached answer
    state = availability.triton_import()
    assert not state.ok and not state.interpreted and "triton" in state.error
    ok, why = availability.backend_available("triton", "cpu")
    assert not ok and why.startswith("Triton does not import here (") and state.error in why


@pytest.mark.parametrize("setting, imported_interpreted, active", [
    ("1", True, True), ("0", True, False), (None, True, False),
    ("1", False, False),  # set after triton was imported: its library was built for a GPU
])
def test_interpreter_needs_the_variable_now_and_at_triton_import(monkeypatch, setting, imported_interpreted, active):
    if setting is None:
        monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    else:
        monkeypatch.setenv("TRITON_INTERPRET", setting)
    monkeypatch.setattr(availability, "triton_import",
                        lambda: availability.TritonImport(True, "", imported_interpreted))
    assert availability.interpreter_active() is active
    assert availability.backend_available("triton", "cpu")[0] is active


def test_compiler_available_answers_without_compiling():
    ok, why = availability.compiler_available("cpu")
    assert isinstance(ok, bool) and (ok or why)
    assert availability.compiler_available("meta") == (False, "the compiled backend supports cpu and cuda, not meta")
