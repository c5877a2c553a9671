"""The benchmark's structure (bench.csv, bench.md, bench.png), its verification, and its options.

Timings are not checked: shared CPU machines are too noisy for that. The grids here are tiny so
the file runs in seconds.
"""
import argparse
import subprocess
import sys

import pandas as pd
import pytest
import torch

from harness.bench import loss as bench
from harness.core.errors import HarnessError
from kernels import reference
from tests.conftest import REPO

BACKENDS = ["torch", "manual", "triton", "triton-inplace", "table-torch"]


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    bench.add_bench_arguments(parser)
    return parser.parse_args(list(argv))


def tiny_config(out, *extra: str) -> bench.BenchConfig:
    return bench.make_bench_config(parse(
        "--device", "cpu", "--out", str(out), "--n", "64", "--v", "27", "--dtype", "fp32",
        "--backends", "torch,manual", "--repetitions", "2", "--warmup", "1", "--copy-mib", "4", *extra))


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "quick"
    cmd = [sys.executable, "-m", "harness", "bench", "--quick", "--device", "cpu", "--out", str(out),
           "--n", "256", "--v", "27,100", "--dtype", "fp32,bf16", "--backends", ",".join(BACKENDS),
           "--repetitions", "3", "--warmup", "1", "--copy-mib", "16"]
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


def test_bench_md_structure(quick_run):
    out, done = quick_run
    md = (out / "bench.md").read_text()
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
            assert sum("**" in r for r in rows) >= 2  # a best backend per problem and pass, in bold
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


@pytest.mark.parametrize("argv, message", [
    (["--dtype", "fp8"], "--dtype"),
    (["--backends", "torch,cudnn"], "--backends"),
    (["--passes", "bwd"], "--passes"),
    (["--n", "many"], "--n"),
    (["--v", "1"], "--v"),
    (["--repetitions", "0"], "--repetitions"),
    (["--warmup", "-1"], "--warmup"),
    (["--table-contexts", "0"], "--table-contexts"),
    (["--copy-mib", "0"], "--copy-mib"),
    (["--max-seconds", "-1"], "--max-seconds"),
    (["--device", "tpu"], "--device"),
])
def test_bad_options_name_the_option(argv, message):
    with pytest.raises(HarnessError, match=message):
        bench.make_bench_config(parse("--device", "cpu", *argv) if "--device" not in argv else parse(*argv))


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA, so --device cuda is valid here")
def test_cuda_without_cuda_is_a_clear_error():
    with pytest.raises(HarnessError, match="no CUDA device"):
        bench.make_bench_config(parse("--device", "cuda"))


