"""kernels.triton_table: gather-cross-entropy of table[context] against F.cross_entropy + autograd.

Without CUDA the kernels run on CPU through Triton's interpreter (tests/conftest.py sets
TRITON_INTERPRET=1 before triton is imported); with CUDA the same tests run compiled. The
oracle is kernels.reference.torch_cross_entropy (F.cross_entropy with per-row weights) on
the gathered logits, in float64, differentiated by autograd through the indexing.
"""
import pytest
import torch

from kernels.reference import manual_cross_entropy, torch_cross_entropy
from kernels.triton_ce import HAS_TRITON, TRITON_IMPORT_ERROR, interpreter_active
from kernels.triton_table import (
    MAX_WHOLE_ROW_V,
    TableConfig,
    choose_table_config,
    triton_table_cross_entropy,
)

DEVICE = "cuda" if torch.cuda.is_available() and not interpreter_active() else "cpu"

pytestmark = [
    pytest.mark.skipif(not HAS_TRITON, reason=f"Triton does not import here ({TRITON_IMPORT_ERROR})"),
    pytest.mark.skipif(DEVICE == "cpu" and not interpreter_active(),
                       reason="no CUDA and TRITON_INTERPRET is not set (tests/conftest.py sets it)"),
]

# (dtype, atol, rtol) against the float64 truth: fp32 accumulation, then one rounding to dtype.
TOLERANCES = {
    torch.float32: (1e-5, 1e-5),
    torch.float16: (1e-3, 2e-3),
    torch.bfloat16: (1e-2, 1.6e-2),
}
LARGE_V = MAX_WHOLE_ROW_V + 1  # the first vocabulary that takes the loop-over-V-blocks tiling

# (C contexts, V columns, N rows): C in {1, 5, 27, 81, 729}, V in {2, 27, 100, 4099, LARGE_V},
# N in {1, 3, 128, 1000}; the interpreter's cost grows with C*V, so the wide ones have few contexts.
SHAPES = [
    (1, 2, 1),
    (1, 27, 3),
    (27, 2, 128),
    (27, 27, 1000),
    (27, 100, 3),
    (729, 27, 1000),
    (81, 100, 128),
    (3, 4099, 128),
    (5, 4099, 1),
    (2, LARGE_V, 3),
]


def make_problem(n_contexts, n_cols, n_rows, dtype=torch.float32, *, weighted=False, ignored=False,
                 index_dtype=torch.int64, seed=0):
    """A random table (C, V) in `dtype`, contexts, targets, optional weights; ignored rows get -100."""
    gen = torch.Generator().manual_seed(seed)
    table = torch.randn(n_contexts, n_cols, generator=gen).to(dtype)
    context = torch.randint(0, n_contexts, (n_rows,), generator=gen)
    target = torch.randint(0, n_cols, (n_rows,), generator=gen)
    if ignored:
        target[torch.rand(n_rows, generator=gen) < 0.3] = -100
    weight = torch.rand(n_rows, generator=gen) * 3 if weighted else None
    move = lambda t: None if t is None else t.to(DEVICE)  # noqa: E731
    return (move(table), move(context.to(index_dtype)), move(target.to(index_dtype)), move(weight))


def grad_output_for(loss, seed=1):
    """1.7 for a scalar loss; a random vector (some entries negative) for reduction="none"."""
    if loss.dim() == 0:
        return torch.tensor(1.7, dtype=loss.dtype, device=loss.device)
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(loss.shape, generator=gen).to(dtype=loss.dtype, device=loss.device)


def truth(table, context, target, weight, reduction, grad_output, ignore_index=-100):
    """Loss and table gradient in float64 from F.cross_entropy(table[context]) + autograd."""
    table64 = table.detach().double().cpu().requires_grad_()
    weight64 = None if weight is None else weight.double().cpu()
    loss = torch_cross_entropy(table64[context.cpu()], target.cpu(), weight64, ignore_index, reduction)
    loss.backward(grad_output.double().cpu())
    return loss.detach(), table64.grad


def ours(table, context, target, weight, reduction, ignore_index=-100, grad_output=None, config=None):
    """Loss and table gradient from the Triton kernel (grad_output chosen by grad_output_for)."""
    table = table.detach().clone().requires_grad_()
    loss = triton_table_cross_entropy(table, context, target, weight, ignore_index, reduction, config)
    if grad_output is None:
        grad_output = grad_output_for(loss)
    loss.backward(grad_output)
    return loss.detach(), table.grad, grad_output


