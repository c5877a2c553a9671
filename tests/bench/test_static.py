"""kernels.static: the kernels compile for sm_80 and sm_90 here, without a GPU, and move memory as intended.

The full bench grid (hundreds of distinct compiles) is `python -m harness bench --static`, whose
reports are committed under reports/static-*; this file compiles a covering subset (every
kernel, tiling and small-V layout, fp32 and bf16, fp16 once, weights, forward only and in
place) for sm_90, the H200's architecture, and one bf16 launch of every kernel for sm_80: both
archs go through the same `compile_facts` (only the target's compute capability differs), so
the second needs no second copy of the subset (16 compiles fewer, a third of the file's time).
"""
import os
import subprocess
import sys

import pandas as pd
import pytest
import torch

from tests.conftest import REPO
from kernels import triton_ce

pytestmark = pytest.mark.skipif(not triton_ce.HAS_TRITON,
                                reason=f"Triton does not import here: {triton_ce.TRITON_IMPORT_ERROR}")

ARCHS = ["sm_80", "sm_90"]
FULL_ARCH, COVER_ARCH = "sm_90", "sm_80"  # the subset for the first, cover() for the second
N = 4096


def subset():
    from kernels import static

    launches = []
    for v in (27, 729, 4096, 131072):
        for dtype in ("fp32", "bf16"):
            launches += static._ce_launches(N, v, dtype, "grad new", weights=True)
            if triton_ce.flat_applies(N, v, static.DTYPES[dtype]):
                other = "flat" if triton_ce.SMALL_V_TILING == "rows" else "rows"
                launches += static._ce_launches(N, v, dtype, "grad new", weights=True, tiling=other)
    # In place specialises exactly as a new buffer (Triton does not see aliasing): no extra compile.
    launches += static._ce_launches(N, 4096, "fp32", "grad in place", weights=True)
    launches += static._ce_launches(N, 131072, "fp16", "forward only", weights=False)
    for v, dtype in ((27, "fp32"), (4096, "fp32"), (4096, "bf16")):
        launches += [x for x in static._table_launches(N, v, 729, dtype)
                     if x.mode in ("forward", "forward + counts", "backward", "backward (over the counts)")
                     and (x.weights or x.mode != "forward + counts")]
    return launches


def cover():
    """One launch of every kernel, bf16 where the 128-bit claims are made (V = 4096 rows and tables, the loop
    at 131072, flat at 27): what the second arch compiles."""
    launches = [x for x in subset() if x.dtype == "bf16" and x.mode != "grad in place"
                and (x.V in (4096, 131072) or (x.V == 27 and x.kernel_name == "_ce_flat_kernel"))]
    assert sorted(x.kernel_name for x in launches) == sorted(set(x.kernel_name for x in subset()))
    return launches


