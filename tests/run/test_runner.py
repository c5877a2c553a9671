"""A run as a whole: nothing lost on interruption, resumable, reproducible, reports rebuilt from JSON."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from harness.cli import main
from harness.run.runner import grid_hash
from tests.conftest import REPO

# --no-figures: most tests check numbers and files, not pictures, and the PNGs were most of their time
SMALL = ["--corpus", "ssa:1900", "--samples", "5", "--quiet", "--no-figures"]
DRAWN = SMALL[:-1]  # the same with the figures, for the tests that look at them


def run_cli(*args):
    return main(list(args))


def records(out):
    return json.loads((out / "results.json").read_text())["results"]


def test_sigint_keeps_finished_configurations_and_resume_finishes(tmp_path):
    out = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("TRITON_INTERPRET", None)
    # a count model finishes at once; the gradient model after it takes many seconds
    proc = subprocess.Popen([sys.executable, "-m", "harness", "run", *SMALL, "--orders", "2", "--methods", "count,gradient",
                             "--steps", "100000", "--out", str(out)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            # a shell without job control starts background jobs (`pytest &`) with SIGINT ignored, and a
                            # child inherits that: Python then installs no KeyboardInterrupt handler and the signal is lost
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while time.time() < deadline:
        if (out / "results.json").exists() and len(records(out)) >= 1:
            break
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("the first configuration never reached results.json")
    time.sleep(1.0)  # well inside the gradient configuration
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "--resume" in stderr
    saved = records(out)
    assert [r["status"] for r in saved] == ["ok", "interrupted"]
    first = saved[0]
    # --resume repeats the grid saved in results.json; shorten the interrupted gradient configuration there so the
    # test does not wait for 100,000 steps (the kept count configuration must stay untouched either way)
    data = json.loads((out / "results.json").read_text())
    data["run"]["config"]["steps"] = 5
    (out / "results.json").write_text(json.dumps(data))
    assert run_cli("run", "--resume", str(out), "--quiet", "--no-figures") == 2  # an edited grid is refused: kept results would not be its
    data["run"]["hashes"]["grid"] = grid_hash(data["run"]["config"])  # the edit made on purpose, as a test may
    (out / "results.json").write_text(json.dumps(data))
    assert run_cli("run", "--resume", str(out), "--quiet", "--no-figures") == 0
    done = records(out)
    assert [r["status"] for r in done] == ["ok", "ok"]
    assert done[0] == first  # kept, not redone (same fit_seconds too)
    assert len(done[1]["train_losses"]) == 5


DRAWN_GRID = ["--orders", "2,3", "--methods", "count,gradient", "--steps", "3", "--reg", "0.01,0.1"]


@pytest.fixture(scope="module")
def drawn_run(tmp_path_factory):
    """A run that drew its five figures, and what it wrote (file name -> bytes), kept before any test touches it."""
    out = tmp_path_factory.mktemp("drawn") / "run"
    assert run_cli("run", *DRAWN, *DRAWN_GRID, "--out", str(out)) == 0
    return out, {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}


def test_report_rebuilds_report_md_byte_for_byte(drawn_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(drawn_run[0], out)
    before = (out / "report.md").read_bytes()
    csv_before = (out / "results.csv").read_bytes()
    for png in ("bigram_counts.png", "tuning_k.png", "tuning_reg.png", "loss_curves.png", "nll_by_order.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        (out / png).unlink()
    (out / "report.md").unlink()
    assert run_cli("report", str(out)) == 0
    assert (out / "report.md").read_bytes() == before
    assert (out / "results.csv").read_bytes() == csv_before
    assert (out / "tuning_reg.png").exists() and (out / "bigram_counts.png").exists()


def test_no_figures_leaves_the_pngs_to_report(drawn_run, tmp_path):
    """--no-figures draws nothing and says so in report.md; `report` then draws the very PNGs (byte for byte) and
    links that a run drawing its figures has. Oracle: the same grid run with its figures."""
    drawn, wrote = drawn_run
    skipped = tmp_path / "skipped"
    assert run_cli("run", *SMALL, *DRAWN_GRID, "--out", str(skipped)) == 0
    pngs = sorted(name for name in wrote if name.endswith(".png"))
    assert len(pngs) == 5 and not list(skipped.glob("*.png"))
    same = ("key", "train_nll", "dev_nll", "test_nll", "train_losses", "samples")
    assert [[r.get(k) for k in same] for r in records(skipped)] == [[r.get(k) for k in same] for r in records(drawn)]
    links = lambda text: sorted(line for line in text.splitlines() if ".png" in line)  # noqa: E731
    text = (skipped / "report.md").read_text()
    assert links(text) == [] and "--no-figures" in text and "python -m harness report" in text
    assert json.loads((skipped / "results.json").read_text())["run"]["figures_skipped"] is True
    assert run_cli("report", str(skipped)) == 0
    assert sorted(p.name for p in skipped.glob("*.png")) == pngs
    for name in pngs:
        assert (skipped / name).read_bytes() == wrote[name], name
    assert links((skipped / "report.md").read_text()) == links(wrote["report.md"].decode())
    assert "figures_skipped" not in json.loads((skipped / "results.json").read_text())["run"]


def test_same_seed_same_results(tmp_path):
    outs = [tmp_path / "a", tmp_path / "b"]
    for out in outs:
        assert run_cli("run", *SMALL, "--orders", "2", "--methods", "count,gradient", "--steps", "5",
                       "--batch-size", "64", "--out", str(out)) == 0
    a, b = records(outs[0]), records(outs[1])
    for x, y in zip(a, b):
        for key in ("train_nll", "dev_nll", "test_nll", "samples", "smoothing"):
            assert x[key] == y[key]
    assert a[1]["train_losses"] == b[1]["train_losses"]


def test_a_failing_configuration_is_recorded_and_the_rest_run(tmp_path):
    out = tmp_path / "run"
    # lr 1e9 makes the gradient model diverge; the count models around it must still finish, and the
    # exit status (1) tells a batch driver that something failed
    assert run_cli("run", *SMALL, "--orders", "2,3", "--methods", "gradient,count", "--steps", "20", "--lr", "1e9",
                   "--out", str(out)) == 1
    saved = records(out)
    assert [(r["method"], r["status"]) for r in saved] == [("gradient", "failed"), ("count", "ok"), ("gradient", "failed"), ("count", "ok")]
    assert "diverged" in saved[0]["error"]
    assert "failed" in (out / "report.md").read_text()


def test_grid_file_round_trip(tmp_path):
    grid = tmp_path / "grid.toml"
    grid.write_text('corpus = "ssa:1900"\norders = [2]\nsmoothing = ["auto", "1.0"]\nsamples = 3\n')
    out = tmp_path / "run"
    assert run_cli("run", "--config", str(grid), "--quiet", "--no-figures", "--out", str(out)) == 0
    first = records(out)
    assert [r["smoothing_spec"] for r in first] == ["auto", "1.0"]
    again = tmp_path / "again"
    assert run_cli("run", "--config", str(out / "grid.toml"), "--quiet", "--no-figures", "--out", str(again)) == 0
    assert [r["dev_nll"] for r in records(again)] == [r["dev_nll"] for r in first]


@pytest.mark.parametrize("text, fragment", [
    ("ordrs = [2]\n", "unknown configuration key 'ordrs'"),
    ("orders = [0]\n", "order 0"),
    ("steps = -3\n", "steps (--steps)"),
    ("losses = ['gpu']\n", "losses (--loss)"),
    ("additive = 'yes'\n", "additive"),
    ("orders = [2\n", "not valid TOML"),
])
def test_bad_grid_files(tmp_path, capsys, text, fragment):
    grid = tmp_path / "grid.toml"
    grid.write_text(text)
    assert run_cli("run", "--config", str(grid), "--out", str(tmp_path / "x")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0]


def test_resume_keeps_configurations_that_come_after_the_last_rerun(tmp_path):
    out = tmp_path / "run"
    assert run_cli("run", *SMALL, "--orders", "2,3", "--smoothing", "auto,1", "--out", str(out)) == 0
    first = records(out)
    # resuming a finished run changes nothing
    assert run_cli("run", "--resume", str(out), "--quiet", "--no-figures") == 0
    assert records(out) == first
    # a failed first configuration is redone; the three after it are kept
    data = json.loads((out / "results.json").read_text())
    data["results"][0]["status"] = "failed"
    (out / "results.json").write_text(json.dumps(data))
    assert run_cli("run", "--resume", str(out), "--quiet", "--no-figures") == 0
    again = records(out)
    assert len(again) == 4 and again[1:] == first[1:]
    assert again[0]["dev_nll"] == first[0]["dev_nll"]


def test_gradient_without_a_dev_split_compares_with_the_lectures_k(names_path, tmp_path):
    out = tmp_path / "run"
    assert run_cli("run", "--corpus", str(names_path), "--split", "none", "--orders", "2", "--methods", "gradient",
                   "--steps", "3", "--samples", "0", "--quiet", "--no-figures", "--out", str(out)) == 0
    (r,) = records(out)
    assert r["status"] == "ok" and r["count_k"] == 1.0
    assert r["train_losses"][0] == pytest.approx(3.768619, abs=2e-6)


@pytest.mark.parametrize("input_path", ["table", "index", "onehot"])
def test_gradient_losses_are_bit_identical_whatever_the_thread_count(names_path, input_path):
    """Issue 16 item 5. Measured without the fix on names.txt: with two threads two fits of the same seed
    differ from step 1 on (table, index: the backward of W[context]); one and two threads differ (onehot:
    the matmul's blocking). Oracle: a fit on one thread."""
    import torch

    from harness.data.corpus import load_corpus
    from harness.data.ngrams import windows_for
    from harness.train.fit import GradientSettings, fit_gradient

    windows = windows_for(load_corpus(str(names_path), torch.device("cpu")), 2, 2**30)
    settings = GradientSettings(steps=4, input=input_path)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        oracle = fit_gradient(windows, settings, "cpu")
        torch.set_num_threads(2)
        fits = [fit_gradient(windows, settings, "cpu") for _ in range(2)]
        assert torch.get_num_threads() == 2  # the training loop's one thread is given back
    finally:
        torch.set_num_threads(before)
    for fit in fits:
        assert fit.losses == oracle.losses
        assert torch.equal(fit.model.tables[0], oracle.model.tables[0])


def test_a_run_gives_the_same_bits_with_one_and_two_threads(names_path, tmp_path):
    outs = {t: tmp_path / f"threads-{t}" for t in ("1", "2")}
    for threads, out in outs.items():
        assert run_cli("run", "--corpus", str(names_path), "--orders", "2", "--methods", "count,gradient", "--input", "index",
                       "--steps", "4", "--samples", "10", "--quiet", "--no-figures", "--threads", threads, "--out", str(out)) == 0
    one, two = records(outs["1"]), records(outs["2"])
    keys = ("train_nll", "dev_nll", "test_nll", "samples", "smoothing", "train_losses", "nll_vs_count", "max_prob_diff")
    assert [{k: r.get(k) for k in keys} for r in one] == [{k: r.get(k) for k in keys} for r in two]


def test_loss_curves_draw_the_count_reference_without_a_count_configuration(tmp_path):
    """issue 18: the training-loss figure's count level is there when only gradient models ran, and it is the
    train NLL of the add-k model a count run of the same k gives."""
    from harness.run.report import figure_specs

    grad, count = tmp_path / "grad", tmp_path / "count"
    assert run_cli("run", *DRAWN, "--orders", "2", "--methods", "gradient", "--smoothing", "0.5", "--steps", "5",
                   "--out", str(grad)) == 0
    assert run_cli("run", *SMALL, "--orders", "2", "--methods", "count", "--smoothing", "0.5", "--out", str(count)) == 0
    (g,), (c,) = records(grad), records(count)
    assert g["count_train_nll"] == pytest.approx(c["train_nll"], abs=1e-12)
    reference = figure_specs(json.loads((grad / "results.json").read_text()))["loss_curves.png"][2]["reference"]
    assert reference == {"count order 2 (k=0.5) train NLL": g["count_train_nll"]}
    assert (grad / "loss_curves.png").exists()
