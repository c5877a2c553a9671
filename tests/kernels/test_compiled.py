"""The compiled single-pass cross-entropy against the torch reference (F.cross_entropy + autograd).

torch.compile takes seconds per graph, so the grid is arranged to compile few: N is dynamic
(one graph serves every N > 1), V is static up to STATIC_VOCAB_MAX and dynamic above, and
reductions, weights and ignore_index never change the graph. bf16, N = 1, overwrite and
loss-only each add a graph or two, so they run on a subset of the shapes.
"""
import pytest
import torch

from kernels import reference
from kernels.availability import compiler_available
from kernels.compiled import (
    STATIC_VOCAB_MAX,
    compiled_cross_entropy,
    compiled_table_cross_entropy,
    warmup,
)

HAVE_COMPILER, WHY_NOT = compiler_available("cpu")
needs_compiler = pytest.mark.skipif(not HAVE_COMPILER, reason=f"torch.compile cannot run here: {WHY_NOT}")

IGNORE = -100
REDUCTIONS = ("mean", "sum", "none")
TOL = {torch.float32: dict(atol=2e-5, rtol=2e-5), torch.bfloat16: dict(atol=2e-2, rtol=2e-2)}


def make_case(n_rows, vocab_size, dtype, seed, extreme=True):
    """Logits with -inf entries, +-1e4 rows and ignored rows; int targets; positive weights."""
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn((n_rows, vocab_size), generator=gen) * 3
    target = torch.randint(0, vocab_size, (n_rows,), generator=gen)
    weight = torch.rand((n_rows,), generator=gen) * 2 + 0.1
    if extreme and n_rows >= 3:
        logits[0, (target[0] + 1) % vocab_size] = float("-inf")  # a -inf that is not the target
        logits[1, :] = -1e4
        logits[1, target[1]] = 1e4
        logits[2, ::2] = 1e4
        target[2] = IGNORE
    return logits.to(dtype), target, weight


def reference_loss_and_grad(logits, target, weight, reduction, grad_out):
    """Loss and d(loss)/d(logits) of the fp32 reference, upstream gradient `grad_out`."""
    x = logits.detach().float().requires_grad_(True)
    loss = reference.torch_cross_entropy(x, target, weight, IGNORE, reduction)
    loss.backward(grad_out)
    return loss.detach(), x.grad


def ours_loss_and_grad(logits, target, weight, reduction, grad_out, **kwargs):
    # A non-leaf, as in training (logits = W[context]): this takes the reused-buffer path.
    leaf = logits.detach().clone().requires_grad_(True)
    x = leaf * 1
    loss = compiled_cross_entropy(x, target, weight, IGNORE, reduction, **kwargs)
    loss.backward(grad_out.to(loss.dtype))
    return loss.detach(), leaf.grad


def upstream(reduction, n_rows, seed):
    if reduction == "none":  # exercises the per-row scaling in backward
        return torch.rand((n_rows,), generator=torch.Generator().manual_seed(seed)) + 0.5
    return torch.tensor(1.0)


def check_against_reference(n_rows, vocab_size, dtype, weighted, reduction, target_dtype=torch.int64, seed=0):
    logits, target, weight = make_case(n_rows, vocab_size, dtype, seed)
    weight = weight if weighted else None
    grad_out = upstream(reduction, n_rows, seed)
    want_loss, want_grad = reference_loss_and_grad(logits, target, weight, reduction, grad_out)
    got_loss, got_grad = ours_loss_and_grad(logits, target.to(target_dtype), weight, reduction, grad_out)
    assert got_loss.dtype == dtype and got_grad.dtype == dtype
    torch.testing.assert_close(got_loss.float(), want_loss, **TOL[dtype])
    torch.testing.assert_close(got_grad.float(), want_grad, **TOL[dtype])


@needs_compiler
@pytest.mark.parametrize("vocab_size", [2, 27, 100, 729, 4099])
@pytest.mark.parametrize("n_rows", [3, 128, 1000])
def test_fp32_matches_reference(n_rows, vocab_size):
    for weighted in (False, True):
        for reduction in REDUCTIONS:
            check_against_reference(n_rows, vocab_size, torch.float32, weighted, reduction, seed=n_rows + vocab_size)


@needs_compiler
@pytest.mark.parametrize("vocab_size", [27, 4099])
@pytest.mark.parametrize("n_rows", [3, 1000])
def test_bf16_matches_reference(n_rows, vocab_size):
    for weighted in (False, True):
        for reduction in REDUCTIONS:
            check_against_reference(n_rows, vocab_size, torch.bfloat16, weighted, reduction)


@needs_compiler
def test_bf16_error_no_worse_than_torch_bf16():
    """Against fp32 truth, our bf16 loss and gradient err no more than F.cross_entropy's own bf16 path."""
    logits, target, weight = make_case(1000, 27, torch.bfloat16, seed=3, extreme=False)
    one = torch.tensor(1.0)
    truth_loss, truth_grad = reference_loss_and_grad(logits, target, weight, "mean", one)
    x = logits.detach().clone().requires_grad_(True)
    torch_loss = reference.torch_cross_entropy(x, target, weight, IGNORE, "mean")
    torch_loss.backward()
    got_loss, got_grad = ours_loss_and_grad(logits, target, weight, "mean", one)
    assert (got_loss.float() - truth_loss).abs() <= (torch_loss.detach().float() - truth_loss).abs() + 1e-3
    assert (got_grad.float() - truth_grad).abs().max() <= (x.grad.float() - truth_grad).abs().max() + 1e-6


@needs_compiler
def test_single_row_and_int32_targets():
    check_against_reference(1, 27, torch.float32, True, "mean", seed=1)
    for reduction in REDUCTIONS:
        check_against_reference(128, 27, torch.float32, True, reduction, target_dtype=torch.int32)


