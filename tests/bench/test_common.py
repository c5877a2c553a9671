"""harness.bench.common: timing, the CSV writer and its merge, the command line, the shared option parsers."""
import sys
import time

import pandas as pd
import pytest
import torch

from harness.bench import common
from harness.core.errors import HarnessError

CPU = torch.device("cpu")


def test_time_call_quantiles_are_ordered_and_near_a_known_sleep():
    median, p20, p80, reps = common.time_call(lambda: time.sleep(0.002), CPU, repetitions=5, warmup=1)
    assert reps == 5 and p20 <= median <= p80
    assert 2.0 <= median < 50.0  # a 2 ms sleep: never shorter, and not wildly longer even on a busy machine


def test_timed_repeats_a_short_step_and_runs_a_long_one_once():
    calls = []
    seconds, repeats, ratio = common.timed(lambda: calls.append(1), CPU, min_seconds=0.01, max_repeats=7)
    assert repeats == 7 and len(calls) == 8 and seconds >= 0  # one untimed call, then the repeats
    assert ratio >= 1.0  # p80 / p20 of the repeats
    calls.clear()
    seconds, repeats, ratio = common.timed(lambda: (calls.append(1), time.sleep(0.02)), CPU, min_seconds=0.01)
    assert repeats == 1 and len(calls) == 1 and seconds >= 0.02
    assert ratio != ratio  # one pass: its spread is unknown (NaN), never a made-up 1


def test_timed_spread_is_p80_over_p20_of_the_repeats(monkeypatch):
    """The spread against numpy's quantiles of the same (faked) timings: 1, 2, ..., 10 ms."""
    import numpy as np

    ticks = iter([0.0, 0.0] + [x for i in range(1, 11) for x in (0.0, i / 1000)])  # untimed call, then 10 timed
    monkeypatch.setattr(common.time, "perf_counter", lambda: next(ticks))
    seconds, repeats, ratio = common.timed(lambda: None, CPU, min_seconds=1.0, max_repeats=10)
    times = np.arange(1, 11) / 1000
    assert repeats == 10
    assert seconds == pytest.approx(float(np.median(times)), rel=0.2)  # torch's median is the lower middle one
    assert ratio == pytest.approx(np.quantile(times, 0.8) / np.quantile(times, 0.2))


def test_torch_threads_sets_and_restores():  # harness.core.env's, re-exported for the suites
    before = torch.get_num_threads()
    with common.torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(HarnessError, match="--threads"):
        with common.torch_threads(0):
            pass


def test_triton_is_listed_as_needing_cuda_on_cpu():
    assert "needs CUDA" in common.backend_unavailable("triton", CPU)
    assert common.backend_unavailable("torch", CPU) == ""


def test_provenance_names_where_a_row_came_from():
    prov = common.provenance(CPU, nltk=True)
    for key in ("device", "device_name", "machine", "load_avg", "torch", "triton", "python", "nltk", "git_commit",
                "timestamp"):
        assert prov[key] not in (None, ""), key
    assert prov["device"] == "cpu" and prov["torch"] == torch.__version__
    assert "nltk" not in common.provenance(CPU)
    assert common.device_kind(CPU) == "cpu"


def test_write_rows_keeps_the_columns_and_merges_by_key(tmp_path):
    path = tmp_path / "rows.csv"
    columns = ["corpus", "order", "value", "note"]
    common.write_rows([{"corpus": "a", "order": 2, "value": 1.0, "extra": "dropped"},
                       {"corpus": "a", "order": 3, "value": 2.0}], path, columns, key=["corpus", "order"])
    common.write_rows([{"corpus": "a", "order": 3, "value": 5.0, "note": "n/a"},
                       {"corpus": "b", "order": 2, "value": 7.0}], path, columns, key=["corpus", "order"])
    df = common.read_rows(path)
    assert list(df.columns) == columns
    got = {(r.corpus, r.order): r.value for r in df.itertuples()}
    assert got == {("a", 2): 1.0, ("a", 3): 5.0, ("b", 2): 7.0}  # (a, 3) replaced, the others kept
    assert df.loc[df.value == 5.0, "note"].iloc[0] == "n/a"  # text stays text, empty cells are NaN
    assert df.loc[df.value == 1.0, "note"].isna().all()
    common.write_rows([{"corpus": "c", "order": 4, "value": 0.5}], path, columns)  # no key: replaced
    assert len(pd.read_csv(path)) == 1


def test_command_line_only_when_run_as_bench(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["python -m harness", "bench", "--quick", "--out", "a b"])
    assert common.command_line() == "python -m harness bench --quick --out 'a b'"
    monkeypatch.setattr(sys, "argv", ["pytest", "tests"])
    assert common.command_line() == ""


def test_out_dir_is_the_given_one_or_stamped_under_reports(tmp_path):
    assert common.out_dir_for(str(tmp_path), "bench", CPU) == tmp_path
    stamped = common.out_dir_for(None, "counting", CPU)
    assert stamped.parent.name == "reports" and stamped.name.startswith("counting-cpu-")


@pytest.mark.parametrize("text, value", [("4096", 4096), ("2^12", 4096), ("2**10", 1024), ("1", 1)])
def test_parse_size(text, value):
    assert common.parse_size(text, "--n") == value


