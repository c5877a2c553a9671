"""Where each loss backend can run, and the one error for where it cannot.

Every "needs CUDA / Triton / a C++ compiler" of the package is decided and worded here:
`backend_available(backend, device)` answers (ok, why) and `require(backend, device)` raises
KernelUnavailableError with the same why. The backend names are BACKENDS.

Triton is imported here and nowhere else unguarded: `triton_import()` tries it once, on first
ask (importing Triton costs about 0.4 s, which `import kernels` should not pay), and remembers
whether it worked, why not, and for which mode triton built its language library. The kernel
modules import triton only when it said yes.
"""
from __future__ import annotations

import functools
import os
import shutil
import sys
from dataclasses import dataclass

import torch


class KernelUnavailableError(RuntimeError):
    """A backend was asked for explicitly where it cannot run (no CUDA, no Triton, no compiler)."""


@dataclass(frozen=True)
class TritonImport:
    """What importing triton gave: ok, the error if not, and whether it built its library for the interpreter."""

    ok: bool
    error: str  # "" when ok, else "ImportError: ..." (or whatever a broken install raised)
    interpreted: bool


@functools.lru_cache(maxsize=None)
def triton_import() -> TritonImport:
    """Import triton once (guarded) and say how it went; see TritonImport."""
    try:
        import triton.language as tl
        from triton.runtime.interpreter import InterpretedFunction
    except Exception as exc:  # ImportError, or a broken install failing in its own import
        return TritonImport(False, f"{type(exc).__name__}: {exc}", False)
    # triton builds tl.max, tl.sum, ... for one mode at its own import: for the interpreter or a GPU.
    return TritonImport(True, "", isinstance(tl.max, InterpretedFunction))


def interpreter_active() -> bool:
    """Whether Triton kernels run through its CPU interpreter here and now.

    TRITON_INTERPRET is read at call time; it must also have been set when triton was first
    imported, because triton builds its own library (tl.max, tl.sum, ...) for one mode then.
    """
    env_says = os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "on", "yes")
    return env_says and triton_import().interpreted


def runnable(kernel):
    """A JITFunction as this process can run it: interpreted when triton was imported under TRITON_INTERPRET=1."""
    if triton_import().interpreted:
        from triton.runtime.interpreter import InterpretedFunction

        return InterpretedFunction(kernel.fn)
    return kernel


def triton_available(device: torch.device) -> tuple[bool, str]:
    """Whether the Triton kernels can run on `device`, and if not, why."""
    state = triton_import()
    if not state.ok:
        return False, f"Triton does not import here ({state.error})"
    if device.type == "cuda" or interpreter_active():
        return True, ""
    return False, (f"the Triton kernel needs a CUDA device, not {device.type}; to run it on CPU through Triton's "
                   "slow interpreter, set TRITON_INTERPRET=1 before triton is first imported")


def compiler_available(device: torch.device | str) -> tuple[bool, str]:
    """Whether torch.compile's inductor backend can run on `device`, and if not, why. Compiles nothing."""
    device = torch.device(device)
    if not _dynamo_supported():
        return False, f"torch.compile (dynamo) does not support Python {sys.version.split()[0]} with torch {torch.__version__}"
    if device.type == "cpu":
        default_cxx = "clang++" if sys.platform == "darwin" else "g++"  # inductor's own default
        cxx = os.environ.get("CXX", default_cxx)
        if _which(cxx) is None:
            return False, f"inductor needs a C++ compiler on CPU and {cxx!r} is not on PATH (install g++ or set CXX)"
        return True, ""
    if device.type == "cuda":
        from torch.utils._triton import has_triton

        if not has_triton():
            return False, "inductor needs Triton (and a GPU it supports) to compile for CUDA"
        return True, ""
    return False, f"the compiled backend supports cpu and cuda, not {device.type}"


@functools.lru_cache(maxsize=None)
def _dynamo_supported() -> bool:
    from torch._dynamo.eval_frame import is_dynamo_supported

    return is_dynamo_supported()


@functools.lru_cache(maxsize=8)
def _which(program: str) -> str | None:
    return shutil.which(program)  # memoised: dispatch asks on every call


def _anywhere(device: torch.device) -> tuple[bool, str]:
    return True, ""


# backend -> where it can run. The order is the order of the docs and of the benchmark's rows.
_CHECKS = {
    "triton": triton_available,
    "compiled": compiler_available,
    "torch": _anywhere,
    "manual": _anywhere,
}
BACKENDS = tuple(_CHECKS)


def backend_available(backend: str, device: torch.device | str) -> tuple[bool, str]:
    """Whether `backend` can run on `device`, and if not, why (one line)."""
    if backend not in _CHECKS:
        raise ValueError(f"unknown loss backend {backend!r}; choose one of auto, {', '.join(BACKENDS)}")
    return _CHECKS[backend](torch.device(device))


def require(backend: str, device: torch.device | str) -> None:
    """Raise KernelUnavailableError, saying why, where `backend` cannot run on `device`."""
    ok, why = backend_available(backend, device)
    if not ok:
        raise KernelUnavailableError(f"loss backend {backend!r} cannot run on {device}: {why}")
