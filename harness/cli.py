"""Command line: the only place that parses strings, prints, or exits.

    python -m harness run        train and evaluate a grid, write a report
    python -m harness corpora    list the built-in corpora
    python -m harness score      per-character log-probabilities of words
    python -m harness sample     sample names
    python -m harness bench      loss-kernel benchmark
"""
from __future__ import annotations

import argparse
import datetime as dt
import shlex
import sys
from pathlib import Path

import torch

from harness.config import RunConfig, make_run_config, parse_smoothing, resolve_device, validate_order
from harness.corpus import Corpus, builtin_corpora, load_corpus, ssa_names
from harness.errors import HarnessError

DEFAULTS = RunConfig()


def log(line: str) -> None:
    print(line, flush=True)


def add_run_parser(sub) -> None:
    p = sub.add_parser("run", help="train and evaluate every configuration of a grid; write a report")
    p.add_argument("--corpus", default=DEFAULTS.corpus, help="file path or built-in name (default %(default)s)")
    p.add_argument("--orders", default=",".join(map(str, DEFAULTS.orders)), help="n-gram orders, e.g. 2,3 (default %(default)s)")
    p.add_argument("--methods", default=",".join(DEFAULTS.methods), help="count, gradient or both: count,gradient (default %(default)s)")
    p.add_argument("--smoothing", default=DEFAULTS.smoothing, help="add-k: 'auto' tunes k on dev, or a number k >= 0 (default %(default)s)")
    p.add_argument("--split", default=DEFAULTS.split, help="seeded (80/10/10 by unique item) or none (default %(default)s)")
    p.add_argument("--seed", type=int, default=DEFAULTS.seed, help="seed of the split and of sampling (default %(default)s)")
    p.add_argument("--samples", type=int, default=DEFAULTS.samples, help="names sampled per configuration (default %(default)s)")
    p.add_argument("--device", default=DEFAULTS.device, help="auto, cpu or cuda (default %(default)s)")
    p.add_argument("--out", default=None, help="run folder (default reports/run-<UTC time>)")
    g = p.add_argument_group("gradient models (the lecture's defaults)")
    g.add_argument("--loss", default=",".join(DEFAULTS.losses), help="loss backends, one configuration each: triton,compiled,torch,manual (default %(default)s)")
    g.add_argument("--steps", type=int, default=DEFAULTS.steps, help="gradient steps (default %(default)s)")
    g.add_argument("--lr", type=float, default=DEFAULTS.lr, help="learning rate (default %(default)s)")
    g.add_argument("--reg", type=float, default=DEFAULTS.reg, help="regularisation lambda in lambda*(W**2).mean() (default %(default)s)")
    g.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size, help="rows per step, 0 = full batch (default %(default)s)")
    g.add_argument("--input", default=DEFAULTS.input, help="table: fused gather-cross-entropy (default); index: W[context]; "
                   "onehot: one_hot(context) @ W, the lecture's; counts: the exact full-batch step from the count table")
    g.add_argument("--additive", action="store_true", help="orders >= 3: sum one V x V table per context position instead of one row per context")


def add_model_arguments(p) -> None:
    p.add_argument("--corpus", default=DEFAULTS.corpus, help="file path or built-in name (default %(default)s)")
    p.add_argument("--order", type=int, default=2, help="n-gram order (default %(default)s)")
    p.add_argument("--smoothing", default="1", help="add-k smoothing k >= 0 (default %(default)s, the lecture's)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default %(default)s)")


def cmd_run(args) -> int:
    cfg = make_run_config(corpus=args.corpus, orders=args.orders, methods=args.methods, smoothing=args.smoothing,
                          split=args.split, seed=args.seed, samples=args.samples, device=args.device,
                          losses=args.loss, steps=args.steps, lr=args.lr, reg=args.reg, batch_size=args.batch_size,
                          input=args.input, additive=args.additive)
    resolve_device(cfg.device)  # fail on a bad device before any work
    out = Path(args.out) if args.out else Path("reports") / dt.datetime.now(dt.timezone.utc).strftime("run-%Y%m%d-%H%M%S")
    from harness.run import run_grid
    from harness.report import loss_table

    command = "python -m harness " + shlex.join(sys.argv[1:])
    results = run_grid(cfg, out, log, command)
    print()
    print(loss_table(results["results"]))
    print(f"\nreport: {out / 'report.md'}")
    return 0


