"""kernels.fused: FusedCrossEntropy and FusedTableCrossEntropy with backends written in plain torch.

The Triton and compiled backends are tested through them in test_triton_ce.py,
test_triton_table.py and test_compiled.py; here each Function's own contract: backward scales
the forward's gradient by grad_output (FusedCrossEntropy: once, and it refuses a gradient buffer
written after its forward), and both table backends go through the one table Function.
"""
import pytest
import torch

import kernels
from kernels import reference
from kernels.availability import backend_available
from kernels.fused import FusedTableCrossEntropy, fused_cross_entropy, fused_table_cross_entropy


def torch_backend(logits, target, weight, ignore_index, reduction, need_grad, overwrite_logits, buffer=None):
    """A fused backend from the reference: loss, and the gradient for grad_output = 1 (autograd's)."""
    x = logits.detach().clone().requires_grad_()
    with torch.enable_grad():
        loss = reference.torch_cross_entropy(x, target, weight, ignore_index, reduction)
        loss.backward(torch.ones_like(loss))
    if not need_grad:
        return loss.detach(), None
    grad = logits.detach() if overwrite_logits else (torch.empty_like(x) if buffer is None else buffer)
    grad.copy_(x.grad)
    return loss.detach(), grad


def inputs(n=40, v=27, seed=0):
    g = torch.Generator().manual_seed(seed)
    data = torch.randn(n, v, generator=g, dtype=torch.float64)
    target = torch.randint(0, v, (n,), generator=g)
    target[::4] = -100
    weight = torch.rand(n, generator=g, dtype=torch.float64) + 0.5
    return data, target, weight


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("overwrite", [False, True])
def test_backward_scales_the_gradient_by_grad_output(reduction, overwrite):
    data, target, weight = inputs()
    leaf = data.clone().requires_grad_()
    loss = fused_cross_entropy(torch_backend, leaf * 1, target, weight, -100, reduction, overwrite)
    g = torch.rand(loss.shape, dtype=loss.dtype, generator=torch.Generator().manual_seed(1)) + 0.5
    loss.backward(g)
    want_leaf = data.clone().requires_grad_()
    want = reference.torch_cross_entropy(want_leaf, target, weight, -100, reduction)
    want.backward(g)
    torch.testing.assert_close(loss.detach(), want.detach())
    torch.testing.assert_close(leaf.grad, want_leaf.grad)


def test_one_backward_per_forward():
    data, target, _ = inputs()
    loss = fused_cross_entropy(torch_backend, data.clone().requires_grad_(), target, None, -100, "mean", False)
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="once per forward"):
        loss.backward()


def test_a_buffer_written_after_its_forward_is_refused():
    data, target, _ = inputs()
    buffer = torch.empty_like(data)

    def shared(*args, **kwargs):
        return torch_backend(*args, **kwargs, buffer=buffer)

    leaf = data.clone().requires_grad_()
    first = fused_cross_entropy(shared, leaf * 1, target, None, -100, "mean", False)
    fused_cross_entropy(shared, leaf * 2, target, None, -100, "mean", False)  # writes the same buffer
    with pytest.raises(RuntimeError, match="reused by a later forward"):
        first.backward()


def test_without_grad_the_backend_is_told_so():
    data, target, _ = inputs()
    seen = []

    def spy(*args, need_grad, **kwargs):
        seen.append(need_grad)
        return torch_backend(*args, need_grad=need_grad, **kwargs)

    with torch.no_grad():
        fused_cross_entropy(spy, data.clone().requires_grad_(), target, None, -100, "sum", False)
    fused_cross_entropy(spy, data, target, None, -100, "sum", False)
    fused_cross_entropy(spy, data.clone().requires_grad_(), target, None, -100, "sum", False)
    assert seen == [False, False, True]


def torch_table_backend(table, context, target, weight, ignore_index, reduction, need_grad):
    """A table backend from the reference: loss, and the table gradient for grad_output = 1 (a function of it for "none")."""
    x = table.detach().clone().requires_grad_()
    with torch.enable_grad():
        loss = reference.torch_cross_entropy(x[context], target, weight, ignore_index, reduction)
    if not need_grad:
        return loss.detach(), None
    if reduction == "none":
        return loss.detach(), lambda grad_output: torch.autograd.grad(loss, x, grad_output, retain_graph=True)[0]
    (grad,) = torch.autograd.grad(loss, x)
    return loss.detach(), grad


