"""`bench` options into a BenchConfig: the device's grids, the suites, and errors that name the option."""
import pytest
import torch

from harness.bench import config as bench
from harness.core.errors import HarnessError
from tests.bench.helpers import parse


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


def test_suite_defaults_and_validation():
    assert bench.make_bench_config(parse("--device", "cpu")).suites == ("loss", "train")
    assert bench.make_bench_config(parse("--device", "cpu", "--quick")).suites == ("loss",)
    for argv, option in ((["--suite", "speed"], "--suite"), (["--orders", "1"], "--orders"),
                         (["--train-steps", "0"], "--train-steps"), (["--train-repeats", "0"], "--train-repeats")):
        with pytest.raises(HarnessError, match=option):
            bench.make_bench_config(parse("--device", "cpu", *argv))
    with pytest.raises(HarnessError, match="or scoring alone"):  # the scoring suite exists too, routed before this check
        bench.make_bench_config(parse("--device", "cpu", "--suite", "speed"))


def test_quick_is_one_shape_with_every_backend_but_torch_compile_and_fewer_repetitions():
    cpu = torch.device("cpu")
    assert bench.default_shapes(cpu, True, [], []) == [(359, 729)] == list(bench.QUICK_CPU_SHAPES)
    config = bench.make_bench_config(parse("--device", "cpu", "--quick"))
    assert config.backends == bench.QUICK_CPU_BACKENDS and config.dtypes == ("fp32",) and config.suites == ("loss",)
    assert config.repetitions == bench.QUICK_REPETITIONS and config.passes == ("fwd+bwd",)
    assert bench.make_bench_config(parse("--device", "cpu", "--quick", "--passes", "fwd")).passes == ("fwd",)
    assert bench.make_bench_config(parse("--device", "cpu")).passes == bench.PASSES
    assert bench.make_bench_config(parse("--device", "cpu", "--quick", "--repetitions", "30")).repetitions == 30
    assert bench.make_bench_config(parse("--device", "cpu")).repetitions == bench.DEFAULTS.repetitions


def test_threads_default_to_auto_and_take_a_number(monkeypatch):
    from harness.core import env

    monkeypatch.setattr(env, "cpu_cores", lambda: 2)
    monkeypatch.setattr(env, "load_average", lambda: (3.0, 3.0, 3.0))
    config = bench.make_bench_config(parse("--device", "cpu"))
    assert config.threads == 1 and config.threads_how.startswith("auto: 2 cores, load 3.00")
    assert bench.make_bench_config(parse("--device", "cpu", "--threads", "2")).threads == 2
    with pytest.raises(HarnessError, match="--threads"):
        bench.make_bench_config(parse("--device", "cpu", "--threads", "0"))


def test_shapes_past_2_to_the_40_elements_are_refused():
    with pytest.raises(HarnessError, match="--n/--v: N x V"):
        bench.make_bench_config(parse("--device", "cpu", "--n", "2^30", "--v", "2^11"))


def test_quick_on_cpu_leaves_out_torch_compile_unless_asked():
    """--quick's minute: torch.compile(F.cross_entropy)'s first compile alone took 32-59 s here, so it is not a
    default --quick row on CPU; every other backend is, and --backends still picks it."""
    quick = bench.make_bench_config(parse("--device", "cpu", "--quick"))
    assert quick.backends == tuple(b for b in bench.VARIANTS if b != "torch-compile")
    assert bench.make_bench_config(parse("--device", "cpu")).backends == tuple(bench.VARIANTS)
    asked = bench.make_bench_config(parse("--device", "cpu", "--quick", "--backends", "torch,torch-compile"))
    assert asked.backends == ("torch", "torch-compile")
    assert bench.make_bench_config(parse("--device", "cpu", "--quick", "--backends", "all")).backends == tuple(bench.VARIANTS)