def assert_matches_truth(table, context, target, weight, reduction, config=None, ignore_index=-100):
    loss, grad, grad_output = ours(table, context, target, weight, reduction, ignore_index, config=config)
    loss64, grad64 = truth(table, context, target, weight, reduction, grad_output, ignore_index)
    atol, rtol = TOLERANCES[table.dtype]
    assert loss.dtype == table.dtype and grad.dtype == table.dtype and grad.shape == table.shape
    torch.testing.assert_close(loss.cpu().double(), loss64, atol=atol, rtol=rtol, equal_nan=True)
    torch.testing.assert_close(grad.cpu().double(), grad64, atol=atol, rtol=rtol, equal_nan=True)


@pytest.mark.parametrize("weighted,ignored", [(False, False), (True, False), (False, True), (True, True)],
                         ids=["plain", "weighted", "ignore", "weighted-ignore"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "C{}-V{}-N{}".format(*s))
def test_matches_torch_fp32(shape, reduction, weighted, ignored):
    problem = make_problem(*shape, weighted=weighted, ignored=ignored)
    assert_matches_truth(*problem, reduction)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape", [(27, 27, 1000), (729, 27, 128), (3, 4099, 128), (2, LARGE_V, 3)],
                         ids=lambda s: "C{}-V{}-N{}".format(*s))
def test_low_precision_no_worse_than_torch(shape, reduction, dtype):
    """fp16/bf16 tables: within tolerance of the float64 truth, and no further from it than
    torch's own computation in that dtype (F.cross_entropy on table[context] + autograd)."""
    table, context, target, weight = make_problem(*shape, dtype, weighted=True, ignored=True)
    weight = weight.to(dtype).float()  # torch rounds the weights to `dtype`; make that exact for both
    loss, grad, grad_output = ours(table, context, target, weight, reduction)
    loss64, grad64 = truth(table, context, target, weight, reduction, grad_output)
    atol, rtol = TOLERANCES[dtype]
    torch.testing.assert_close(loss.cpu().double(), loss64, atol=atol, rtol=rtol)
    torch.testing.assert_close(grad.cpu().double(), grad64, atol=atol, rtol=rtol)

    table_lp = table.detach().clone().requires_grad_()
    loss_lp = torch_cross_entropy(table_lp[context], target, weight.to(dtype), -100, reduction)
    loss_lp.backward(grad_output)
    # One ulp of slack on the loss: both round a value to `dtype` once, perhaps from either side.
    ulp = torch.finfo(dtype).eps * loss64.abs().max().item()
    assert (loss.cpu().double() - loss64).abs().max() <= (loss_lp.detach().cpu().double() - loss64).abs().max() + ulp
    # The gradient element by element: ours is one rounding of an fp32 value, torch's may land
    # either side, so compare the mean error over the table, not one element's.
    ours_err = (grad.cpu().double() - grad64).abs().mean()
    torch_err = (table_lp.grad.cpu().double() - grad64).abs().mean()
    assert ours_err <= torch_err * 1.05 + 1e-7, (ours_err, torch_err)


@pytest.mark.parametrize("config", [
    TableConfig(contexts_per_program=1, block_v=32, rows_per_program=64, context_warps=1, rows_warps=1),
    TableConfig(contexts_per_program=4, block_v=16, rows_per_program=16, context_warps=1, rows_warps=1),
], ids=["loop-1ctx", "loop-4ctx"])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_forced_loop_tiling_on_small_shapes(config, reduction):
    """The online softmax over several V blocks and partial context tiles, on a small problem:
    V = 100 spans 4 or 7 blocks with a ragged last one, C = 27 leaves a partial tile, and
    N = 1000 rows span many row programs."""
    problem = make_problem(27, 100, 1000, weighted=True, ignored=True)
    assert_matches_truth(*problem, reduction, config=config)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("case", ["one-context", "one-context-one-target", "few-contexts"])
