"""kernels.reference against an oracle that knows no weights: a weight w is w copies of the row.

Every weighted kernel test compares with kernels.reference, so the weighted reference itself
is checked here against plain F.cross_entropy (no weights) over the rows repeated w times:
loss and gradient, for every reduction, with and without ignored rows.
"""
import pytest
import torch
import torch.nn.functional as F

from kernels import reference

# (atol, rtol) per dtype: the oracle sums the same terms in another order.
TOL = {torch.float32: (1e-5, 1e-5), torch.float64: (1e-12, 1e-12)}


def make_problem(n, v, dtype, ignore_index, seed):
    """Logits (n, v), targets with every third row ignored when ignore_index is given, weights 0..3."""
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(n, v, generator=g) * 2).to(dtype)
    target = torch.randint(0, v, (n,), generator=g)
    if ignore_index is not None:
        target[1::3] = ignore_index
    weight = torch.randint(0, 4, (n,), generator=g)
    target[0], weight[0] = v - 1, 2  # one row always counts: else the mean is 0/0 on both sides
    return logits, target, weight


def oracle(logits, target, weight, ignore_index, reduction):
    """Loss and gradient of F.cross_entropy, unweighted, over row i repeated weight[i] times."""
    leaf = logits.detach().clone().requires_grad_()
    copies = torch.repeat_interleave(torch.arange(len(target)), weight)
    loss = F.cross_entropy(leaf[copies], target[copies], ignore_index=ignore_index, reduction=reduction)
    if reduction == "none":  # back to one loss per original row: the sum of its copies
        loss = torch.zeros(len(target), dtype=loss.dtype).index_add(0, copies, loss)
    loss.backward(torch.ones_like(loss))
    return loss.detach(), leaf.grad


def weighted(fn, logits, target, weight, ignore_index, reduction):
    leaf = logits.detach().clone().requires_grad_()
    loss = fn(leaf, target, weight.to(logits.dtype), ignore_index, reduction)
    loss.backward(torch.ones_like(loss))
    return loss.detach(), leaf.grad


@pytest.mark.parametrize("fn", [reference.torch_cross_entropy, reference.manual_cross_entropy],
                         ids=["torch", "manual"])
@pytest.mark.parametrize("reduction", reference.REDUCTIONS)
@pytest.mark.parametrize("ignore_index", [None, -100, 0], ids=["no-ignored", "ignore-100", "ignore0"])
@pytest.mark.parametrize("n, v, dtype", [(1, 2, torch.float32), (37, 27, torch.float32), (200, 101, torch.float64)])
def test_integer_weights_are_repeated_rows(fn, reduction, ignore_index, n, v, dtype):
    logits, target, weight = make_problem(n, v, dtype, ignore_index, seed=n + v)
    index = -100 if ignore_index is None else ignore_index
    got_loss, got_grad = weighted(fn, logits, target, weight, index, reduction)
    want_loss, want_grad = oracle(logits, target, weight, index, reduction)
    atol, rtol = TOL[dtype]
    assert got_loss.shape == want_loss.shape and got_loss.dtype == want_loss.dtype
    torch.testing.assert_close(got_loss, want_loss, atol=atol, rtol=rtol)
    torch.testing.assert_close(got_grad, want_grad, atol=atol, rtol=rtol)


@pytest.mark.parametrize("reduction", reference.REDUCTIONS)
def test_no_weights_is_f_cross_entropy(reduction):
    logits, target, _ = make_problem(50, 27, torch.float64, -100, seed=3)
    torch.testing.assert_close(reference.manual_cross_entropy(logits, target, None, -100, reduction),
                               F.cross_entropy(logits, target, ignore_index=-100, reduction=reduction))
