"""The Triton fused cross-entropy against kernels.reference.torch_cross_entropy + autograd.

Without CUDA the kernels run through Triton's CPU interpreter (tests/conftest.py sets
TRITON_INTERPRET=1 before triton is imported). The interpreter costs milliseconds per
program, so the grid below is a covering set, not the cartesian product: every N, V,
reduction, ignore/weight/stride/target-dtype choice appears, in both tilings.
"""
import importlib.util
import sys

import pytest
import torch

import kernels
from kernels import availability, triton_ce
from kernels.reference import manual_cross_entropy, torch_cross_entropy

pytestmark = pytest.mark.skipif(
    not triton_ce.HAS_TRITON, reason=f"Triton does not import here: {triton_ce.TRITON_IMPORT_ERROR}"
)

if not torch.cuda.is_available() and not triton_ce.interpreter_active():
    pytest.skip("no CUDA and TRITON_INTERPRET is not set: the Triton kernel cannot run here",
                allow_module_level=True)

CPU = torch.device("cpu")
LARGE_V = 131073  # above MAX_WHOLE_ROW_V and above 2**17: the loop tiling
# (atol, rtol) for loss and gradient against the reference in the same dtype.
TOL = {torch.float32: (1e-5, 1e-5), torch.float16: (2e-3, 2e-3), torch.bfloat16: (2e-2, 2e-2)}


def make_inputs(n, v, *, dtype=torch.float32, ignore=None, weighted=False, noncontig=False,
                target_dtype=torch.int64, spread=3.0, seed=0):
    """Logits storage (n, width), the column slice that is the (n, v) logits, target, weight, ignore_index.

    noncontig: the logits are columns 2..2+v of a wider buffer (row stride v + 5, offset 2).
    ignore: None (no row ignored, ignore_index -100) or the ignore_index given to every third row.
    weighted: weights in [0.5, 1.5), with some rows of weight 0.
    """
    g = torch.Generator().manual_seed(seed)
    width = v + 5 if noncontig else v
    data = (torch.randn(n, width, generator=g) * spread).to(dtype)
    cols = slice(2, 2 + v) if noncontig else slice(0, v)
    target = torch.randint(0, v, (n,), generator=g)
    ignore_index = -100 if ignore is None else ignore
    if ignore is not None:
        target[1::3] = ignore
    weight = None
    if weighted:
        weight = torch.rand(n, generator=g) + 0.5
        weight[2::7] = 0.0
    return data, cols, target.to(target_dtype), weight, ignore_index


def grad_output_for(loss, seed=1):
    """A non-trivial grad_output, so backward's scaling is tested too."""
    if loss.dim() == 0:
        return torch.tensor(0.75, dtype=loss.dtype, device=loss.device)
    g = torch.Generator().manual_seed(seed)
    return torch.randn(loss.shape, generator=g).to(loss.dtype).to(loss.device)


def loss_and_grad(fn, data, cols, target, weight, ignore_index, reduction, device=CPU, **kwargs):
    """Loss of fn(data[:, cols], ...) and the gradient of the logits, through autograd."""
    leaf = data.clone().to(device).requires_grad_()
    logits = leaf.clone()[:, cols]  # a non-leaf view, as logits = W[context] would be
    weight = None if weight is None else weight.to(device)
    loss = fn(logits, target.to(device), weight, ignore_index, reduction, **kwargs)
    loss.backward(grad_output_for(loss))
    return loss.detach(), leaf.grad[:, cols]


def ours(logits, target, weight, ignore_index, reduction, overwrite_logits=False, tiling=None):
    return triton_ce.triton_cross_entropy(logits, target, weight, ignore_index, reduction, overwrite_logits,
                                          tiling=tiling)


def check_against_reference(data, cols, target, weight, ignore_index, reduction, device=CPU):
    """assert_close of our loss and gradient with the reference in the logits' own dtype."""
    atol, rtol = TOL[data.dtype]
    got_loss, got_grad = loss_and_grad(ours, data, cols, target, weight, ignore_index, reduction, device)
    ref_loss, ref_grad = loss_and_grad(torch_cross_entropy, data, cols, target, weight, ignore_index,
                                       reduction, device)
    assert got_loss.dtype == ref_loss.dtype and got_loss.shape == ref_loss.shape
    torch.testing.assert_close(got_loss, ref_loss, atol=atol, rtol=rtol)
    torch.testing.assert_close(got_grad, ref_grad, atol=atol, rtol=rtol)


