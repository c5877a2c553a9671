"""`python -m harness bench`: the options of every benchmark suite, and the router that runs one.

`add_bench_arguments(parser)` fills the `bench` subcommand; `bench_main(args)` picks the suite
(--static, --counting, --smoothing, else the loss and/or training suites of --suite), runs it,
saves its long-format CSV and renders its markdown (and bench.png) from the saved file.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from harness.bench import counting, loss, neural, smoothing, static, train
from harness.bench.common import (MachineLoad, command_line, out_dir_for, parse_orders, parse_threads, provenance,
                                  recompile_limit_patch, resolve_device, write_rows)
from harness.bench.config import DEFAULTS, DTYPES, QUICK_REPETITIONS, VARIANTS, make_bench_config
from harness.bench.markdown import render_bench, render_counting, render_smoothing
from harness.bench.plots import plot
from harness.bench.scoring import add_scoring_arguments, scoring_main
from harness.bench.static_markdown import render_static
from harness.core.errors import HarnessError
from harness.core.memory import parse_bytes


def _print(line: str) -> None:
    print(line, flush=True)


# ---------------------------------------------------------------------------------------------
# options


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    """The `bench` subcommand's options; defaults come from BenchConfig."""
    p = parser
    p.add_argument("--device", default=DEFAULTS.device, help="auto, cpu or cuda (default %(default)s)")
    p.add_argument("--quick", action="store_true",
                   help="a small grid: on CPU one shape (N=359, V=729, fp32, forward+backward), every backend but "
                        f"torch-compile once, {QUICK_REPETITIONS} repetitions (under a minute)")
    p.add_argument("--threads", default=None, metavar="N|auto",
                   help="torch CPU threads while measuring (default: auto for the loss and training suites, the cores "
                        "the load average leaves free, at least 1; 1 with --counting and --smoothing, whose baselines "
                        "run on one core). Every report records it and the load average before and after")
    p.add_argument("--out", default=None, help="report folder (default reports/bench-<device>-<UTC time>)")
    p.add_argument("--n", nargs="+", default=None, metavar="N",
                   help="rows N, comma or space separated, 2^k allowed (default: the device's grid)")
    p.add_argument("--v", nargs="+", default=None, metavar="V", help="vocabulary sizes V (default: the device's grid)")
    p.add_argument("--dtype", nargs="+", default=None, metavar="DTYPE",
                   help=f"dtypes among {', '.join(DTYPES)} (default {','.join(DEFAULTS.dtypes)}; fp32 with --quick)")
    p.add_argument("--backends", nargs="+", default=None, metavar="NAME",
                   help="backend variants (default: all; with --quick on CPU all but torch-compile, whose first "
                        "compile alone takes 30-60 s here): " + ", ".join(VARIANTS))
    p.add_argument("--passes", nargs="+", default=None, metavar="PASS",
                   help=f"fwd and/or fwd+bwd (default {','.join(DEFAULTS.passes)}; fwd+bwd with --quick)")
    p.add_argument("--repetitions", type=int, default=None,
                   help=f"timed repetitions per measurement, after warm-up (default {DEFAULTS.repetitions}; "
                        f"{QUICK_REPETITIONS} with --quick)")
    p.add_argument("--warmup", type=int, default=DEFAULTS.warmup, help="untimed warm-up calls (default %(default)s)")
    p.add_argument("--seed", type=int, default=DEFAULTS.seed, help="seed of the random logits (default %(default)s)")
    p.add_argument("--table-contexts", type=int, default=DEFAULTS.table_contexts,
                   help="rows C of the table for the table_cross_entropy rows (default %(default)s)")
    p.add_argument("--max-logits-mib", type=float, default=DEFAULTS.max_logits_mib,
                   help="skip shapes whose logits exceed this many MiB (default: 2048 on CUDA, 1024 on CPU)")
    p.add_argument("--copy-mib", type=int, default=DEFAULTS.copy_mib,
                   help="MiB copied to measure the device's bandwidth (default %(default)s; 256 with --quick)")
    p.add_argument("--max-seconds", type=float, default=DEFAULTS.max_seconds,
                   help="time budget: measurements after it are skipped, the report is still written (default: none)")
    p.add_argument("--keep-going", action="store_true",
                   help="record a verification mismatch or a backend error as a failed row and go on (exit 1)")
    p.add_argument("--suite", nargs="+", default=None, metavar="SUITE",
                   help="loss and/or train (default loss,train; loss with --quick), or scoring alone (ARPA and "
                        "backoff scoring against KenLM's query)")
    p.add_argument("--corpus", default=DEFAULTS.corpus,
                   help="training benchmark corpus: built-in name or file path (default %(default)s)")
    p.add_argument("--orders", nargs="+", default=None, metavar="ORDER",
                   help=f"training benchmark n-gram orders (default {','.join(map(str, DEFAULTS.orders))}; "
                        "with --counting 2,3,4,5; with --smoothing 2,3,4)")
    p.add_argument("--train-steps", type=int, default=DEFAULTS.train_steps,
                   help="training benchmark: full-batch steps per timed fit (default %(default)s)")
    p.add_argument("--train-repeats", type=int, default=DEFAULTS.train_repeats,
                   help="training benchmark: timed fits per variant, median reported (default %(default)s)")
    _add_counting_arguments(p)
    _add_smoothing_arguments(p)
    add_scoring_arguments(p)
    p.add_argument("--static", action="store_true",
                   help="compile every Triton kernel configuration for GPUs and report registers, spills, occupancy "
                        "and load widths (no GPU needed, nothing timed)")
    p.add_argument("--arch", default="sm_80,sm_90", help="with --static: architectures, comma separated (default %(default)s)")