def cmd_corpora(args) -> int:
    for spec, what in builtin_corpora():
        print(f"{spec:18s} {what}")
    print()
    names17, births17 = ssa_names("2017")
    names_all, births_all = ssa_names("all")
    print(f"ssa:2017           {len(names17):,} unique names, {int(births17.sum()):,} births")
    print(f"ssa:all            {len(names_all):,} unique names, {int(births_all.sum()):,} births")
    print("a file path        one item per line, UTF-8 (e.g. makemore's names.txt)")
    return 0


def fit_full(args) -> tuple[Corpus, "CountModel"]:  # noqa: F821 - annotation only
    from harness.models import CountModel
    from harness.ngrams import windows

    validate_order(args.order)
    k = float(parse_smoothing(args.smoothing)) if args.smoothing != "auto" else None
    if k is None:
        raise HarnessError("--smoothing auto needs a dev split; score and sample train on the whole corpus, give a number k >= 0")
    device = resolve_device(args.device)
    corpus = load_corpus(args.corpus, device)
    return corpus, CountModel.fit(windows(corpus, args.order), k)


def cmd_score(args) -> int:
    from harness.corpus import pack
    from harness.evaluate import mean_nll
    from harness.ngrams import windows

    corpus, model = fit_full(args)
    for word in args.words:
        corpus.vocab.encode(word)  # a character outside the vocabulary is a clear error
    log_probs = model.log_probs()
    for word in args.words:
        w = windows(pack(word, [word], None, corpus.device, vocab=corpus.vocab), args.order)
        lp = log_probs[w.context, w.target].tolist()
        tokens = ["."] * (args.order - 1) + list(word) + ["."]
        print(f"{word}:")
        for j, logp in enumerate(lp):
            ctx = "".join(tokens[j:j + args.order - 1])
            print(f"  {ctx + '→' + tokens[j + args.order - 1]:>{args.order + 3}}  log p = {logp:.6f}")
        nll = mean_nll(log_probs, w)
        print(f"  mean NLL {nll:.6f} nats/char over {len(lp)} predictions")
    return 0


def cmd_sample(args) -> int:
    from harness.sampling import sample_batched, sample_lecture

    if args.num < 0:
        raise HarnessError(f"--num must be >= 0, got {args.num}")
    corpus, model = fit_full(args)
    generator = torch.Generator(device=corpus.device).manual_seed(args.seed)
    sampler = sample_lecture if args.lecture else sample_batched
    for name in sampler(model.probs_float32(), args.order, corpus.vocab, args.num, generator):
        print(name + ".")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m harness", description="makemore-harness: n-gram name models, evaluated and benchmarked")
    sub = parser.add_subparsers(dest="command", required=True)
    add_run_parser(sub)
    sub.add_parser("corpora", help="list the built-in corpora and their sizes")
    p = sub.add_parser("score", help="per-character log-probabilities and mean NLL of words")
    add_model_arguments(p)
    p.add_argument("words", nargs="+", help="words to score")
    p = sub.add_parser("sample", help="sample names from a count model trained on the whole corpus")
    add_model_arguments(p)
    p.add_argument("--num", type=int, default=20, help="names to sample (default %(default)s)")
    p.add_argument("--seed", type=int, default=2147483647, help="generator seed (default the lecture's, %(default)s)")
    p.add_argument("--lecture", action="store_true", help="draw one name at a time exactly as the lecture does")
    p = sub.add_parser("bench", help="benchmark the loss backends against F.cross_entropy")
    try:
        from harness.bench import add_bench_arguments
    except ImportError:
        add_bench_arguments = None
    if add_bench_arguments is not None:
        add_bench_arguments(p)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "run":
            return cmd_run(args)
        if args.command == "corpora":
            return cmd_corpora(args)
        if args.command == "score":
            return cmd_score(args)
        if args.command == "sample":
            return cmd_sample(args)
        if args.command == "bench":
            from harness.bench import bench_main

            return bench_main(args)
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    raise AssertionError(f"unhandled command {args.command}")
