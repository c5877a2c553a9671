"""The loss suite: the structure of bench.csv, bench.md and bench.png, and its verification.

Timings are not checked: shared CPU machines are too noisy for that. The grids here are tiny so
the file runs in seconds.
"""
import subprocess
import sys

import pandas as pd
import pytest

from harness.bench import loss as bench
from harness.bench.config import BenchConfig, make_bench_config
from harness.core.errors import HarnessError
from kernels import reference
from tests.bench.helpers import parse
from tests.conftest import REPO

BACKENDS = ["torch", "manual", "triton", "triton-inplace", "table-torch"]


def tiny_config(out, *extra: str) -> BenchConfig:
    return make_bench_config(parse(
        "--device", "cpu", "--out", str(out), "--n", "64", "--v", "27", "--dtype", "fp32",
        "--backends", "torch,manual", "--repetitions", "2", "--warmup", "1", "--copy-mib", "4", *extra))


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "quick"
    cmd = [sys.executable, "-m", "harness", "bench", "--quick", "--device", "cpu", "--out", str(out),
           "--n", "256", "--v", "27,100", "--dtype", "fp32,bf16", "--backends", ",".join(BACKENDS),
           "--passes", "fwd,fwd+bwd", "--repetitions", "3", "--warmup", "1", "--copy-mib", "16"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return out, done


def test_quick_bench_writes_the_three_files(quick_run):
    out, _ = quick_run
    assert {p.name for p in out.iterdir()} >= {"bench.csv", "bench.md", "bench.png"}
    assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_csv_is_long_format_with_one_row_per_measurement(quick_run):
    out, _ = quick_run
    df = pd.read_csv(out / "bench.csv", keep_default_na=False, na_values=[""])
    assert list(df.columns) == bench.CSV_COLUMNS
    copy = df[df.backend == "copy"]
    assert len(copy) == 1 and copy.gbps.iloc[0] > 0
    runs = df[df.backend != "copy"]
    # every backend x dtype x V x pass exactly once
    counts = runs.groupby(["backend", "dtype", "V", "pass"]).size()
    assert len(counts) == len(BACKENDS) * 2 * 2 * 2 and (counts == 1).all()
    for column in ("device_name", "torch", "triton", "git_commit", "timestamp"):
        assert runs[column].notna().all() and (runs[column] != "").all(), column


def test_triton_rows_are_listed_as_needing_cuda_on_cpu(quick_run):
    out, _ = quick_run
    df = pd.read_csv(out / "bench.csv", keep_default_na=False, na_values=[""])
    triton = df[df.backend.isin(["triton", "triton-inplace"])]
    assert len(triton) == 2 * 2 * 2 * 2  # two variants x dtypes x Vs x passes
    assert (triton.status == "skipped").all() and triton.note.str.contains("needs CUDA").all()
    assert triton.median_ms.isna().all()


def test_measured_rows_were_verified_and_timed(quick_run):
    out, _ = quick_run
    df = pd.read_csv(out / "bench.csv", keep_default_na=False, na_values=[""])
    ok = df[df.backend.isin(["torch", "manual", "table-torch"])]
    assert len(ok) == 3 * 2 * 2 * 2
    assert (ok.status == "ok").all() and (ok.verified == "yes").all()
    assert (ok.median_ms > 0).all() and (ok.p20_ms <= ok.median_ms).all() and (ok.median_ms <= ok.p80_ms).all()
    assert (ok.gbps > 0).all() and ok.frac_of_copy.notna().all() and (ok.reps >= 3).all()
    assert ok.loss_err.notna().all()
    assert ok[ok["pass"] == "fwd+bwd"].grad_err.notna().all()
    baselines = ok[ok.backend.isin(["torch", "table-torch"])]
    assert (baselines.speedup_vs_eager == 1.0).all()
    # forward+backward moves the gradient too
    fwd = ok[(ok.backend == "torch") & (ok["pass"] == "fwd")].set_index(["dtype", "V"]).bytes
    both = ok[(ok.backend == "torch") & (ok["pass"] == "fwd+bwd")].set_index(["dtype", "V"]).bytes
    assert (both > fwd).all()


def test_every_row_records_threads_load_and_spread(quick_run):
    out, _ = quick_run
    df = pd.read_csv(out / "bench.csv", keep_default_na=False, na_values=[""])
    assert (df.threads >= 1).all() and (df.threads <= df.cores).all() and df.threads.nunique() == 1
    for column in ("load_avg_start", "load_avg_end"):
        assert df[column].str.fullmatch(r"\d+\.\d\d \d+\.\d\d \d+\.\d\d").all(), column
    ok = df[(df.status == "ok") & (df.backend != "copy")]
    assert ok.spread.sub(ok.p80_ms / ok.p20_ms).abs().max() < 1e-9
    assert (ok.wide_spread == (ok.spread > 1.5)).all()
    md = (out / "bench.md").read_text()
    assert f"{int(df.threads.iloc[0])} torch CPU thread(s) of {int(df.cores.iloc[0])} cores" in md
    assert f"before: {df.load_avg_start.iloc[0]}, after: {df.load_avg_end.iloc[0]}" in md
    assert "| p80/p20" in md and "## What GB/s counts" in md


@pytest.mark.parametrize("pass_", ["fwd", "fwd+bwd"])
def test_bytes_moved_counts_what_each_problem_reads_and_writes(pass_):
    n, v, c = 1000, 27, 729
    both = pass_ == "fwd+bwd"
    for elem in (4, 2):
        # logits: read N x V and N int64 targets, write a 4-byte loss (and the N x V gradient)
        assert bench.bytes_moved("logits", pass_, n, v, c, elem) == n * v * elem * (2 if both else 1) + 8 * n + 4
        # table: read C x V and N int64 context ids and N targets, write the loss (and the C x V gradient);
        # no N x V term, whatever N is
        assert bench.bytes_moved("table", pass_, n, v, c, elem) == c * v * elem * (2 if both else 1) + 16 * n + 4
    assert (bench.bytes_moved("table", pass_, 10 * n, v, c, 4) - bench.bytes_moved("table", pass_, n, v, c, 4)
            == 16 * 9 * n)


def test_table_rows_in_the_csv_use_the_table_bytes(quick_run):
    out, _ = quick_run
    df = pd.read_csv(out / "bench.csv", keep_default_na=False, na_values=[""])
    table = df[(df.backend == "table-torch") & (df["pass"] == "fwd+bwd")]
    elem = table.dtype.map({"fp32": 4, "bf16": 2})
    assert (table.bytes == 2 * table.C * table.V * elem + 16 * table.N + 4).all()
    assert (table.gbps == table.bytes / (table.median_ms * 1e-3) / 1e9).all()


def test_wide_rows_are_marked_and_not_bolded_and_a_busy_machine_is_named(quick_run, tmp_path):
    """Re-render a copy of bench.csv with one row made wide and fastest, and the load made heavy."""
    from harness.bench.markdown import render_bench

    out, _ = quick_run
    df = pd.read_csv(out / "bench.csv", keep_default_na=False, na_values=[""])
    df.loc[(df.status == "ok") & (df.backend != "copy"), ["spread", "wide_spread"]] = [1.2, False]
    ok = (df.status == "ok") & (df.dtype == "fp32") & (df.V == 27) & (df["pass"] == "fwd")
    df.loc[ok, ["p20_ms", "median_ms", "p80_ms", "spread", "wide_spread"]] = [1.0, 1.1, 1.2, 1.2, False]
    victim = df.index[ok & (df.backend == "manual")][0]
    df.loc[victim, ["p20_ms", "median_ms", "p80_ms", "spread", "wide_spread"]] = [0.1, 0.2, 0.5, 5.0, True]
    df[["threads", "cores", "load_avg_start", "load_avg_end"]] = [1, 2, "3.50 3.00 2.00", "4.20 3.10 2.00"]
    (tmp_path / "bench.csv").write_text(df.to_csv(index=False))
    md = render_bench(tmp_path)
    table = md.split("### fp32, V = 27", 1)[1].split("\n\n")[1].splitlines()
    manual = [r for r in table if r.startswith("| manual") and "| fwd " in r][0]
    assert "5.00 *wide*" in manual and "**" not in manual  # the fastest median, but too spread to be bolded
    assert any(r.startswith("| **torch**") and "| fwd " in r for r in table)  # the next one is
    assert "**Warning (loss suite):** other work competed for the cores: a load of 3.50" in md
    assert "1 of 24 timed loss rows have a p80/p20 spread above 1.5" in md


def test_bench_md_structure(quick_run):
    out, done = quick_run
    md = (out / "bench.md").read_text()
    df = pd.read_csv(out / "bench.csv", keep_default_na=False, na_values=[""])
    assert "## Environment" in md and "copy bandwidth measured in this run" in md
    assert "torch 2" in md and "triton" in md and "git commit" in md
    assert "Verification: before timing, each of the 24 measured rows" in md and "(24 passed" in md
    assert "## Headline" in md
    for dtype in ("fp32", "bf16"):
        for v in (27, 100):
            heading = f"### {dtype}, V = {v}"
            assert heading in md
            table = md.split(heading, 1)[1].split("\n\n")[1].splitlines()
            assert table[0].startswith("| backend") and "GB/s" in table[0] and "× eager" in table[0]
            rows = table[2:]
            assert len(rows) == len(BACKENDS) * 2
            # a best backend per problem and pass, in bold, among the rows whose spread is not wide
            ok = df[(df.dtype == dtype) & (df.V == v) & (df.status == "ok") & (df.wide_spread.astype(str) != "True")]
            assert sum("**" in r for r in rows) == ok.groupby(["problem", "pass"]).ngroups
            assert all("needs CUDA" in r for r in rows if r.startswith("| triton"))
    assert "report:" in done.stdout


def test_a_wrong_loss_fails_verification(tmp_path, monkeypatch):
    original = reference.manual_cross_entropy
    monkeypatch.setattr(reference, "manual_cross_entropy", lambda *a, **k: original(*a, **k) * 1.01)
    with pytest.raises(HarnessError, match=r"manual fwd fp32 N=64 V=27 disagrees with eager F.cross_entropy: loss"):
        bench.run_bench(tiny_config(tmp_path), log=lambda line: None)


def test_a_wrong_gradient_fails_verification(tmp_path, monkeypatch):
    original = reference.manual_cross_entropy

    def right_loss_wrong_gradient(logits, *a, **k):
        shift = (logits.float() * 1e-3).sum()
        return original(logits, *a, **k) + shift - shift.detach()  # same value, gradient off by 1e-3

    monkeypatch.setattr(reference, "manual_cross_entropy", right_loss_wrong_gradient)
    with pytest.raises(HarnessError, match=r"manual fwd\+bwd fp32 N=64 V=27 .*gradient off"):
        bench.run_bench(tiny_config(tmp_path), log=lambda line: None)


def test_keep_going_records_the_failure_and_goes_on(tmp_path, monkeypatch):
    original = reference.manual_cross_entropy
    monkeypatch.setattr(reference, "manual_cross_entropy", lambda *a, **k: original(*a, **k) * 1.01)
    rows, env = bench.run_bench(tiny_config(tmp_path, "--keep-going"), log=lambda line: None)
    status = {(r["backend"], r["pass"]): r["status"] for r in rows if r["backend"] != "copy"}
    assert status == {("torch", "fwd"): "ok", ("torch", "fwd+bwd"): "ok",
                      ("manual", "fwd"): "failed", ("manual", "fwd+bwd"): "failed"}
    assert len(env["failures"]) == 2


def test_shapes_beyond_the_memory_budget_are_skipped_with_the_reason(tmp_path):
    config = tiny_config(tmp_path, "--max-logits-mib", "0.001")
    rows, _ = bench.run_bench(config, log=lambda line: None)
    skipped = [r for r in rows if r["backend"] == "*"]
    assert len(skipped) == 1 and "exceed the budget" in skipped[0]["note"]


def test_triton_variants_verify_under_the_interpreter(tmp_path, monkeypatch):
    """The bench's Triton path (in place and not, and the table kernel) on CPU through the interpreter."""
    from kernels.triton_ce import interpreter_active

    if not interpreter_active():
        pytest.skip("needs TRITON_INTERPRET=1 before triton imports (conftest sets it where CUDA is missing)")
    monkeypatch.setattr(bench, "variant_unavailable", lambda name, device: "")
    config = make_bench_config(parse(
        "--device", "cpu", "--out", str(tmp_path), "--n", "64", "--v", "27", "--dtype", "fp32,bf16",
        "--backends", "torch,triton,triton-inplace,table-torch,table-triton", "--repetitions", "2", "--warmup", "1",
        "--copy-mib", "4", "--table-contexts", "27"))
    rows, env = bench.run_bench(config, log=lambda line: None)
    status = {(r["backend"], r["pass"], r["dtype"]): r["status"] for r in rows if r["backend"] != "copy"}
    for dtype in ("fp32", "bf16"):
        assert status[("triton", "fwd", dtype)] == status[("triton", "fwd+bwd", dtype)] == "ok"
        assert status[("triton-inplace", "fwd+bwd", dtype)] == "ok"
        assert status[("triton-inplace", "fwd", dtype)] == "skipped"
        assert status[("table-triton", "fwd+bwd", dtype)] == "ok"
    assert not env["failures"]


@pytest.mark.cuda
def test_quick_bench_on_cuda(tmp_path):
    """On a GPU machine: every backend is verified and timed, none listed as needing CUDA."""
    from harness.cli import main

    out = tmp_path / "cuda"
    assert main(["bench", "--quick", "--device", "cuda", "--out", str(out), "--n", "4096", "--v", "27,4096",
                 "--dtype", "fp32,bf16", "--backends", "torch,triton,triton-inplace,table-torch,table-triton",
                 "--repetitions", "20", "--copy-mib", "256"]) == 0
    df = pd.read_csv(out / "bench.csv", keep_default_na=False, na_values=[""])
    measured = df[(df.backend != "copy") & ~((df.backend == "triton-inplace") & (df["pass"] == "fwd"))]
    assert (measured.status == "ok").all(), measured[measured.status != "ok"][["backend", "pass", "note"]]
    assert (measured.verified == "yes").all() and (measured.peak_extra_mib >= 0).all()
    assert "needs CUDA" not in (out / "bench.md").read_text()
