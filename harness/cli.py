"""Command line: the subcommands' flags and what each prints; errors users cause (HarnessError) end here
as one line and exit status 2. (Progress lines come from harness.core.progress, the bench suites print
their own tables, and run configuration strings are parsed in harness.run.config.)

    python -m harness run        train and evaluate a grid, write a report
    python -m harness corpora    list the built-in corpora
    python -m harness score      per-character log-probabilities of words
    python -m harness sample     sample names
    python -m harness export     a run's saved model as an ARPA file
    python -m harness bench      loss-kernel benchmark
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import shlex
import shutil
import sys
from pathlib import Path

import torch

from harness.bench.main import add_bench_arguments
from harness.train import distributed
from harness.run.config import (DEFAULTS, LOSSES, load_grid_file, make_run_config, parse_smoothing, resolve_device,
                               validate_order, validate_seed)
from harness.data.corpus import builtin_corpora, load_corpus, ssa_names
from harness.cli_fast import check_score_file, guarded
from harness.core.errors import HarnessError
from harness.core.progress import Progress


def log(line: str) -> None:
    print(line, flush=True)


def add_run_parser(sub) -> None:
    p = sub.add_parser("run", help="train and evaluate every configuration of a grid; write a report")
    d = DEFAULTS
    # flag defaults stay None so a TOML grid file can fill them; RunConfig holds the real defaults
    p.add_argument("--config", default=None, help="TOML grid file (keys as in grid.toml of any run); flags given too override it")
    p.add_argument("--resume", default=None, metavar="RUN_DIR", help="finish an interrupted run: only its missing or failed configurations run")
    p.add_argument("--corpus", help=f"file path or built-in name (default {d.corpus})")
    p.add_argument("--orders", help=f"n-gram orders, e.g. 2,3 (default {','.join(map(str, d.orders))})")
    p.add_argument("--methods", help=f"model families, comma separated: count, gradient, mlp, cnn, gru, transformer (default {','.join(d.methods)})")
    p.add_argument("--smoothing", help="count models, one configuration each: auto (add-k, k tuned on dev), a number k >= 0, "
                   f"kn (modified Kneser-Ney), wb (Witten-Bell), interp (add-k orders interpolated) (default {','.join(d.smoothing)})")
    p.add_argument("--split", help=f"seeded (80/10/10 by unique item), none, or files:TRAIN,DEV,TEST (default {d.split})")
    p.add_argument("--k-grid", dest="k_grid", help="add-k values tried by --smoothing auto, comma separated "
                   f"(default {','.join(f'{k:g}' for k in d.k_grid)})")
    p.add_argument("--seed", help=f"seed of the split, initialisation and sampling (default {d.seed})")
    p.add_argument("--samples", help=f"names sampled per configuration (default {d.samples})")
    p.add_argument("--device", help=f"auto, cpu or cuda (default {d.device})")
    p.add_argument("--out", default=None, help="run folder (default reports/run-<UTC time>); one that holds a run is "
                   "refused unless --resume or --overwrite")
    p.add_argument("--overwrite", action="store_true", help="delete everything --out holds (an earlier run, or any other files) "
                   "and run there, instead of refusing")
    p.add_argument("--threads", help="CPU threads (default 0: torch's own, one per core unless OMP_NUM_THREADS says less, at most 8); gradient training always uses one, "
                   "so results never depend on it")
    p.add_argument("--arpa", default=None, help="ARPA files (e.g. lmplz's), comma separated: each one configuration "
                   "(method arpa) at the order it declares, evaluated on the run's splits")
    p.add_argument("--mix", action="store_true", default=None, help="one more configuration: the best count model (on dev) "
                   "mixed token by token with the best neural one, lambda p_count + (1 - lambda) p_neural, lambda tuned on dev by EM")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--no-figures", dest="no_figures", action="store_true",
                   help="leave out the PNGs, most of a small run's time; python -m harness report RUN_DIR draws them later")
    s = p.add_argument_group("samples of each configuration (as python -m harness sample draws them)")
    s.add_argument("--temperature", help=f"sharpen (< 1) or flatten (> 1) the next-character distribution (default {d.temperature:g})")
    s.add_argument("--top-k", dest="top_k", help=f"draw among the k most likely next characters only, 0 = all (default {d.top_k})")
    s.add_argument("--prefix", help="every sampled name starts with this text")
    s.add_argument("--exclude-train", dest="exclude_train", action="store_true", default=None,
                   help="leave out names of the training split, drawing until --samples new ones exist")
    add_corpus_options(p, run=True)
    g = p.add_argument_group("gradient models (defaults are the lecture's)")
    g.add_argument("--loss", dest="losses", help=f"loss backends, one configuration each: {','.join(LOSSES)} (default {','.join(d.losses)})")
    g.add_argument("--steps", help=f"gradient steps (default {d.steps})")
    g.add_argument("--lr", help=f"learning rate (default {d.lr:g})")
    g.add_argument("--reg", dest="regs", help=f"lambda of lambda*(W**2).mean(); a list sweeps it, one configuration each (default {','.join(map(str, d.regs))})")
    g.add_argument("--batch-size", help=f"rows per step, 0 = full batch (default {d.batch_size})")
    g.add_argument("--input", help="table: fused gather-cross-entropy (default); index: W[context]; onehot: one_hot(context) @ W, "
                   "the lecture's; counts: the exact full-batch step from the count table")
    g.add_argument("--additive", action="store_true", default=None, help="orders >= 3: one V x V table per context position, summed")
    add_neural_arguments(p)


NEURAL_HELP = {  # run key -> what its flag sets; the defaults come from RunConfig (NeuralSettings's)
    "nn_embd": "token (and position) embedding size", "nn_embd2": "hidden width (mlp, cnn, gru)",
    "nn_layer": "transformer blocks / stacked GRU layers", "nn_head": "attention heads",
    "nn_block_size": "context length, 0 = the longest train/dev name + 1 (mlp, cnn: the last N characters)",
    "nn_dropout": "dropout", "nn_weight_decay": "AdamW weight decay (matrices and embeddings)",
    "nn_batch_size": "names per step", "nn_lr": "AdamW peak learning rate",
    "nn_steps": "most training steps", "nn_warmup": "linear warm-up steps", "nn_eval_interval": "steps between dev scores",
    "nn_patience": "dev scores without a new best before stopping, 0 = never",
    "time_budget": "wall seconds of training per configuration, 0 = none",
}


def add_neural_arguments(p) -> None:
    """The neural families' flags (--nn-lr ...), one per RunConfig key; a list sweeps where the key is a list."""
    from harness.run.config import FLAGS

    d = DEFAULTS
    g = p.add_argument_group("neural families: mlp, cnn, gru, transformer (--loss picks their loss backend too)")
    g.add_argument("--nn-compile", dest="nn_compile", action="store_true", default=None,
                   help="torch.compile the neural models (batches keep a static shape; compile time counts in wall s)")
    for key, what in NEURAL_HELP.items():
        value = getattr(d, key)
        shown = ",".join(f"{x:g}" for x in value) + "; a list sweeps" if isinstance(value, tuple) else f"{value:g}"
        g.add_argument(FLAGS[key], dest=key, metavar="SECONDS" if key == "time_budget" else None,
                       help=f"{what} (default {shown})")


