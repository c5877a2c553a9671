"""count_cross_entropy against the per-row computation F.cross_entropy(table[context])."""
import pytest
import torch

from kernels.reference import torch_cross_entropy
from kernels.suffstats import count_cross_entropy, target_counts


def per_row(table, context, target, weight, reduction):
    leaf = table.detach().requires_grad_(True)
    loss = torch_cross_entropy(leaf[context], target, weight, reduction=reduction)
    (grad,) = torch.autograd.grad(loss, leaf)
    return loss.detach(), grad


def from_counts(table, counts, reduction):
    leaf = table.detach().requires_grad_(True)
    loss = count_cross_entropy(leaf, counts, reduction)
    (grad,) = torch.autograd.grad(loss, leaf)
    return loss.detach(), grad


@pytest.mark.parametrize("contexts, vocab, rows", [(27, 27, 1000), (729, 27, 5003), (7, 131, 97), (1, 2, 3)])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_counts_give_the_per_row_loss_and_gradient(contexts, vocab, rows, weighted, reduction):
    g = torch.Generator().manual_seed(contexts * 1000 + rows)
    table = torch.randn(contexts, vocab, generator=g, dtype=torch.float64) * 3
    context = torch.randint(0, contexts, (rows,), generator=g)
    target = torch.randint(0, vocab, (rows,), generator=g)
    weight = torch.rand(rows, generator=g, dtype=torch.float64) * 5 if weighted else None
    counts = target_counts(context, target, contexts, vocab, weight).double()
    ref_loss, ref_grad = per_row(table, context, target, weight, reduction)
    # compute in float64 both ways: this checks the algebra, not rounding
    loss, grad = from_counts(table, counts, reduction)
    torch.testing.assert_close(loss.double(), ref_loss, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(grad.double(), ref_grad, rtol=1e-5, atol=1e-7)


def test_float32_table_matches_within_float_tolerance():
    g = torch.Generator().manual_seed(0)
    table = torch.randn(729, 27, generator=g)
    context = torch.randint(0, 729, (20000,), generator=g)
    target = torch.randint(0, 27, (20000,), generator=g)
    ref_loss, ref_grad = per_row(table, context, target, None, "mean")
    loss, grad = from_counts(table, target_counts(context, target, 729, 27), "mean")
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-4, atol=1e-8)


def test_ignored_rows_and_unseen_contexts_count_for_nothing():
    table = torch.randn(4, 5, dtype=torch.float64)
    table[3] = float("-inf")  # a context never seen: its row must not turn the loss into NaN
    context = torch.tensor([0, 1, 1, 2, 2])
    target = torch.tensor([4, 0, -100, 3, 3])
    counts = target_counts(context, target, 4, 5).double()
    assert counts.sum() == 4 and counts[3].sum() == 0
    loss, grad = from_counts(table, counts, "mean")
    ref_loss, ref_grad = per_row(table[:3], context, target, None, "mean")
    torch.testing.assert_close(loss, ref_loss)
    torch.testing.assert_close(grad[:3], ref_grad)
    assert torch.all(grad[3] == 0)


def test_none_reduction_is_per_context():
    table = torch.randn(3, 4, dtype=torch.float64)
    counts = torch.tensor([[1.0, 0, 2, 0], [0, 0, 0, 0], [0, 3, 0, 1]], dtype=torch.float64)
    per_context = count_cross_entropy(table, counts, "none")
    assert per_context.shape == (3,) and per_context[1] == 0
    torch.testing.assert_close(per_context.sum() / counts.sum(), count_cross_entropy(table, counts))


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match="counts"):
        count_cross_entropy(torch.zeros(3, 4), torch.zeros(4, 3))
    with pytest.raises(ValueError, match="reduction"):
        count_cross_entropy(torch.zeros(3, 4), torch.zeros(3, 4), reduction="max")