def test_default_grids():
    cpu = torch.device("cpu")
    assert bench.default_shapes(cpu, False, [], []) == [(2**24 // v, v) for v in (27, 729, 4096, 32768)]
    quick = bench.default_shapes(cpu, True, [], [])
    assert len(quick) <= 3 and all(n * v <= 2**18 for n, v in quick)
    assert bench.default_shapes(cpu, False, [10, 20], [27]) == [(10, 27), (20, 27)]
    config = bench.make_bench_config(parse("--device", "cpu", "--n", "2^10", "1024,2**11", "--v", "27"))
    assert config.shapes == ((1024, 27), (2048, 27))  # 2^10 and 1024 are one N
    assert config.backends == tuple(bench.VARIANTS) and config.repetitions >= 20


def test_shapes_beyond_the_memory_budget_are_skipped_with_the_reason(tmp_path):
    config = tiny_config(tmp_path, "--max-logits-mib", "0.001")
    rows, _ = bench.run_bench(config, log=lambda line: None)
    skipped = [r for r in rows if r["backend"] == "*"]
    assert len(skipped) == 1 and "exceed the budget" in skipped[0]["note"]


def test_cli_turns_a_bad_option_into_exit_status_2(capsys):
    from harness.cli import main

    assert main(["bench", "--device", "cpu", "--dtype", "fp8"]) == 2
    assert "--dtype" in capsys.readouterr().err


def test_triton_variants_verify_under_the_interpreter(tmp_path, monkeypatch):
    """The bench's Triton path (in place and not, and the table kernel) on CPU through the interpreter."""
    from kernels.triton_ce import interpreter_active

    if not interpreter_active():
        pytest.skip("needs TRITON_INTERPRET=1 before triton imports (conftest sets it where CUDA is missing)")
    monkeypatch.setattr(bench, "variant_unavailable", lambda name, device: "")
    config = bench.make_bench_config(parse(
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


NAMES = ["emma", "olivia", "ava", "isabella", "sophia", "mia", "amelia", "harper", "evelyn", "abigail",
         "liam", "noah", "oliver", "elijah", "james", "william", "benjamin", "lucas", "henry", "theodore"]


def needs_train_api():
    from harness.train.fit import GradientSettings

    if "input" not in GradientSettings.__dataclass_fields__:
        pytest.skip("harness.train.fit.GradientSettings has no input paths (table/index/onehot/counts) in this tree")


def train_config(tmp_path, *extra: str) -> bench.BenchConfig:
    needs_train_api()
    corpus = tmp_path / "names.txt"
    corpus.write_text("\n".join(NAMES * 3) + "\n")
    return bench.make_bench_config(parse(
        "--device", "cpu", "--out", str(tmp_path / "out"), "--suite", "train", "--corpus", str(corpus),
        "--orders", "2,3", "--backends", "torch,manual,triton", "--train-steps", "3", "--train-repeats", "1", *extra))


def test_training_bench_rows_and_report(tmp_path):
    from harness.cli import main

    config = train_config(tmp_path)
    rows = bench.run_train_bench(config, log=lambda line: None)
    by = {(r["variant"], r["order"]): r for r in rows}
    for order in (2, 3):
        assert by[("index-torch", order)]["speedup_vs_eager"] == 1.0
        counts = by[("counts", order)]
        assert counts["status"] == "ok" and counts["verified"] == "yes" and counts["grad_err"] < 1e-6
        assert by[("index-manual", order)]["status"] == "ok"
        assert "needs CUDA" in by[("index-triton", order)]["note"]
        assert abs(counts["last_loss"] - by[("index-torch", order)]["last_loss"]) < 1e-4
    assert ("index-compiled", 2) not in by  # --backends leaves the compiled backend out
    argv = ["bench", "--device", "cpu", "--out", str(tmp_path / "cli"), "--suite", "train", "--corpus",
            str(tmp_path / "names.txt"), "--orders", "2", "--backends", "torch", "--train-steps", "2", "--train-repeats", "1"]
    assert main(argv) == 0
    df = pd.read_csv(tmp_path / "cli" / "train.csv", keep_default_na=False, na_values=[""])
    assert list(df.columns) == bench.TRAIN_CSV_COLUMNS and set(df.variant) == {"index-torch", "onehot-torch", "counts"}
    md = (tmp_path / "cli" / "bench.md").read_text()
    assert "## Environment" in md and "## Training" in md and "### order 2" in md and "**" in md


def test_a_wrong_backend_fails_the_training_check(tmp_path, monkeypatch):
    original = reference.manual_cross_entropy
    monkeypatch.setattr(reference, "manual_cross_entropy", lambda *a, **k: original(*a, **k) * 1.1)
    with pytest.raises(HarnessError, match="index-manual .*leaves the baseline's losses"):
        bench.run_train_bench(train_config(tmp_path), log=lambda line: None)


def test_suite_defaults_and_validation():
    assert bench.make_bench_config(parse("--device", "cpu")).suites == ("loss", "train")
    assert bench.make_bench_config(parse("--device", "cpu", "--quick")).suites == ("loss",)
    for argv, option in ((["--suite", "speed"], "--suite"), (["--orders", "1"], "--orders"),
                         (["--train-steps", "0"], "--train-steps"), (["--train-repeats", "0"], "--train-repeats")):
        with pytest.raises(HarnessError, match=option):
            bench.make_bench_config(parse("--device", "cpu", *argv))