def _add_counting_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `bench --counting` that the loss benchmark does not have."""
    g = parser.add_argument_group("counting throughput (--counting)")
    g.add_argument("--counting", action="store_true",
                   help="characters counted per second for orders 2-5 against the lecture's dict loop and nltk.lm.MLE "
                        "(writes counting.csv and counting.md; --corpus, --orders, --device, --out, --quick apply)")
    g.add_argument("--expand", action="store_true", help="count the corpus with every copy of a weighted item as a row")
    g.add_argument("--max-memory", default="auto",
                   help="byte budget of chunked passes, e.g. 4G (default auto: a quarter of the free device memory)")
    g.add_argument("--baseline-chars", type=int, default=None,
                   help=f"predicted characters the baselines count at most (default {counting.DEFAULT_BASELINE_CHARS:,}; "
                        f"{counting.QUICK_BASELINE_CHARS:,} with --quick)")



def _add_smoothing_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `bench --smoothing` (--corpus, --orders, --device, --out, --quick are the bench parser's)."""
    g = parser.add_argument_group("smoothed count models against nltk (--smoothing)")
    g.add_argument("--smoothing", action="store_true",
                   help="fit and dev-scoring time and dev NLL of our kn/wb against nltk.lm.KneserNeyInterpolated, "
                        "orders 2,3,4 by default (writes smoothing.csv and smoothing.md)")
    g.add_argument("--nltk-seconds", type=float, default=None,
                   help=f"with --smoothing: seconds nltk may spend scoring dev per order; past them it scores a seeded "
                        f"subset of the dev names (default {smoothing.DEFAULT_NLTK_SECONDS:.0f}; 5 with --quick)")



# ---------------------------------------------------------------------------------------------
# the router


def bench_main(args: argparse.Namespace) -> int:
    """Run the `bench` subcommand: the suite its flags name; 0 when every measurement passed, else 1."""
    if args.static:
        return static_main(args)
    if args.counting:
        return counting_main(args)
    if args.smoothing:
        return smoothing_main(args)
    if args.suite and "scoring" in ",".join(args.suite).split(","):
        return scoring_main(args)
    return loss_and_train_main(args)


def loss_and_train_main(args: argparse.Namespace) -> int:
    """The loss and/or training suites: verify, time, write bench.csv (+ train.csv), bench.md and bench.png."""
    config = make_bench_config(args)
    config.out_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(config.device)
    if "loss" in config.suites:
        _print(f"bench loss: {len(config.shapes)} shapes x {len(config.dtypes)} dtypes x {len(config.backends)} "
               f"backends on {device}")
        for name in config.backends:
            why = loss.variant_unavailable(name, device)
            if why:
                _print(f"  {name}: skipped ({why})")
    if "train" in config.suites:
        _print(f"bench train: {config.corpus}, orders {', '.join(map(str, config.orders))}, {config.train_steps} steps "
               f"x {config.train_repeats} fits on {device}")
    _print(f"threads: {config.threads} ({config.threads_how})")
    started = time.perf_counter()
    failures = []
    with recompile_limit_patch():
        if "loss" in config.suites:
            with MachineLoad(config.threads, config.threads_how) as machine:
                rows, env = loss.run_bench(config, log=_print)
            write_rows([{**r, **machine.columns()} for r in rows], config.out_dir / "bench.csv", loss.CSV_COLUMNS)
            plot(config.out_dir / "bench.csv", config.out_dir / "bench.png")
            failures += env["failures"]
        if "train" in config.suites:
            with MachineLoad(config.threads, config.threads_how) as machine:
                train_rows = train.run_train_bench(config, log=_print)
            write_rows([{**r, **machine.columns()} for r in train_rows], config.out_dir / "train.csv",
                       train.TRAIN_CSV_COLUMNS)
            failures += [f"train {r['variant']} order {r['order']}: {r['note']}" for r in train_rows
                         if r.get("status") == "failed"]
            neural_rows = neural.neural_train_bench(config.corpus, device, config.quick, config.seed, config.out_dir,
                                                    command_line(), log=_print)  # neural.csv, neural.md
            failures += [f"train {r['family']} {r['backend']}: {r['note']}" for r in neural_rows if r.get("status") == "failed"]
    (config.out_dir / "bench.md").write_text(render_bench(config.out_dir, command_line()))
    _print(f"report: {config.out_dir / 'bench.md'} ({time.perf_counter() - started:.0f} s)")
    if failures:
        _print(f"{len(failures)} measurement(s) failed:")
        for line in failures:
            _print(f"  {line}")
        return 1
    return 0