COMPILE_SUBSET = """
import sys
import pandas as pd
from kernels import static
from tests.bench.test_static import COVER_ARCH, FULL_ARCH, cover, subset
rows = static.static_rows([COVER_ARCH], cover(), log=lambda line: None)
rows += static.static_rows([FULL_ARCH], subset(), log=lambda line: None)
pd.DataFrame(rows).to_pickle(sys.argv[1])
"""


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    """The subset compiled in a child process: this one imported triton for the interpreter
    (tests/conftest.py), whose language library cannot build GPU code."""
    out = tmp_path_factory.mktemp("static") / "rows.pkl"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    root = str(REPO)
    done = subprocess.run([sys.executable, "-c", COMPILE_SUBSET, str(out)], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return pd.read_pickle(out)


def test_every_kernel_and_layout_compiles_for_both_archs(rows):
    for arch in ARCHS:
        built = rows[rows["arch"] == arch]
        assert set(built["kernel"]) == {"_ce_rows_kernel", "_ce_flat_kernel", "_ce_loop_kernel",
                                        "_table_logsumexp_kernel", "_table_rows_kernel", "_table_grad_kernel"}
        assert (built["registers"] > 0).all()
        assert (built["warps_per_sm"] > 0).all(), built[built["warps_per_sm"] == 0]


def test_nothing_spills(rows):
    spilled = rows[(rows["spilled_bytes"] > 0) | (rows["spill_instructions"] > 0)]
    assert spilled.empty, spilled[["arch", "kernel", "V", "dtype", "registers", "spilled_bytes"]]


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_large_v_moves_128_bits_when_the_row_stride_is_a_multiple_of_16(rows, dtype):
    large = rows[(rows["problem"] == "cross_entropy") & rows["V"].isin([4096, 131072]) & (rows["dtype"] == dtype)]
    assert set(large["tiling"]) == {"rows", "loop"}
    assert (large["logits_load_bits"] == 128).all() and (large["grad_store_bits"] == 128).all()
    table = rows[(rows["problem"] == "table_cross_entropy") & (rows["V"] == 4096) & (rows["dtype"] == dtype)
                 & (rows["kernel"] != "_table_rows_kernel")]  # the row kernel gathers x[c, y]: scalar by nature
    assert (table["logits_load_bits"] == 128).all()
    assert (table.loc[table["kernel"] == "_table_grad_kernel", "grad_store_bits"] == 128).all()


def test_small_v_rows_are_scalar_and_flat_is_128_bits(rows):
    """The premise of the flat layout, and that it delivers: row stride 27 or 729 cannot be proven aligned."""
    small = rows[(rows["problem"] == "cross_entropy") & rows["V"].isin([27, 729])]
    element_bits = small["dtype"].map({"fp32": 32, "bf16": 16, "fp16": 16})
    on_rows = small["tiling"] == "rows"
    assert (small.loc[on_rows, "logits_load_bits"] == element_bits[on_rows]).all()
    assert (small.loc[~on_rows, "logits_load_bits"] == 128).all()
    assert (small.loc[~on_rows & small["mode"].str.startswith("grad"), "grad_store_bits"] == 128).all()
    assert set(small.loc[small["chosen"], "tiling"]) == {triton_ce.SMALL_V_TILING}


def test_forward_only_writes_no_gradient(rows):
    forward = rows[(rows["problem"] == "cross_entropy") & (rows["mode"] == "forward only")]
    assert len(forward) and (forward["grad_store_bits"] == 0).all()


def test_occupancy_arithmetic():
    from kernels.static import ARCH_LIMITS, occupancy

    sm90, sm80 = ARCH_LIMITS["sm_90"], ARCH_LIMITS["sm_80"]
    assert occupancy(sm90, 32, 1024, 8) == (64, "registers")  # 32 regs: the whole SM (ties: registers first)
    assert occupancy(sm90, 80, 1536, 8)[0] == 24  # 2560 regs/warp: 25 warps -> 24 -> 3 blocks of 8
    assert occupancy(sm90, 128, 1024, 8)[0] == 16
    assert occupancy(sm80, 40, 100 * 1024, 4) == (4, "shared memory")  # one 100 KB block per 164 KB SM
    assert occupancy(sm80, 32, 1024, 64) == (0, "threads per block")


def test_access_widths_from_sass_opcodes():
    from kernels.static import access_width_bits

    assert [access_width_bits(op) for op in ("LDG.E.128", "LDG.E.64", "LDG.E", "LDG.E.U16", "STG.E.128.STRONG.GPU",
                                            "LDG.E.EF.U8")] == [128, 64, 32, 16, 128, 8]


def test_report_renders_from_the_csv(rows, tmp_path):
    from harness.bench.static_markdown import render_static

    table = rows.drop(columns=["compile_key"]).assign(machine="test", python="3", torch=torch.__version__,
                                                      triton="x", git_commit="abc", timestamp="now")
    table.to_csv(tmp_path / "static.csv", index=False)
    text = render_static(tmp_path / "static.csv", ARCHS, 729, 1)
    assert "No kernel ran and nothing here is a GPU time" in text
    assert f"The launcher picks **{triton_ce.SMALL_V_TILING}**" in text
    for arch in ARCHS:
        assert f"## `_ce_loop_kernel` on {arch}" in text and f"| {arch} | 65536 |" in text


def test_bench_static_flag_rejects_an_unknown_arch(capsys):
    from harness.cli import main

    assert main(["bench", "--static", "--arch", "sm_99"]) == 2
    assert "sm_99" in capsys.readouterr().err