RUN_KEYS = ("corpus", "orders", "methods", "smoothing", "split", "seed", "samples", "device", "losses", "steps",
            "lr", "regs", "batch_size", "input", "additive", "k_grid", "casefold", "min_char_count", "expand", "max_memory", "threads",
            "arpa", "mix")
RUN_KEYS += (*NEURAL_HELP, "nn_compile", "temperature", "top_k", "prefix", "exclude_train")


def add_corpus_options(p, run: bool = False) -> None:
    """--casefold, --min-char-count, --expand, --max-memory (run: defaults None, so a TOML grid can set them)."""
    d = DEFAULTS
    g = p.add_argument_group("corpus options and scale")
    g.add_argument("--casefold", action="store_true", default=None if run else False,
                   help="case-fold every item (str.casefold), merging items that become equal")
    g.add_argument("--min-char-count", type=int, default=None if run else d.min_char_count, metavar="M",
                   help="drop items with a character seen fewer than M times in the corpus (default: keep all)")
    g.add_argument("--expand", action="store_true", default=None if run else False,
                   help="every copy of a weighted item (e.g. each of ssa-births:all's 348 M births) a row, "
                        "counted and scored in chunks; add-k count models only")
    g.add_argument("--max-memory", default=None if run else d.max_memory, metavar="BYTES",
                   help="byte budget of chunked passes, e.g. 4G (default auto: a quarter of the free device memory)")