def counting_main(args: argparse.Namespace) -> int:
    """`bench --counting`: measure, merge into counting.csv, render counting.md."""
    device = resolve_device(args.device)
    orders = parse_orders(args.orders, counting.QUICK_ORDERS if args.quick else counting.DEFAULT_ORDERS)
    baseline_chars = args.baseline_chars or (counting.QUICK_BASELINE_CHARS if args.quick
                                             else counting.DEFAULT_BASELINE_CHARS)
    if baseline_chars < 1:
        raise HarnessError(f"--baseline-chars must be >= 1, got {baseline_chars}")
    max_memory = parse_bytes(args.max_memory)
    out_dir = out_dir_for(args.out, "counting", device)
    out_dir.mkdir(parents=True, exist_ok=True)
    threads, how = parse_threads(args.threads, 1)
    with MachineLoad(threads, how) as machine:
        rows = counting.run_counting(args.corpus, orders, device, args.expand, max_memory, baseline_chars,
                                     min_seconds=0.2 if args.quick else 1.0, log=_print)
        prov = provenance(device, nltk=True)  # inside: its device name states the threads
    prov.update(machine.columns())
    write_rows([{**r, **prov} for r in rows], out_dir / "counting.csv", counting.CSV_COLUMNS, key=counting.CSV_KEY)
    # the commands of every run merged into counting.csv, listed in its report
    command = command_line()
    commands_file = out_dir / "counting-commands.txt"
    commands = commands_file.read_text().splitlines() if commands_file.exists() else []
    if command and command not in commands:
        commands.append(command)
        commands_file.write_text("\n".join(commands) + "\n")
    (out_dir / "counting.md").write_text(render_counting(out_dir / "counting.csv", commands))
    _print(f"report: {out_dir / 'counting.md'}")
    return 0


def smoothing_main(args: argparse.Namespace) -> int:
    """`bench --smoothing`: measure, merge into smoothing.csv, render smoothing.md."""
    device = resolve_device(args.device)
    orders = parse_orders(args.orders, (2,) if args.quick else smoothing.DEFAULT_ORDERS)
    nltk_seconds = args.nltk_seconds if args.nltk_seconds is not None else (
        5.0 if args.quick else smoothing.DEFAULT_NLTK_SECONDS)
    if nltk_seconds <= 0:
        raise HarnessError(f"--nltk-seconds must be > 0, got {nltk_seconds}")
    out_dir = out_dir_for(args.out, "smoothing", device)
    out_dir.mkdir(parents=True, exist_ok=True)
    seed = smoothing.SPLIT_SEED
    threads, how = parse_threads(args.threads, 1)
    with MachineLoad(threads, how) as machine:
        rows = smoothing.run_smoothing(args.corpus, orders, device, nltk_seconds,
                                       min_seconds=0.2 if args.quick else 1.0, seed=seed, log=_print)
        prov = provenance(device, nltk=True)  # inside: its device name states the threads
    prov.update(machine.columns(), split_seed=seed, command=command_line())
    write_rows([{**r, **prov} for r in rows], out_dir / "smoothing.csv", smoothing.CSV_COLUMNS, key=smoothing.CSV_KEY)
    (out_dir / "smoothing.md").write_text(render_smoothing(out_dir / "smoothing.csv"))
    _print(f"report: {out_dir / 'smoothing.md'}")
    return 0


def static_main(args: argparse.Namespace) -> int:
    """`bench --static`: compile the GPU grid for --arch, write static.csv and static.md; 1 when a launch spills."""
    archs = static.parse_archs(args.arch)
    out_dir = Path(args.out) if args.out else Path("reports") / ("static-" + "-".join(archs))
    out_dir.mkdir(parents=True, exist_ok=True)
    contexts = DEFAULTS.table_contexts
    started = time.perf_counter()
    rows, unique = static.run_static(archs, contexts, log=_print)
    write_rows(rows, out_dir / "static.csv", list(dict.fromkeys(k for r in rows for k in r)))
    (out_dir / "static.md").write_text(render_static(out_dir / "static.csv", archs, contexts, unique))
    bad = [r for r in rows if r["spilled_bytes"] > 0 or r["spill_instructions"] > 0 or r["warps_per_sm"] == 0]
    _print(f"report: {out_dir / 'static.md'} ({unique} compiles, {time.perf_counter() - started:.0f} s)")
    if bad:
        _print(f"{len(bad)} launch(es) spill or cannot launch; see the report")
        return 1
    return 0
