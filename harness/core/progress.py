"""The one place below the CLI that writes progress: tqdm bars on a terminal, plain lines otherwise."""
from __future__ import annotations

import sys
from contextlib import contextmanager

from tqdm import tqdm


class Progress:
    """Progress of a run: `line` for events, `bar` for a loop (configurations, training steps).

    quiet: nothing at all. On a terminal, bars redraw in place; when stdout is a file or a
    pipe, only the lines are written, one per event, so logs stay readable.
    """

    def __init__(self, quiet: bool = False, stream=None):
        self.quiet = quiet
        self.stream = stream or sys.stdout
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def line(self, message: str) -> None:
        if self.quiet:
            return
        if self.tty:
            tqdm.write(message, file=self.stream)
        else:
            print(message, file=self.stream, flush=True)

    @contextmanager
    def bar(self, total: int, desc: str):
        """Yields a callable to advance the bar by one; a no-op off a terminal or when quiet."""
        if self.quiet or not self.tty:
            yield lambda *_: None
            return
        with tqdm(total=total, desc=desc, leave=False, file=self.stream, dynamic_ncols=True) as bar:
            yield lambda *_: bar.update(1)