# (N, V, reduction, ignore, weighted, noncontig, target dtype): each N, V, reduction and flag
# appears several times; V = 4099 pads to 8192 columns (one whole row per program).
CASES = [
    (1, 2, "mean", None, False, False, torch.int64),
    (128, 2, "sum", -100, True, True, torch.int32),
    (1000, 2, "none", 0, True, False, torch.int64),
    (3, 27, "sum", -100, True, True, torch.int64),
    (128, 27, "none", -100, False, False, torch.int32),
    (1000, 27, "mean", -100, True, True, torch.int64),
    (1000, 27, "sum", None, False, False, torch.int64),
    (1, 100, "none", None, True, True, torch.int64),
    (128, 100, "mean", 0, False, True, torch.int64),
    (1000, 100, "none", -100, True, False, torch.int32),
    (3, 729, "none", -100, True, True, torch.int64),
    (128, 729, "mean", -100, True, False, torch.int64),
    (1, 729, "sum", None, False, False, torch.int32),
    (1, 4099, "sum", None, True, False, torch.int64),
    (3, 4099, "mean", -100, False, True, torch.int32),
    (128, 4099, "none", -100, True, False, torch.int64),
    (3, 8193, "mean", -100, True, True, torch.int64),  # just past the whole-row limit: 3 blocks
    (3, LARGE_V, "mean", -100, True, True, torch.int32),
    (3, LARGE_V, "none", None, False, False, torch.int64),
    (3, LARGE_V, "sum", 0, True, False, torch.int64),
]


def case_id(case):
    n, v, reduction, ignore, weighted, noncontig, target_dtype = case
    return (f"N{n}-V{v}-{reduction}-ign{ignore}-{'w' if weighted else 'now'}-"
            f"{'strided' if noncontig else 'contig'}-{str(target_dtype).split('.')[-1]}")


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_matches_reference_fp32(case):
    n, v, reduction, ignore, weighted, noncontig, target_dtype = case
    data, cols, target, weight, ignore_index = make_inputs(
        n, v, ignore=ignore, weighted=weighted, noncontig=noncontig, target_dtype=target_dtype)
    check_against_reference(data, cols, target, weight, ignore_index, reduction)


def test_choose_config_tilings():
    small = triton_ce.rows_config(1000, 27)
    assert small.tiling == "rows" and small.block_v == 32 and small.rows_per_program >= 64
    assert triton_ce.choose_config(3, 27, torch.float32).rows_per_program == 4  # no padding rows beyond N
    # Unaligned small V with contiguous rows and N of at least one tile: the launcher's small-V
    # layout; the flat tiles hold a multiple of 16 bytes / element size rows (16-byte aligned starts).
    for v in (27, 729):
        for dtype, multiple in ((torch.float32, 4), (torch.bfloat16, 8), (torch.float16, 8)):
            assert triton_ce.choose_config(1000, v, dtype).tiling == triton_ce.SMALL_V_TILING
            flat = triton_ce.flat_config(v, dtype)
            assert flat.tiling == "flat" and flat.rows_per_program % multiple == 0 and flat.block_v >= v
            assert triton_ce.flat_applies(1000, v, dtype) and not triton_ce.flat_applies(1000, v, dtype, v + 5)
        assert triton_ce.choose_config(1000, v, torch.float32, row_stride=v + 5).tiling == "rows"
    assert not triton_ce.flat_applies(1000, 32, torch.float32)  # already aligned: rows
    assert triton_ce.choose_config(128, 4099, torch.float32) == triton_ce.CEConfig("rows", 1, 8192, 16, 1)
    for v in (8193, 131072, 262144):
        cfg = triton_ce.choose_config(4, v, torch.float32)
        assert cfg.tiling == "loop" and cfg.block_v < v
    for n, v in [(1, 1), (1, 2), (1000, 27), (7, 729), (5, 4099), (2, 8192)]:
        cfg = triton_ce.choose_config(n, v, torch.float16)
        assert cfg.block_v >= v and cfg.block_v & (cfg.block_v - 1) == 0