def test_repeated_contexts_accumulate(case, reduction):
    """Many rows share a context, so their gradients add up in one table row."""
    table, context, target, weight = make_problem(27, 27, 1000, weighted=True, ignored=True, seed=3)
    if case == "one-context":
        context = torch.full_like(context, 5)
    elif case == "one-context-one-target":
        context = torch.full_like(context, 26)
        target = torch.where(target == -100, target, 3)
    else:
        context = context % 3
    assert_matches_truth(table, context, target, weight, reduction)


def test_repeated_context_gradient_is_sum_of_rows():
    """1000 copies of one (context, target) row give 1000 times that row's gradient ("sum")."""
    table, _, _, _ = make_problem(4, 27, 1)
    context = torch.full((1000,), 2, device=DEVICE)
    target = torch.full((1000,), 7, device=DEVICE)
    _, grad_many, _ = ours(table, context, target, None, "sum", grad_output=torch.tensor(1.0, device=DEVICE))
    _, grad_one, _ = ours(table, context[:1], target[:1], None, "sum", grad_output=torch.tensor(1.0, device=DEVICE))
    torch.testing.assert_close(grad_many, 1000 * grad_one, atol=1e-4, rtol=1e-5)
    assert grad_many[[0, 1, 3]].abs().max() == 0  # untouched contexts get exactly nothing


@pytest.mark.parametrize("index_dtype", [torch.int32, torch.int64])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_index_dtypes(index_dtype, reduction):
    problem = make_problem(729, 27, 128, weighted=True, ignored=True, index_dtype=index_dtype)
    assert_matches_truth(*problem, reduction)


@pytest.mark.filterwarnings("ignore:.*encountered in:RuntimeWarning")  # numpy, inside the interpreter
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("targets_hit_inf", [False, True], ids=["finite-loss", "inf-loss"])
@pytest.mark.parametrize("shape", [(27, 27, 128), (2, LARGE_V, 3)], ids=lambda s: "C{}-V{}-N{}".format(*s))
def test_minus_inf_entries(shape, targets_hit_inf, reduction):
    """-inf table entries (masked-out characters) give probability 0; a target on one gives an
    infinite loss, as in torch; an unused all -inf row gets a zero gradient, not nan."""
    table, context, target, weight = make_problem(*shape, weighted=True, ignored=True, seed=5)
    n_contexts, n_cols = table.shape
    gen = torch.Generator().manual_seed(7)
    hole = (torch.rand(n_contexts, n_cols, generator=gen) < 0.3).to(DEVICE)
    valid = target != -100
    on_target = torch.zeros_like(hole)
    on_target[context[valid], target[valid]] = True
    hole = hole & (on_target if targets_hit_inf else ~on_target)
    table = table.masked_fill(hole, float("-inf"))
    if n_contexts > 2:
        table[n_contexts - 1] = float("-inf")
        context = torch.where(context == n_contexts - 1, 0, context)
    assert_matches_truth(table, context, target, weight, reduction)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape", [(27, 27, 1000), (2, LARGE_V, 3)], ids=lambda s: "C{}-V{}-N{}".format(*s))
def test_large_values_stay_finite(shape, reduction):
    """+-1e4 logits: the lecture's exp/normalise path overflows to nan; ours matches the truth."""
    table, context, target, weight = make_problem(*shape, weighted=True, seed=11)
    table = (table * 1e4).clamp(-1e4, 1e4)
    assert torch.isnan(manual_cross_entropy(table[context], target, weight, -100, reduction)).any()
    loss, _, _ = ours(table, context, target, weight, reduction)
    assert torch.isfinite(loss).all()
    assert_matches_truth(table, context, target, weight, reduction)


def test_row_stride_and_column_stride():
    """A table that is a column slice of a wider buffer (row stride 40, not V), and a transposed one."""
    wide, context, target, weight = make_problem(729, 40, 1000, weighted=True, ignored=True)
    assert_matches_truth(wide[:, :27], context % 729, target % 27, weight, "mean")
    transposed = wide[:27, :].t()  # (40, 27), column stride 40: copied to contiguous columns
    assert_matches_truth(transposed, context % 40, target % 27, weight, "sum")


def test_every_row_ignored_gives_nan_mean_and_zero_grad():
    table, context, target, _ = make_problem(27, 27, 128)
    target = torch.full_like(target, -100)
    assert_matches_truth(table, context, target, None, "mean")
    loss, grad, _ = ours(table, context, target, None, "mean")
    assert torch.isnan(loss) and grad.abs().max() == 0


