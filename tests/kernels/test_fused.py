"""kernels.fused.FusedCrossEntropy with a backend written in plain torch, so it runs anywhere.

The Triton and compiled backends are tested through it in test_triton_ce.py and
test_compiled.py; here the Function's own contract: backward scales the forward's gradient by
grad_output, once, and refuses a gradient buffer written after its forward.
"""
import pytest
import torch

from kernels import reference
from kernels.fused import fused_cross_entropy


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