def add_model_arguments(p) -> None:
    p.add_argument("--corpus", default=DEFAULTS.corpus, help="file path or built-in name (default %(default)s)")
    p.add_argument("--order", type=int, default=2, help="n-gram order (default %(default)s)")
    p.add_argument("--smoothing", default="1", help="add-k k >= 0 (default %(default)s, the lecture's), kn, wb, "
                   "or auto (k tuned on dev) / interp (weights tuned on dev), which need --split seeded or files:")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default %(default)s)")
    p.add_argument("--split", default="none", help="train on: none = the whole corpus (default, the lecture's), "
                   "seeded = the train part of run's seeded split (with --seed), files:TRAIN,DEV,TEST = the TRAIN file")
    p.add_argument("--seed", type=int, default=DEFAULTS.seed, help="seed of the split (and of sampling) (default %(default)s)")
    p.add_argument("--model", default=None, metavar="PATH", help="use a saved model instead of fitting: a run's models/*.pt file, "
                   "or a run folder with that configuration's --order and --smoothing")
    p.add_argument("--arpa", default=None, metavar="FILE", help="use an ARPA file (e.g. lmplz's, plain or .gz) instead of fitting")
    add_corpus_options(p)


def cmd_run(args) -> int:
    from harness.run.report import load_results

    flags = {k: getattr(args, k) for k in RUN_KEYS if getattr(args, k) is not None}
    previous = None
    if args.resume:
        grid_flags = sorted(set(flags) - {"threads"})  # threads change no result: a resume may pick its own
        if grid_flags or args.config or args.out or args.overwrite:
            given = grid_flags + [f for f in ("config", "out", "overwrite") if getattr(args, f)]
            raise HarnessError("--resume repeats the interrupted run's own grid in its own folder; drop the other flags ("
                               + ", ".join(given) + ")")
        out = Path(args.resume)
        previous = load_results(out)
        try:
            cfg = make_run_config({**previous["run"]["config"], **flags})
        except HarnessError as exc:
            raise HarnessError(f"{out / 'results.json'}: its stored config is not valid ({exc}); start a new run") from None
    else:
        values = load_grid_file(args.config) if args.config else {}
        cfg = make_run_config({**values, **flags})
        if args.out is not None and not args.out.strip():
            raise HarnessError("--out is empty; give a folder path, or leave --out out for reports/run-<UTC time>")
        out = Path(args.out) if args.out else Path("reports") / dt.datetime.now(dt.timezone.utc).strftime("run-%Y%m%d-%H%M%S")
    device = resolve_device(cfg.device)  # fail on a bad device before any work
    threads_before = torch.get_num_threads()
    # 0 = one per core, at most 8: past that the small tables of names gain nothing
    torch.set_num_threads(cfg.threads or min(threads_before, 8))
    try:
        return _run(args, cfg, out, previous, device)
    finally:
        torch.set_num_threads(threads_before)  # main() may be called again in this process (tests, notebooks)