@pytest.mark.parametrize("text", ["many", "0", "2^"])
def test_parse_size_names_the_option(text):
    with pytest.raises(HarnessError, match="--v"):
        common.parse_size(text, "--v")


def test_split_list():
    assert common.split_list(["a,b", " c  d ", ""]) == ["a", "b", "c", "d"]
    assert common.split_list(None) == []


def test_parse_orders():
    assert common.parse_orders(None, (2, 3)) == (2, 3)
    assert common.parse_orders(["4,2", "2 5"], (2,)) == (4, 2, 5)
    for bad in (["two"], ["0"], ["2,-1"]):
        with pytest.raises(HarnessError, match="--orders"):
            common.parse_orders(bad, (2,))


# ---------------------------------------------------------------------------------------------
# threads, load, spread (harness.core.env and harness.bench.common)

from harness.core import env  # noqa: E402


@pytest.mark.parametrize("cores, load, free", [(2, 0.0, 2), (2, 0.4, 2), (2, 0.6, 1), (2, 3.1, 1), (2, 1.0, 1),
                                               (16, 4.2, 12), (16, 40.0, 1), (4, None, 4)])
def test_free_cores(cores, load, free):
    assert env.free_cores(cores, load) == free


def test_parse_threads_auto_takes_the_free_cores(monkeypatch):
    monkeypatch.setattr(env, "cpu_cores", lambda: 2)
    monkeypatch.setattr(env, "load_average", lambda: (3.08, 4.95, 4.08))
    assert env.parse_threads(None) == (1, "auto: 2 cores, load 3.08 4.95 4.08")
    monkeypatch.setattr(env, "load_average", lambda: (0.1, 0.2, 0.3))
    assert env.parse_threads("auto")[0] == 2
    assert env.parse_threads(None, default=1) == (1, "given")
    assert env.parse_threads("3") == (3, "given")


@pytest.mark.parametrize("text", ["0", "-2", "two", "1.5", "5000"])
def test_parse_threads_refuses_with_the_option_named(text):
    with pytest.raises(HarnessError, match="--threads"):
        env.parse_threads(text)


@pytest.mark.parametrize("start, end, threads, cores, warns", [
    ((3.0, 4, 4), (4.0, 4, 4), 1, 2, True),     # others hold 3 cores' worth, 1 is free
    ((0.2, 1, 1), (1.1, 1, 1), 1, 2, False),    # after: 1.1 - our 1 thread = 0.1 others, 1 free
    ((0.2, 1, 1), (2.5, 1, 1), 1, 2, True),     # others came during the run: 1.5 > 1 free
    ((0.5, 1, 1), (2.4, 1, 1), 2, 2, True),     # 2 threads on 2 cores leave none free
    ((0.0, 0, 0), (2.0, 1, 1), 2, 2, False),    # an idle machine: the load after is our own
    (None, None, 1, 2, False),                  # unknown load: no claim
])
def test_load_warning(start, end, threads, cores, warns):
    text = env.load_warning(start, end, threads, cores)
    assert bool(text) == warns
    if warns:
        assert f"{cores} cores ({max(cores - threads, 0)} free)" in text


def test_machine_load_sets_threads_and_records_the_load(monkeypatch):
    loads = iter([(3.0, 2.0, 1.0), (4.0, 2.5, 1.1)])
    monkeypatch.setattr(common, "load_average", lambda: next(loads))
    before = torch.get_num_threads()
    with common.MachineLoad(1, "given") as machine:
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    cols = machine.columns()
    assert list(cols) == common.LOAD_COLUMNS
    assert cols["threads"] == 1 and cols["load_avg_start"] == "3.00 2.00 1.00" and cols["load_avg_end"] == "4.00 2.50 1.10"
    assert common.parse_load(cols["load_avg_end"]) == (4.0, 2.5, 1.1) and common.parse_load("unknown") is None
    machine.cores = 2  # a load of 3 before, 4 - 1 after, on 2 cores with 1 free: other work competed
    assert "competed" in machine.warning() and "2 cores (1 free)" in machine.warning()


@pytest.mark.parametrize("p20, p80, ratio, wide", [(1.0, 1.2, 1.2, False), (2.0, 3.0, 1.5, False), (1.0, 1.6, 1.6, True),
                                                    (0.0, 1.0, float("nan"), False)])
def test_spread(p20, p80, ratio, wide):
    got = common.spread(p20, p80)
    assert (got != got and ratio != ratio) or got == pytest.approx(ratio)
    assert common.wide_spread(got) is wide


@pytest.mark.parametrize("text", ["10^100000000", "2^41", "2**64", "123456789012345678901234", "1099511627777"])
def test_parse_size_refuses_sizes_past_2_to_the_40_without_computing_them(text):
    with pytest.raises(HarnessError, match="--n: .*(larger than|too large)"):
        common.parse_size(text, "--n")


def test_parse_size_accepts_the_limit():
    assert common.parse_size("2^40", "--n") == 2**40 == common.MAX_ELEMENTS
    assert common.parse_size("1^1000000", "--n") == 1