def test_custom_ignore_index():
    table, context, target, weight = make_problem(27, 27, 1000, weighted=True)
    assert_matches_truth(table, context, target, weight, "mean", ignore_index=0)


def test_out_of_range_ids_poison_the_loss():
    """A context >= C or a target >= V is never dereferenced: the loss is nan, nothing crashes."""
    table, context, target, _ = make_problem(27, 27, 128)
    bad_target = target.clone()
    bad_target[5] = 27
    assert torch.isnan(triton_table_cross_entropy(table, context, bad_target, None, -100, "sum"))
    bad_context = context.clone()
    bad_context[9] = 1000
    per_row = triton_table_cross_entropy(table, bad_context, target, None, -100, "none")
    assert torch.isnan(per_row[9]) and torch.isfinite(per_row[torch.arange(128, device=DEVICE) != 9]).all()


def test_backward_twice_with_retain_graph():
    """The first backward hands the forward's gradient (over its counts buffer for fp32) to autograd;
    a second backward runs the kernels again (kernels.fused.FusedTableCrossEntropy)."""
    table, context, target, weight = make_problem(27, 27, 1000, weighted=True, ignored=True)
    table.requires_grad_()
    loss = triton_table_cross_entropy(table, context, target, weight)
    (first,) = torch.autograd.grad(loss, table, retain_graph=True)
    (second,) = torch.autograd.grad(loss, table)
    torch.testing.assert_close(first, second, atol=0, rtol=0)


def test_no_grad_forward_matches_and_keeps_nothing():
    table, context, target, weight = make_problem(729, 27, 1000, weighted=True, ignored=True)
    with_grad = triton_table_cross_entropy(table.clone().requires_grad_(), context, target, weight)
    with torch.no_grad():
        no_grad = triton_table_cross_entropy(table.clone().requires_grad_(), context, target, weight)
    plain = triton_table_cross_entropy(table, context, target, weight)
    assert no_grad.grad_fn is None and plain.grad_fn is None
    torch.testing.assert_close(no_grad, with_grad.detach(), atol=0, rtol=0)
    torch.testing.assert_close(plain, with_grad.detach(), atol=0, rtol=0)


def test_dispatch_routes_to_the_kernel():
    import kernels

    table, context, target, weight = make_problem(27, 27, 128, weighted=True, ignored=True)
    got = kernels.table_cross_entropy(table, context, target, weight, backend="triton")
    want = kernels.table_cross_entropy(table, context, target, weight, backend="torch")
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_rejects_float64_table():
    table, context, target, _ = make_problem(27, 27, 3)
    with pytest.raises(ValueError, match="float32, float16 or bfloat16"):
        triton_table_cross_entropy(table.double(), context, target)


def test_choose_table_config():
    bigram = choose_table_config(27, 27)
    assert (bigram.tiling, bigram.contexts_per_program, bigram.block_v) == ("rows", 32, 32)
    trigram = choose_table_config(729, 27)
    assert trigram.contexts_per_program * trigram.block_v == 2048
    assert choose_table_config(3, 4099).block_v == 8192
    for n_cols in (LARGE_V, 131072, 262144 + 1):
        wide = choose_table_config(4, n_cols)
        assert wide.tiling == "loop" and wide.block_v < n_cols
    with pytest.raises(ValueError):
        choose_table_config(3, 0)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("shape", [(27, 27, 228_146), (19_683, 27, 200_000), (8, 131_072, 256)],
                         ids=["bigram", "4gram", "V131072"])
def test_compiled_on_cuda(shape, reduction, dtype):
    """The same comparison compiled for a GPU, at training sizes (the bigram's 228,146 rows)."""
    gen = torch.Generator().manual_seed(0)
    n_contexts, n_cols, n_rows = shape
    table = torch.randn(n_contexts, n_cols, generator=gen).to(dtype).cuda()
    context = torch.randint(0, n_contexts, (n_rows,), generator=gen).cuda()
    target = torch.randint(0, n_cols, (n_rows,), generator=gen).cuda()
    target[::11] = -100
    weight = (torch.rand(n_rows, generator=gen) * 3).cuda()
    assert_matches_truth(table, context, target, weight, reduction)