def _run(args, cfg, out: Path, previous: dict | None, device) -> int:
    """cmd_run once the grid is known: claim the folder, load and check the data, run, report."""
    from harness.core.rundir import claim_run_folder
    from harness.run.report import load_results, loss_table
    from harness.run.runner import Runner, check_limits, check_resumable, run_grid, run_hashes

    launcher = "python -m harness"
    if distributed.launched():  # started by torchrun: join its process group; rank 0 alone prints, writes and locks
        device = distributed.init(device)
        launcher = distributed.launcher()
    main_rank = distributed.is_main()
    progress = Progress(quiet=args.quiet or not main_rank)
    command = f"{launcher} " + shlex.join(sys.argv[1:])
    created = not out.exists()
    lock = claim_run_folder(out, command, resume=previous is not None, overwrite=args.overwrite) if main_rank else None
    started = False
    try:
        runner = Runner(cfg, device)  # the corpus and split; bad data is refused here, before anything is written
        check_limits(cfg, runner)
        hashes = run_hashes(cfg, runner)
        if previous is not None:
            previous = load_results(out)  # again, under the lock
            check_resumable(previous, hashes, cfg, out)
        started = True
        results = run_grid(cfg, out, progress, command, previous, device, runner=runner, figures=not args.no_figures)
    except KeyboardInterrupt:
        if main_rank and started:
            print(f"interrupted: finished configurations are in {out}; finish with: {launcher} run --resume {out}", file=sys.stderr)
        return 130
    finally:
        if lock is not None:
            lock.release()
            if created and not started:  # refused before the run began: leave no folder behind
                shutil.rmtree(out, ignore_errors=True)
        distributed.teardown()
    if not args.quiet and main_rank:
        print()
        print(loss_table(results["results"]))
        print(f"\nreport: {out / 'report.md'}")
    failed = [r for r in results["results"] if r.get("status") == "failed"]
    parts = [r for r in results["results"] if r.get("part_failed")]
    figure_errors = results["run"].get("figure_errors") or {}
    if failed or parts or figure_errors:
        if main_rank:
            if failed:
                what = f"{len(failed)} of {len(results['results'])} configurations failed (first: {failed[0].get('error')})"
            elif parts:
                part, why = next(iter(parts[0]["part_failed"].items()))
                what = f"{part} of {len(parts)} configurations failed, their NLLs kept (first: {why})"
            else:
                name, why = next(iter(figure_errors.items()))
                what = f"{len(figure_errors)} figures could not be drawn (first: {name}: {why})"
            print(f"error: {what}; the rest is in {out / 'report.md'}", file=sys.stderr)
        return 1
    return 0


def cmd_report(args) -> int:
    from harness.run.report import load_results, write_run

    run_dir = Path(args.run_dir)
    write_run(run_dir, load_results(run_dir), figures=True)
    print(f"rebuilt {run_dir / 'report.md'}")
    return 0


RUN_OWN_FILES = ("results.json", "results.csv", "report.md", "grid.toml", ".lock")


def output_file(path: str, flag: str, inputs=()) -> Path:
    """A file a command will write: its folder must exist (a missing one is not made up silently), and it may
    not be a directory, a device or FIFO, one of the command's `inputs`, or a run folder's own file (all of which
    the atomic rename would replace without a word)."""
    if not path.strip():
        raise HarnessError(f"{flag} is empty; give a file path")
    out = Path(path)
    if out.is_dir():
        raise HarnessError(f"{flag} {path!r} is a directory; give a file path")
    if out.exists() and not out.is_file():
        raise HarnessError(f"{flag} {path!r} is not a regular file (a device, FIFO or socket); give a file path")
    if out.parent.exists() and not out.parent.is_dir():
        raise HarnessError(f"{flag} {path!r}: {str(out.parent)!r} is a file, not a folder; give another path")
    if not out.parent.is_dir():
        raise HarnessError(f"{flag} {path!r}: folder {str(out.parent)!r} does not exist; create it or give another path")
    if any(out.resolve() == Path(p).resolve() for p in inputs if p):
        raise HarnessError(f"{flag} {path!r} is also what this command reads; write to another file")
    if out.name in RUN_OWN_FILES and (out.parent / "results.json").is_file():
        raise HarnessError(f"{flag} {path!r} is the {out.name} of the run in {str(out.parent)!r}; write to another file")
    return out