@needs_compiler
def test_all_rows_ignored_gives_nan_mean_and_zero_gradient():
    logits, target, _ = make_case(5, 27, torch.float32, seed=4, extreme=False)
    target[:] = IGNORE
    got_loss, got_grad = ours_loss_and_grad(logits, target, None, "mean", torch.tensor(1.0))
    want_loss, want_grad = reference_loss_and_grad(logits, target, None, "mean", torch.tensor(1.0))
    assert torch.isnan(got_loss) and torch.isnan(want_loss)
    assert torch.equal(got_grad, torch.zeros_like(got_grad)) and torch.equal(want_grad, torch.zeros_like(want_grad))


@needs_compiler
@pytest.mark.parametrize("dtype,vocab_size", [(torch.float32, 27), (torch.float32, 729), (torch.bfloat16, 27)])
def test_overwrite_logits_writes_gradient_into_the_buffer(dtype, vocab_size):
    logits, target, weight = make_case(200, vocab_size, dtype, seed=5)
    want_loss, want_grad = reference_loss_and_grad(logits, target, weight, "mean", torch.tensor(1.0))
    leaf = logits.clone().requires_grad_(True)
    x = leaf * 1
    buffer_address = x.data_ptr()
    loss = compiled_cross_entropy(x, target, weight, IGNORE, "mean", overwrite_logits=True)
    # The forward already wrote the gradient over the logits.
    torch.testing.assert_close(x.detach().float(), want_grad, **TOL[dtype])
    loss.backward()
    torch.testing.assert_close(loss.detach().float(), want_loss, **TOL[dtype])
    torch.testing.assert_close(leaf.grad.float(), want_grad, **TOL[dtype])
    assert x.data_ptr() == buffer_address


@needs_compiler
def test_varying_rows_do_not_recompile():
    from torch._dynamo.utils import counters

    warmup((64, 27), torch.float32, "cpu")  # compiles (or finds) the V = 27 fp32 graphs
    before = counters["stats"]["unique_graphs"]
    for n_rows in (5, 77, 300, 1001):
        check_against_reference(n_rows, 27, torch.float32, True, "mean", seed=n_rows)
    assert counters["stats"]["unique_graphs"] == before


@needs_compiler
def test_reused_buffer_over_training_steps_and_stale_backward_raises():
    gen = torch.Generator().manual_seed(6)
    table = torch.randn((27, 27), generator=gen, requires_grad=True)
    context = torch.randint(0, 27, (500,), generator=gen)
    target = torch.randint(0, 27, (500,), generator=gen)
    for _ in range(3):  # same shape each step: the gradient buffer is reused
        loss = compiled_cross_entropy(table[context], target)
        loss.backward()
        want = table.detach().clone().requires_grad_(True)
        reference.torch_cross_entropy(want[context], target).backward()
        torch.testing.assert_close(table.grad, want.grad, **TOL[torch.float32])
        table.grad = None
    first = compiled_cross_entropy(table[context], target)
    compiled_cross_entropy(table[context], target)  # reuses the buffer before `first` ran backward
    with pytest.raises(RuntimeError, match="reused by a later forward"):
        first.backward()


@needs_compiler
def test_leaf_logits_get_their_own_gradient():
    """.grad of a leaf must not alias a buffer the next forward overwrites."""
    logits, target, _ = make_case(64, 27, torch.float32, seed=7, extreme=False)
    a = logits.clone().requires_grad_(True)
    compiled_cross_entropy(a, target).backward()
    kept = a.grad.clone()
    b = (logits * 2).requires_grad_(True)
    compiled_cross_entropy(b, target).backward()
    assert torch.equal(a.grad, kept)


@needs_compiler
def test_without_grad_computes_the_loss_only():
    logits, target, weight = make_case(300, 27, torch.float32, seed=8)
    with torch.no_grad():
        got = compiled_cross_entropy(logits, target, weight)
    want = reference.torch_cross_entropy(logits, target, weight, IGNORE, "mean")
    torch.testing.assert_close(got, want, **TOL[torch.float32])


def test_static_vocab_threshold_is_in_the_grid():
    # The grid above must exercise both compiled V classes.
    assert 100 <= STATIC_VOCAB_MAX < 729


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
def test_table_variant_matches_gathered_reference(dtype, reduction, weighted):
    gen = torch.Generator().manual_seed(9)
    n_contexts, vocab_size, n_rows = 30, 27, 700  # many repeated contexts
    table = (torch.randn((n_contexts, vocab_size), generator=gen) * 2).to(dtype)
    table[3, 5] = float("-inf")
    context = torch.randint(0, n_contexts, (n_rows,), generator=gen, dtype=torch.int32)
    target = torch.randint(0, vocab_size, (n_rows,), generator=gen)
    target[context == 3] = (5 + 1) % vocab_size  # keep the -inf off every target
    target[::13] = IGNORE
    weight = torch.rand((n_rows,), generator=gen) + 0.1 if weighted else None
    grad_out = upstream(reduction, n_rows, 10)

    want_table = table.detach().float().requires_grad_(True)
    want = reference.torch_cross_entropy(want_table[context.long()], target, weight, IGNORE, reduction)
    want.backward(grad_out)
    got_table = table.detach().clone().requires_grad_(True)
    got = compiled_table_cross_entropy(got_table, context, target, weight, IGNORE, reduction)
    got.backward(grad_out.to(got.dtype))
    assert got.dtype == dtype and got_table.grad.dtype == dtype
    torch.testing.assert_close(got.float(), want.detach(), **TOL[dtype])
    torch.testing.assert_close(got_table.grad.float(), want_table.grad, **TOL[dtype])