def table_inputs(n_contexts=9, n_rows=300, v=27, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    table = torch.randn(n_contexts, v, generator=g, dtype=dtype)
    context = torch.randint(0, n_contexts, (n_rows,), generator=g)  # many rows per context
    target = torch.randint(0, v, (n_rows,), generator=g)
    target[::5] = -100
    weight = (torch.rand(n_rows, generator=g) * 3).to(dtype)
    return table, context, target, weight


def table_grad_output(loss, seed=1):
    """1.7 for a scalar loss; a random vector (some entries negative) for "none"."""
    if loss.dim() == 0:
        return torch.tensor(1.7, dtype=loss.dtype)
    return torch.randn(loss.shape, generator=torch.Generator().manual_seed(seed)).to(loss.dtype)


def table_truth(table, context, target, weight, reduction, grad_output):
    """Loss and table gradient in float64 from F.cross_entropy over the gathered rows + autograd."""
    table64 = table.detach().double().requires_grad_()
    loss = reference.torch_cross_entropy(table64[context], target, weight.double(), -100, reduction)
    loss.backward(grad_output.double())
    return loss.detach(), table64.grad


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_table_backward_scales_the_gradient_by_grad_output_and_may_run_twice(reduction):
    """The first backward hands its gradient to autograd; a second (retain_graph) runs the backend again."""
    table, context, target, weight = table_inputs()
    leaf = table.clone().requires_grad_()
    loss = fused_table_cross_entropy(torch_table_backend, leaf, context, target, weight, -100, reduction)
    grad_output = table_grad_output(loss)
    (first,) = torch.autograd.grad(loss, leaf, grad_output, retain_graph=True)
    (second,) = torch.autograd.grad(loss, leaf, grad_output)
    want_loss, want_grad = table_truth(table, context, target, weight, reduction, grad_output)
    torch.testing.assert_close(loss.detach(), want_loss)
    torch.testing.assert_close(first, want_grad)
    torch.testing.assert_close(second, first, atol=0, rtol=0)


def test_table_written_in_place_before_a_backward_that_reads_it_is_refused():
    table, context, target, weight = table_inputs()
    leaf = table.clone().requires_grad_()
    loss = fused_table_cross_entropy(torch_table_backend, leaf, context, target, weight, -100, "none")
    with torch.no_grad():
        leaf.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward(torch.ones_like(loss))


def test_without_grad_the_table_backend_is_told_so():
    table, context, target, weight = table_inputs()
    seen = []

    def spy(*args, need_grad):
        seen.append(need_grad)
        return torch_table_backend(*args, need_grad=need_grad)

    with torch.no_grad():
        fused_table_cross_entropy(spy, table.clone().requires_grad_(), context, target, weight, -100, "sum")
    fused_table_cross_entropy(spy, table, context, target, weight, -100, "sum")
    loss = fused_table_cross_entropy(spy, table.clone().requires_grad_(), context, target, weight, -100, "sum")
    assert seen == [False, False, True] and loss.grad_fn is not None


TRITON_HERE, TRITON_WHY_NOT = backend_available("triton", "cpu")


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("backend", [
    pytest.param("triton", marks=pytest.mark.skipif(not TRITON_HERE, reason=f"Triton cannot run on CPU here: "
                                                                            f"{TRITON_WHY_NOT}")),
    "compiled",
])
def test_both_table_backends_go_through_the_one_function(backend, reduction):
    """kernels.table_cross_entropy's fused backends: one grad_fn type, and loss and gradient equal to
    F.cross_entropy over the table's rows + autograd, with weights, ignored rows and grad_output != 1."""
    table, context, target, weight = table_inputs(n_contexts=27, n_rows=1000, dtype=torch.float32)
    leaf = table.clone().requires_grad_()
    loss = kernels.table_cross_entropy(leaf, context, target, weight, reduction=reduction, backend=backend)
    assert type(loss.grad_fn) is FusedTableCrossEntropy._backward_cls
    grad_output = table_grad_output(loss)
    loss.backward(grad_output)
    want_loss, want_grad = table_truth(table, context, target, weight, reduction, grad_output)
    torch.testing.assert_close(loss.detach().double(), want_loss, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(leaf.grad.double(), want_grad, atol=1e-5, rtol=1e-5)