def cmd_compare(args) -> int:
    from harness.core.jsonio import write_atomic
    from harness.run.compare import comparability, compare_runs
    from harness.run.report import load_results

    runs = [load_results(Path(d)) for d in (args.run_a, args.run_b)]
    out = output_file(args.out, "--out") if args.out is not None else Path(args.run_b) / f"compare-vs-{Path(args.run_a).name}.md"
    text = compare_runs(runs[0], runs[1], args.run_a, args.run_b)
    why = comparability(runs[0], runs[1])
    if why:  # still compared (the same grid on two corpora is a fair question), but never without a word
        head, _, rest = text.partition("\n")
        text = f"{head}\n\n**Warning:** {why}.\n{rest}"
        print(f"warning: {why}", file=sys.stderr)
    write_atomic(out, text)
    print(text)
    print(f"written: {out}")
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


def fit_full(args):
    """The corpus and the model of --order/--smoothing fitted on the training data, for score and sample.

    The training data is the whole corpus (--split none, the lecture's setting), the train part
    of the seeded split (--split seeded, as `run` splits with the same --seed), or the TRAIN
    file of --split files:TRAIN,DEV,TEST. The model is fitted through `fit_configuration`, the
    run's own fit path; auto (k) and interp (its weights) are tuned on the split's dev part, as
    `run` tunes them, so they need a split. Returns (corpus, model, the training items).
    """
    from harness.data.corpus import expand_corpus
    from harness.core.memory import memory_budget, parse_bytes
    from harness.data.ngrams import windows_for
    from harness.data.splits import FILES_PREFIX, load_split_files, split_corpus
    from harness.models.families import SMOOTHED_METHODS, TUNED_ON_DEV, FitData, count_point, fit_configuration

    order = validate_order(args.order)
    spec = parse_smoothing(args.smoothing)
    validate_seed(args.seed)
    if spec in TUNED_ON_DEV and args.split == "none":
        raise HarnessError(f"--smoothing {spec} tunes on a dev split, which --split none has none of; give --split seeded "
                           "or files:TRAIN,DEV,TEST, or a number k >= 0, kn or wb")
    device = resolve_device(args.device)
    dev = None
    if args.split.startswith(FILES_PREFIX):
        corpus, splits, _ = load_split_files(args.split, device)
        train, dev = splits["train"], splits["dev"]
    elif args.split in ("none", "seeded"):
        corpus = load_corpus(args.corpus, device, casefold=args.casefold, min_char_count=args.min_char_count)
        if args.split == "none":
            train = corpus
        else:
            splits = split_corpus(corpus, args.seed)
            train, dev = splits["train"], splits["dev"]
    else:
        raise HarnessError(f"--split {args.split!r} is unknown; use none, seeded or files:TRAIN,DEV,TEST")
    budget = memory_budget(device, parse_bytes(args.max_memory))
    if args.expand:
        if spec in SMOOTHED_METHODS:
            raise HarnessError("--expand counts add-k models only; kn/wb on the weighted corpus see the same data")
        train = expand_corpus(train, budget)
    # sparse where the dense table is past its budget; dev only for what tunes on it (k, interp's weights), as run does
    dev_windows = windows_for(dev, order, budget) if spec in TUNED_ON_DEV else None
    data = FitData(windows_for(train, order, budget), dev_windows, device, DEFAULTS)
    return corpus, fit_configuration(count_point(order, spec), data).model, train.items


def model_for(args):
    """(vocab, device, model, said, train items): the --model or --arpa file loaded, else fitted by fit_full;
    `said` is the line naming the loaded file (None when fitted), printed on stderr once the input is checked;
    the training items only where the model was fitted here (None for a loaded one)."""
    from harness.run.models_io import load_arpa_model, load_saved

    if args.model and args.arpa:
        raise HarnessError("give --model or --arpa, not both")
    if not (args.model or args.arpa):
        corpus, model, train_items = fit_full(args)
        return corpus.vocab, corpus.device, model, None, train_items
    device = resolve_device(args.device)
    if args.model:
        loaded = load_saved(args.model, validate_order(args.order), parse_smoothing(args.smoothing), device)
    else:
        loaded = load_arpa_model(args.arpa, device)
    return loaded.vocab, device, loaded.model, loaded.description, None


