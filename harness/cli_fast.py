"""`python -m harness score --arpa FILE --file BIG` without importing torch, and how every command ends.

Importing torch takes 2-7 s on a loaded machine: most of a process that scores a large file
under an ARPA model, which needs only numpy. harness/__main__.py asks `fast_main` first; for
that one command shape (`score`, `--arpa`, `--file`, optionally `--max-memory` and `--device
auto|cpu`, nothing else) it reads the file with harness.models.arpa_text, compiles the
one-lookup rows with harness.models.rows_numpy and streams the file through
harness.data.stream, printing what harness.cli's `score` prints: the same line from the same
arrays summed in the same order, so the same NLL to the bit. Every other command line (and an
ARPA file past the rows' table limits) returns None here and goes to harness.cli.main. The
numbers never depend on the device, so `--device auto` scores on the host here.

`guarded` is how every command ends, here and in harness.cli: a HarnessError is one line on
stderr and exit status 2.
"""
from __future__ import annotations

import argparse
import errno
import os
import sys
from pathlib import Path
from typing import Callable

from harness.core.errors import HarnessError, input_file_problem


def _drop_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush cannot fail again with a traceback."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def guarded(command: Callable[[], int | None]) -> int | None:
    """Run a command and turn what users cause into an exit status: HarnessError 2, Ctrl-C 130,
    a closed pipe 0, a full disk 2; the message is one line on stderr. Bugs stay tracebacks."""
    try:
        code = command()
        sys.stdout.flush()  # a full stdout fails here, inside the handlers below, not at exit
        return code
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `... | head`: the reader left; nothing to report
        _drop_stdout()
        return 0
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EIO, errno.EDQUOT):
            raise
        _drop_stdout()
        print(f"error: cannot write the output ({exc.strerror}); free some space or send it elsewhere", file=sys.stderr)
        return 2


def check_score_file(path: str) -> Path:
    """`score --file PATH`, checked before any model is read or fitted."""
    file = Path(path)
    problem = input_file_problem(file)
    if problem:
        raise HarnessError(f"--file {path!r} {problem}; give a text file, one item per line")
    return file


def file_score_line(path, scored) -> str:
    """What `score --file` prints for a streamed FileScore (harness.data.stream); a file without items is an error."""
    if not scored.items:
        raise HarnessError(f"--file {str(path)!r} holds no items (it is empty or only blank lines); give a text file, one item per line")
    from harness.data.stream import perplexity

    nll = scored.mean_nll
    return (f"{path}: mean NLL {nll:.6f} nats/char, perplexity {perplexity(nll):.4f}, "
            f"{scored.items:,} items, {scored.predictions:,} predicted characters")


class _OtherShape(Exception):
    """The command line is not the one this module serves."""


class _ShapeParser(argparse.ArgumentParser):
    def error(self, message):
        raise _OtherShape(message)


def _parse(argv: list[str]) -> argparse.Namespace | None:
    """The fast command shape's arguments, or None for any other command line (harness.cli parses those).

    Defaults stay None: the full parser's own default of each flag ("auto") means the same here.
    """
    if not argv or argv[0] != "score":
        return None
    parser = _ShapeParser(prog="python -m harness score", add_help=False, allow_abbrev=False)
    for flag in ("--arpa", "--file", "--max-memory", "--device"):
        parser.add_argument(flag)
    try:
        args = parser.parse_args(argv[1:])
    except _OtherShape:
        return None
    if not args.arpa or not args.file or args.device not in (None, "auto", "cpu"):
        return None  # harness.cli says what is wrong with those
    return args


def _score(args: argparse.Namespace) -> int | None:
    from harness.core.memory import parse_bytes
    from harness.data.stream import DEFAULT_STREAM_BYTES, score_stream
    from harness.models.arpa_text import description, read_arpa_tables
    from harness.models.rows_numpy import HostRows, compile_row_tables

    file = check_score_file(args.file)
    budget = parse_bytes(args.max_memory) or DEFAULT_STREAM_BYTES
    tables = read_arpa_tables(args.arpa)
    compiled = compile_row_tables(tables.order, tables.vocab_size, tables.keys, tables.log10_probs, tables.log10_bows)
    if compiled is None:  # past the rows' limits: harness.cli scores it by the per-order lookups
        return None
    rows = HostRows(tables.order, tables.vocab_size, *compiled)
    scored = score_stream(rows.stream_log10_total, file, tables.itos, budget)
    line = file_score_line(args.file, scored)
    print(description(args.arpa, tables.order, sum(tables.num_ngrams()), tables.vocab_size - 1), file=sys.stderr)
    print(line)
    return 0


def fast_main(argv: list[str]) -> int | None:
    """The exit status of `score --arpa FILE --file BIG` run without torch, or None: not this command, run harness.cli.main."""
    args = _parse(argv)
    return None if args is None else guarded(lambda: _score(args))