@pytest.mark.parametrize("n, v, block_v", [(3, 100, 32), (5, 27, 8)])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_loop_tiling_on_small_shapes(monkeypatch, n, v, block_v, reduction):
    """The online softmax across several blocks with a ragged last block, cheaply."""
    monkeypatch.setattr(triton_ce, "choose_config", lambda *a, **k: triton_ce.CEConfig("loop", 1, block_v, 1, 1))
    data, cols, target, weight, ignore_index = make_inputs(n, v, ignore=-100, weighted=True, noncontig=True)
    data[0, cols.start + target[0]] += 20.0  # the max grows in a later block: the sum is rescaled
    check_against_reference(data, cols, target, weight, ignore_index, reduction)


@pytest.mark.parametrize("n, v, rows, dtype, reduction, weighted, overwrite", [
    (8, 27, 8, torch.float32, "mean", True, False),     # one tile, no tail
    (21, 27, 8, torch.float32, "none", False, True),    # two tiles and a 5-row tail ("rows")
    (19, 13, 16, torch.bfloat16, "sum", True, False),   # V = 13: a 208-element run padded to 256
    (16, 27, 8, torch.float16, "mean", True, True),
])
def test_flat_tiling_on_small_shapes(monkeypatch, n, v, rows, dtype, reduction, weighted, overwrite):
    """The flat tiling (aligned flat runs regrouped into rows), with small tiles so the interpreter is quick."""
    monkeypatch.setattr(triton_ce, "choose_config", lambda *a, **k: triton_ce.CEConfig("flat", rows, 32, 1, 1))
    data, cols, target, weight, ignore_index = make_inputs(n, v, dtype=dtype, ignore=-100, weighted=weighted)
    calls = triton_ce.kernel_calls(data, data, target, weight, torch.ones(1), torch.empty(n), ignore_index)
    assert calls[0][0] is triton_ce._ce_flat_kernel and len(calls) == 1 + (n % rows != 0)
    got_loss, got_grad = loss_and_grad(ours, data, cols, target, weight, ignore_index, reduction,
                                       overwrite_logits=overwrite)
    ref_loss, ref_grad = loss_and_grad(torch_cross_entropy, data, cols, target, weight, ignore_index, reduction)
    atol, rtol = TOL[dtype]
    torch.testing.assert_close(got_loss, ref_loss, atol=atol, rtol=rtol)
    torch.testing.assert_close(got_grad, ref_grad, atol=atol, rtol=rtol)


@pytest.mark.parametrize("dtype, overwrite", [(torch.float32, False), (torch.bfloat16, True)])
def test_flat_tiling_by_option_at_its_real_tile_size(dtype, overwrite):
    """tiling="flat" is how the flat layout launches (the static report compiles the same plan)."""
    n, v = 300, 27  # two flat tiles of 128 rows and a 44-row tail for "rows"
    data, cols, target, weight, ignore_index = make_inputs(n, v, dtype=dtype, ignore=-100, weighted=True)
    plan = lambda tiling: [kernel for kernel, *_ in triton_ce.kernel_calls(  # noqa: E731
        data, data, target, weight, torch.ones(1), torch.empty(n), ignore_index, tiling=tiling)]
    assert plan("flat") == [triton_ce._ce_flat_kernel, triton_ce._ce_rows_kernel]
    assert plan("rows") == [triton_ce._ce_rows_kernel]
    assert plan(None) == plan(triton_ce.SMALL_V_TILING)
    got_loss, got_grad = loss_and_grad(ours, data, cols, target, weight, ignore_index, "mean",
                                       overwrite_logits=overwrite, tiling="flat")
    ref_loss, ref_grad = loss_and_grad(torch_cross_entropy, data, cols, target, weight, ignore_index, "mean")
    atol, rtol = TOL[dtype]
    torch.testing.assert_close(got_loss, ref_loss, atol=atol, rtol=rtol)
    torch.testing.assert_close(got_grad, ref_grad, atol=atol, rtol=rtol)
    with pytest.raises(ValueError, match="small-V tiling"):
        ours(data, target, weight, ignore_index, "mean", tiling="loop")