def say(line: str | None) -> None:
    if line:
        print(line, file=sys.stderr)


def cmd_score(args) -> int:
    from harness.core.memory import parse_bytes
    from harness.data.corpus import pack, read_items, unique_with_counts
    from harness.evaluation.evaluate import corpus_nll, item_nll, perplexity

    if not args.words and not args.file:
        raise HarnessError("score needs words to score or --file FILE")
    if args.per_item and not args.file:
        raise HarnessError("--per-item writes the items of --file; give --file FILE too")
    per_item = output_file(args.per_item, "--per-item", inputs=[args.file]) if args.per_item is not None else None
    if args.file:  # before any model is read or fitted
        check_score_file(args.file)
        if not args.per_item:
            parse_bytes(args.max_memory)
    vocab, device, model, said, _ = model_for(args)
    order = model.order
    for word in args.words:
        if not word.strip():
            raise HarnessError("score got an empty word; give words of at least one character")
        vocab.encode(word)  # a character outside the vocabulary is a clear error
    if not args.file:
        say(said)
    for word in args.words:
        one = pack(word, [word], None, device, vocab=vocab)
        lp = model.token_log_probs(one).tolist()
        tokens = ["."] * (order - 1) + list(word) + ["."]
        print(f"{word}:")
        for j, logp in enumerate(lp):
            ctx = "".join(tokens[j:j + order - 1])
            print(f"  {ctx + '→' + tokens[j + order - 1]:>{order + 3}}  log p = {logp:.6f}")
        nll = corpus_nll(model, one)
        print(f"  mean NLL {nll:.6f} nats/char over {len(lp)} predictions")
    if args.file:
        if not args.per_item:  # chunk by chunk within --max-memory, never every window at once
            from harness.run.models_io import score_file

            line = score_file(model, args.file, vocab, device, args.max_memory)
            say(said)
            print(line)
            return 0
        items, copies = unique_with_counts(read_items(Path(args.file)))
        for item in items:
            vocab.encode(item)
        scored = pack(args.file, items, copies, device, vocab=vocab)
        say(said)
        nll = corpus_nll(model, scored)
        print(f"{args.file}: mean NLL {nll:.6f} nats/char, perplexity {perplexity(nll):.4f}, "
              f"{scored.num_items():,} items ({scored.num_unique:,} unique), {scored.num_predictions():,} predicted characters")
        if args.per_item:
            import pandas as pd

            nats, n = item_nll(model, scored)
            frame = pd.DataFrame({"item": list(items), "copies": scored.item_weights().tolist(),
                                  "predicted_chars": n.tolist(), "nll_nats": nats.tolist(),
                                  "mean_nll": (nats / n).tolist()})
            from harness.core.jsonio import write_atomic

            write_atomic(per_item, frame.to_csv(index=False))
            print(f"per-item scores: {per_item}")
    return 0


def cmd_sample(args) -> int:
    from harness.evaluation.sampling import SamplingControls, sample_lecture, sample_names

    from harness.run.config import MAX_SAMPLES

    if not 0 <= args.num <= MAX_SAMPLES:
        raise HarnessError(f"--num must be from 0 to {MAX_SAMPLES:,}, got {args.num}")
    controls = SamplingControls(temperature=args.temperature, top_k=args.top_k, prefix=args.prefix,
                                exclude_train=args.exclude_train)
    if args.lecture and controls != SamplingControls():
        raise HarnessError("--lecture draws exactly as the lecture does; it takes no --temperature, --top-k, --prefix "
                           "or --exclude-train")
    vocab, device, model, said, train_items = model_for(args)
    if controls.exclude_train and train_items is None:
        raise HarnessError("--exclude-train needs the training names: fit from --corpus/--split instead of --model/--arpa")
    say(said)
    generator = torch.Generator(device=device).manual_seed(args.seed)
    if args.lecture:
        names = sample_lecture(model, vocab, args.num, generator)
    else:
        names = sample_names(model, vocab, args.num, generator, controls, train_items or ())
    for name in names:
        print(name)  # the name alone: the end token is the line's end
    return 0


