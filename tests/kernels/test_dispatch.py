"""kernels.dispatch: names to implementations, defined once, and the torch backends through it."""
import subprocess
import sys

import pytest
import torch

import kernels
from kernels import dispatch, reference
from tests.conftest import REPO


def test_one_implementation_per_backend_name():
    assert kernels.BACKENDS == ("triton", "compiled", "torch", "manual")
    assert tuple(dispatch.CROSS_ENTROPY) == tuple(dispatch.TABLE_CROSS_ENTROPY) == kernels.BACKENDS
    assert kernels.REDUCTIONS == ("mean", "sum", "none")


def test_auto_is_torch_on_cpu_and_unknown_names_fail():
    assert kernels.resolve_backend("auto", "cpu") == "torch"
    with pytest.raises(ValueError, match="unknown loss backend"):
        kernels.cross_entropy(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), backend="nope")


def problem(seed=0):
    g = torch.Generator().manual_seed(seed)
    table = torch.randn(9, 27, generator=g)
    context = torch.randint(0, 9, (300,), generator=g)
    target = torch.randint(0, 27, (300,), generator=g)
    target[::5] = -100
    weight = torch.rand(300, generator=g) + 0.5
    return table, context, target, weight


@pytest.mark.parametrize("backend", ["torch", "manual"])
@pytest.mark.parametrize("reduction", kernels.REDUCTIONS)
def test_torch_backends_route_to_the_reference(backend, reduction):
    table, context, target, weight = problem()
    want = reference.torch_cross_entropy(table[context], target, weight, -100, reduction)
    got = kernels.cross_entropy(table[context], target, weight, reduction=reduction, backend=backend,
                                overwrite_logits=True)  # ignored by these backends
    torch.testing.assert_close(got, want)
    got = kernels.table_cross_entropy(table, context, target, weight, reduction=reduction, backend=backend)
    torch.testing.assert_close(got, want)


def test_bad_arguments_are_rejected():
    table, context, target, weight = problem()
    with pytest.raises(ValueError, match="reduction must be one of"):
        kernels.cross_entropy(table[context], target, reduction="avg")
    with pytest.raises(ValueError, match="reduction must be one of"):
        kernels.table_cross_entropy(table, context, target, reduction="avg")
    with pytest.raises(ValueError, match="weight must"):
        kernels.table_cross_entropy(table, context, target, weight[:-1])


def test_import_kernels_does_not_import_triton():
    """Triton (about 0.4 s to import) loads only when its backend is asked for."""
    code = "import sys, kernels; kernels.cross_entropy; print('triton' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=str(REPO), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False"