@pytest.mark.filterwarnings("ignore:.*encountered in:RuntimeWarning")
def test_flat_tiling_minus_inf_and_ignored_rows(monkeypatch):
    monkeypatch.setattr(triton_ce, "choose_config", lambda *a, **k: triton_ce.CEConfig("flat", 8, 64, 1, 1))
    data, cols, target = infinite_logits(16, 50)
    got_loss, got_grad = loss_and_grad(ours, data, cols, target, None, -100, "none")
    ref_loss, ref_grad = loss_and_grad(torch_cross_entropy, data, cols, target, None, -100, "none")
    torch.testing.assert_close(got_loss, ref_loss, atol=1e-5, rtol=1e-5)
    keep = torch.arange(16) != 6
    torch.testing.assert_close(got_grad[keep], ref_grad[keep], atol=1e-6, rtol=1e-5)
    assert torch.isfinite(got_grad).all() and (got_grad[6] == 0).all()


def infinite_logits(n, v, seed=0):
    """Logits with -inf scattered off target; special rows (n >= 7):

    0: all -inf but its target; 1: a whole first half of -inf (a whole block in the loop
    tiling); 3: its target logit is -inf (torch: loss inf, gradient finite); 6: all -inf and
    ignored (torch's gradient is nan there; ours is 0, as for every ignored row).
    """
    data, cols, target, _, _ = make_inputs(n, v, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    holes = torch.rand(n, v, generator=g) < 0.3
    holes[torch.arange(n), target] = False
    data[holes] = float("-inf")
    data[0] = float("-inf")
    data[0, target[0]] = 1.5
    data[1, :v // 2] = float("-inf")
    data[1, target[1]] = 2.0
    data[3, target[3]] = float("-inf")
    data[6] = float("-inf")
    target[6] = -100
    return data, cols, target


# numpy, running the interpreter, warns about the all -inf ignored row (exp/log of nothing).
@pytest.mark.filterwarnings("ignore:.*encountered in:RuntimeWarning")
@pytest.mark.parametrize("tiling", ["rows", "loop"])
@pytest.mark.parametrize("reduction", ["none", "sum"])
def test_minus_inf_logits(monkeypatch, tiling, reduction):
    if tiling == "loop":
        monkeypatch.setattr(triton_ce, "choose_config", lambda *a, **k: triton_ce.CEConfig("loop", 1, 16, 1, 1))
    data, cols, target = infinite_logits(7, 50)
    got_loss, got_grad = loss_and_grad(ours, data, cols, target, None, -100, reduction)
    ref_loss, ref_grad = loss_and_grad(torch_cross_entropy, data, cols, target, None, -100, reduction)
    torch.testing.assert_close(got_loss, ref_loss, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got_grad[:6], ref_grad[:6], atol=1e-6, rtol=1e-5)
    assert torch.isfinite(got_grad).all() and (got_grad[6] == 0).all()
    if reduction == "none":
        assert got_loss[0] == 0 and got_loss[6] == 0 and torch.isinf(got_loss[3])
        assert torch.isfinite(got_loss[[1, 2, 4, 5]]).all()


@pytest.mark.parametrize("n, v, dtype", [(128, 27, torch.float32), (3, LARGE_V, torch.float32),
                                         (128, 729, torch.bfloat16)])
def test_large_logits_where_manual_overflows(n, v, dtype):
    data, cols, target, weight, ignore_index = make_inputs(n, v, dtype=dtype, spread=1e4, ignore=-100,
                                                           weighted=True)
    with torch.no_grad():
        manual = manual_cross_entropy(data, target, weight, ignore_index, "mean")
    assert not torch.isfinite(manual), "the manual backend was expected to overflow here"
    got_loss, got_grad = loss_and_grad(ours, data, cols, target, weight, ignore_index, "mean")
    ref_loss, ref_grad = loss_and_grad(torch_cross_entropy, data, cols, target, weight, ignore_index, "mean")
    assert torch.isfinite(got_loss) and torch.isfinite(got_grad).all()
    # loss is about 1e4: a few ulps of the logits themselves
    torch.testing.assert_close(got_loss, ref_loss, atol=0, rtol=TOL[dtype][1])
    torch.testing.assert_close(got_grad, ref_grad, **dict(zip(("atol", "rtol"), TOL[dtype])))


def check_low_precision(data, cols, target, weight, ignore_index, reduction, device=CPU):
    """Against fp32 truth on the same (rounded) logits, our error is within torch's own plus a margin."""
    dtype = data.dtype
    got_loss, got_grad = loss_and_grad(ours, data, cols, target, weight, ignore_index, reduction, device)
    low_loss, low_grad = loss_and_grad(torch_cross_entropy, data, cols, target, weight, ignore_index,
                                       reduction, device)
    true_loss, true_grad = loss_and_grad(torch_cross_entropy, data.float(), cols, target, weight, ignore_index,
                                         reduction, device)
    assert got_loss.dtype == dtype and got_grad.dtype == dtype
    eps = torch.finfo(dtype).eps
    for got, low, truth in [(got_loss, low_loss, true_loss), (got_grad, low_grad, true_grad)]:
        ours_err = (got.float() - truth).abs().max()
        torch_err = (low.float() - truth).abs().max()
        margin = eps * truth.abs().max().clamp(min=1e-3)
        assert ours_err <= torch_err + margin, f"ours {ours_err:.3g} vs torch {torch_err:.3g} (+{margin:.3g})"
        torch.testing.assert_close(got.float(), truth, atol=TOL[dtype][0], rtol=TOL[dtype][1])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("n, v, reduction", [(128, 27, "mean"), (128, 729, "none"), (32, 4099, "sum"),
                                             (2, LARGE_V, "mean")])
def test_low_precision_no_worse_than_torch(dtype, n, v, reduction):
    data, cols, target, weight, ignore_index = make_inputs(n, v, dtype=dtype, ignore=-100, weighted=True,
                                                           noncontig=(v == 729))
    check_low_precision(data, cols, target, weight, ignore_index, reduction)


@pytest.mark.parametrize("n, v", [(100, 27), (3, LARGE_V)])
@pytest.mark.parametrize("noncontig", [False, True])
def test_overwrite_logits_writes_gradient_in_place(n, v, noncontig):
    data, cols, target, weight, ignore_index = make_inputs(n, v, ignore=-100, weighted=True, noncontig=noncontig)
    ref_loss, ref_grad = loss_and_grad(torch_cross_entropy, data, cols, target, weight, ignore_index, "mean")

    leaf = data.clone().requires_grad_()
    buffer = leaf.clone()
    logits = buffer[:, cols]
    loss = ours(logits, target, weight, ignore_index, "mean", overwrite_logits=True)
    # The forward already wrote the gradient (for grad_output = 1) over the logits, and only there.
    torch.testing.assert_close(buffer.detach()[:, cols], ref_grad / 0.75, atol=1e-6, rtol=1e-5)
    outside = torch.ones(data.shape[1], dtype=torch.bool)
    outside[cols] = False
    assert torch.equal(buffer.detach()[:, outside], data[:, outside])
    loss.backward(torch.tensor(0.75))
    torch.testing.assert_close(loss.detach(), ref_loss, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(leaf.grad[:, cols], ref_grad, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_no_rows(reduction):
    data, cols, target, _, _ = make_inputs(0, 27)
    got_loss, got_grad = loss_and_grad(ours, data, cols, target, None, -100, reduction)
    ref_loss, ref_grad = loss_and_grad(torch_cross_entropy, data, cols, target, None, -100, reduction)
    torch.testing.assert_close(got_loss, ref_loss, equal_nan=True)  # "mean" of nothing is nan
    assert got_grad.shape == ref_grad.shape == (0, 27)


def test_overwrite_logits_saved_elsewhere_fails_loudly():
    """Logits some other node saved for its backward are not silently replaced by the gradient."""
    data, cols, target, _, _ = make_inputs(16, 27)
    leaf = data.clone().requires_grad_()
    logits = leaf.exp()  # exp saves its output for backward
    loss = ours(logits, target, None, -100, "mean", overwrite_logits=True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_no_grad_leaves_logits_alone():
    data, cols, target, weight, ignore_index = make_inputs(64, 27, ignore=-100, weighted=True)
    logits = data.clone()
    with torch.no_grad():
        loss = ours(logits, target, weight, ignore_index, "sum", overwrite_logits=True)
    assert torch.equal(logits, data)
    torch.testing.assert_close(loss, torch_cross_entropy(data, target, weight, ignore_index, "sum"))


def test_second_backward_is_refused():
    data, cols, target, _, _ = make_inputs(8, 27)
    logits = data.clone().requires_grad_()
    loss = ours(logits, target, None, -100, "mean")
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="once per forward"):
        loss.backward()


def test_dispatch_runs_the_kernel():
    data, cols, target, weight, ignore_index = make_inputs(40, 27, ignore=-100, weighted=True)
    got = kernels.cross_entropy(data, target, weight, ignore_index, "mean", backend="triton")
    torch.testing.assert_close(got, torch_cross_entropy(data, target, weight, ignore_index, "mean"))


@pytest.mark.parametrize("setting", [None, "0", "set after triton was imported"])
def test_dispatch_refuses_cpu_without_interpreter(monkeypatch, setting):
    if setting is None:
        monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    elif setting == "0":
        monkeypatch.setenv("TRITON_INTERPRET", setting)
    else:  # triton's own library was then built for a GPU: the interpreter cannot run it
        monkeypatch.setenv("TRITON_INTERPRET", "1")
        monkeypatch.setattr(availability, "triton_import", lambda: availability.TritonImport(True, "", False))
    data, _, target, _, _ = make_inputs(4, 27)
    assert not kernels.backend_available("triton", "cpu")[0]
    with pytest.raises(kernels.KernelUnavailableError, match="TRITON_INTERPRET"):
        kernels.cross_entropy(data, target, backend="triton")
    with pytest.raises(kernels.KernelUnavailableError):
        triton_ce.triton_cross_entropy(data, target)
    assert kernels.resolve_backend("auto", "cpu") == "torch"


def test_module_imports_without_triton(monkeypatch):
    """A copy of the module loaded where `import triton` fails still imports and says why."""
    monkeypatch.setitem(sys.modules, "triton", None)
    monkeypatch.setattr(availability, "triton_import", availability.triton_import.__wrapped__)  # not the cached answer
    spec = importlib.util.spec_from_file_location("triton_ce_without_triton", triton_ce.__file__)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    assert not module.HAS_TRITON and "triton" in module.TRITON_IMPORT_ERROR
    assert module.choose_config(10, 27, torch.float32).tiling == "rows"
    data, _, target, _, _ = make_inputs(4, 27)
    with pytest.raises(kernels.KernelUnavailableError, match="Triton does not import"):
        module.triton_cross_entropy(data, target)


@pytest.mark.cuda
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_matches_reference_compiled_on_cuda(case):
    n, v, reduction, ignore, weighted, noncontig, target_dtype = case
    data, cols, target, weight, ignore_index = make_inputs(
        n, v, ignore=ignore, weighted=weighted, noncontig=noncontig, target_dtype=target_dtype)
    check_against_reference(data, cols, target, weight, ignore_index, reduction, device=torch.device("cuda"))
    for dtype in (torch.float16, torch.bfloat16):
        check_low_precision(data.to(dtype), cols, target, weight, ignore_index, reduction,
                            device=torch.device("cuda"))


@pytest.mark.cuda
@pytest.mark.slow
@pytest.mark.parametrize("v", [27, 32768])
def test_more_than_2_31_elements_on_cuda(v):
    """Rows past element 2**31 land where they should (int64 row offsets), in both tilings."""
    n = (2**31) // v + 3
    logits = torch.randn(n, v, device="cuda", dtype=torch.bfloat16)
    target = torch.randint(0, v, (n,), device="cuda")
    tail = logits[-3:].float().clone().requires_grad_()
    ref = torch.nn.functional.cross_entropy(tail, target[-3:], reduction="none")
    ref.sum().backward()
    loss = triton_ce.triton_cross_entropy(logits.requires_grad_(), target, None, -100, "none", True)
    torch.testing.assert_close(loss[-3:].float(), ref.detach(), atol=2e-2, rtol=2e-2)
    torch.testing.assert_close(logits.detach()[-3:].float(), tail.grad, atol=2e-2, rtol=2e-2)