class UsageError(Exception):
    """A command line argparse cannot parse; printed as one line like every other error."""


class OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are one line (`error: ...` and where help is) instead of a usage block."""

    def error(self, message):
        raise UsageError(f"{message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m harness", description="makemore-harness: n-gram name models, evaluated and benchmarked")
    sub = parser.add_subparsers(dest="command", required=True)
    add_run_parser(sub)
    sub.add_parser("corpora", help="list the built-in corpora and their sizes")
    p = sub.add_parser("report", help="rebuild report.md and figures of a run from its results.json")
    p.add_argument("run_dir")
    p = sub.add_parser("compare", help="differences between two runs, configuration by configuration")
    p.add_argument("run_a")
    p.add_argument("run_b")
    p.add_argument("--out", default=None, help="markdown file to write (default RUN_B/compare-vs-<RUN_A>.md)")
    p = sub.add_parser("score", help="per-character log-probabilities and mean NLL of words")
    add_model_arguments(p)
    p.add_argument("words", nargs="*", help="words to score")
    p.add_argument("--file", default=None, help="score every line of a file: mean NLL per predicted character, perplexity, counts")
    p.add_argument("--per-item", default=None, metavar="OUT.csv", help="with --file: write each item's NLL and length")
    p = sub.add_parser("sample", help="sample names from a count model trained on the whole corpus")
    add_model_arguments(p)
    p.add_argument("--num", type=int, default=20, help="names to sample (default %(default)s)")
    p.add_argument("--lecture", action="store_true", help="draw one name at a time exactly as the lecture does")
    p.add_argument("--temperature", type=float, default=1.0, help="sharpen (< 1) or flatten (> 1) the next-character distribution (default 1)")
    p.add_argument("--top-k", type=int, default=0, help="draw among the k most likely next characters only (default 0: all)")
    p.add_argument("--prefix", default="", help="every name starts with this text")
    p.add_argument("--exclude-train", action="store_true", help="leave out names of the training data, drawing until --num new ones exist")
    p = sub.add_parser("export", help="write a run's saved count model as an ARPA file (KenLM, SRILM, decoders)")
    p.add_argument("run_dir", help="a finished run's folder")
    p.add_argument("--order", type=int, required=True, help="the configuration's order")
    p.add_argument("--smoothing", required=True, help="the configuration's smoothing: kn, wb, interp, auto or a number k > 0")
    p.add_argument("--arpa", required=True, metavar="OUT.arpa", help="the ARPA file to write")
    p = sub.add_parser("bench", help="benchmark the loss backends against F.cross_entropy")
    add_bench_arguments(p)
    return parser


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help and --version end here, having printed
        return exc.code if isinstance(exc.code, int) else 0
    return guarded(lambda: run_command(args))


PATH_OPTIONS = ("arpa", "model", "file", "per_item", "config", "resume")  # '' would read as "not given"


def run_command(args) -> int:
    for name in PATH_OPTIONS:
        value = getattr(args, name, None)
        if isinstance(value, str) and not value.strip():
            raise HarnessError(f"--{name.replace('_', '-')} is empty; give a path, or leave the option out")
    if args.command == "run":
        return cmd_run(args)
    if args.command == "corpora":
        return cmd_corpora(args)
    if args.command == "report":
        return cmd_report(args)
    if args.command == "compare":
        return cmd_compare(args)
    if args.command == "score":
        return cmd_score(args)
    if args.command == "sample":
        return cmd_sample(args)
    if args.command == "export":
        from harness.run.models_io import export_arpa

        arpa = output_file(args.arpa, "--arpa")
        print(export_arpa(args.run_dir, validate_order(args.order), parse_smoothing(args.smoothing), arpa))
        return 0
    if args.command == "bench":
        from harness.bench.main import bench_main

        return bench_main(args)
    raise AssertionError(f"unhandled command {args.command}")
