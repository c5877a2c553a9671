"""A text file of items read in chunks of whole lines as vocabulary ids, and its score summed chunk by chunk.

numpy only, never torch: `score --arpa FILE --file BIG` (harness.cli_fast) runs on this module,
harness.models.arpa_text and harness.models.rows_numpy without importing torch, whose import is
seconds of a short process's life. harness.models.backoff.score_file_streamed reads the same
chunks for every model (and sums a RowsModel's through score_stream too), so both paths sum the
same numbers in the same order.

Every character and each line's end token (id 0) is predicted (the harness convention, which is
KenLM query's for the same file); blank lines and carriage returns are dropped.
"""
from __future__ import annotations

import codecs
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from harness.core.constants import LN10
from harness.core.errors import HarnessError, input_file_problem

BYTES_PER_PREDICTION = 200  # a chunk's token stream, context ids and the per-order lookup temporaries
DEFAULT_STREAM_BYTES = 256 * 1024**2


@dataclass(frozen=True)
class FileScore:
    """The summed NLL (nats) of a file's predicted tokens, their number (characters + one end per item), its items."""

    nll_nats: float
    predictions: int
    items: int

    @property
    def mean_nll(self) -> float:
        return self.nll_nats / self.predictions if self.predictions else float("nan")


def perplexity(nll_nats: float) -> float:
    """exp(NLL); inf stays inf."""
    try:
        return math.exp(nll_nats)
    except OverflowError:
        return float("inf")


@dataclass(frozen=True)
class CodeTable:
    """How encode_lines maps a file's characters to ids (code_table builds it)."""

    table: bytes | np.ndarray  # ASCII: a bytes.translate table; else an int32 array over code points
    ascii_only: bool
    carriage_return: int  # sentinel ids: V and V + 1, above every id
    unknown: int
    itos: tuple = ()  # the vocabulary's tokens, named in an error


def code_table(itos) -> CodeTable:
    """The CodeTable of a vocabulary's tokens (the boundary first, as Vocab.itos).

    An ASCII vocabulary (V <= 128, so the sentinels fit a byte) gets a 256-byte bytes.translate
    table: a 1.3 MB chunk in about 1 ms, a fifth of a numpy gather. Newline -> 0.
    """
    V = len(itos)
    points = [ord(ch) for ch in itos[1:]]
    ascii_only = max(points, default=0) < 128
    table = np.full(256 if ascii_only else 0x110000, V + 1, dtype=np.uint8 if ascii_only else np.int32)
    table[points] = np.arange(1, len(points) + 1)
    table[ord("\n")] = 0
    table[ord("\r")] = V
    return CodeTable(table.tobytes() if ascii_only else table, ascii_only, V, V + 1, tuple(itos))


def _not_utf8(path, line: int, byte: int, reason: str) -> HarnessError:
    return HarnessError(f"{str(path)!r} line {line:,} is not UTF-8 (byte 0x{byte:02x}: {reason}; a Latin-1 or binary file?); "
                        "re-encode it, e.g. iconv -f latin1 -t UTF-8")


def _utf8_at(block: bytes, at: int) -> str | None:
    """The character whose UTF-8 encoding starts at block[at], or None where no valid one does."""
    for width in (2, 3, 4):
        try:
            return block[at:at + width].decode("utf-8")
        except UnicodeDecodeError:
            continue
    return None


def encode_lines(block: bytes, codes: CodeTable, path, lines_before: int = 0) -> np.ndarray:
    """int32 ids of whole lines, each ended by 0, blank lines and carriage returns dropped.

    The common case (no carriage return, no blank line) costs one translation and one max.
    `lines_before`: the file's lines ahead of `block`, for the line number an error names.
    """
    if codes.ascii_only:
        ids = np.frombuffer(block.translate(codes.table), dtype=np.uint8)
    else:
        try:
            points = np.frombuffer(block.decode("utf-8").encode("utf-32-le"), dtype=np.uint32)
        except UnicodeDecodeError as exc:
            line = lines_before + block.count(b"\n", 0, exc.start) + 1
            raise _not_utf8(path, line, block[exc.start], exc.reason) from None
        ids = codes.table[points]
    if len(ids) and ids.max() >= codes.carriage_return:
        if (ids == codes.unknown).any():
            at = int(np.argmax(ids == codes.unknown))
            if codes.ascii_only:
                line = lines_before + block.count(b"\n", 0, at) + 1
                shown = chr(block[at]) if block[at] < 128 else _utf8_at(block, at)
                if shown is None:
                    raise _not_utf8(path, line, block[at], "not the start of a UTF-8 character")
            else:
                line = lines_before + int(np.count_nonzero(points[:at] == ord("\n"))) + 1
                shown = chr(int(points[at]))
            raise HarnessError(f"{str(path)!r} line {line:,} contains {shown!r}, not in the model's vocabulary "
                               f"({''.join(codes.itos[1:])[:80]}); score files made of its characters only")
        ids = ids[ids != codes.carriage_return]
    if len(ids) and ids[-1] != 0:
        ids = np.append(ids, 0)  # a last line without its newline
    if len(ids) and (ids[0] == 0 or b"\n\n" in block or b"\n\r\n" in block or b"\r\n\r" in block):
        previous = np.concatenate([[0], ids[:-1]])
        ids = ids[(ids != 0) | (previous != 0)]
    return ids.astype(np.int32)


def line_chunks(path, itos, max_bytes: int = DEFAULT_STREAM_BYTES) -> Iterator[np.ndarray]:
    """The int32 ids of a text file, chunk by chunk of whole lines (each ended by 0), within `max_bytes`.

    Only one chunk is held at a time: about max_bytes / BYTES_PER_PREDICTION tokens. A missing
    file, a character outside `itos` or (non-ASCII vocabularies) bytes that are not UTF-8 raise HarnessError.
    """
    path = Path(path)
    problem = input_file_problem(path)
    if problem:
        raise HarnessError(f"file to score {str(path)!r} {problem}; give a text file, one item per line")
    codes = code_table(itos)
    chunk_bytes = max(1 << 12, max_bytes // BYTES_PER_PREDICTION)
    with path.open("rb") as handle:
        rest = handle.read(len(codecs.BOM_UTF8))
        rest = rest.removeprefix(codecs.BOM_UTF8)  # a byte-order mark (Windows editors) is no character, as in corpora
        lines_before = 0
        while True:
            data = handle.read(chunk_bytes)
            block = rest + data
            cut = block.rfind(b"\n") + 1 if data else len(block)
            block, rest = block[:cut], block[cut:]
            ids = encode_lines(block, codes, path, lines_before) if block else np.zeros(0, dtype=np.int32)
            lines_before += block.count(b"\n")
            if len(ids):
                yield ids
            if not data:
                return


def score_stream(log10_total: Callable[[np.ndarray], float], path, itos, max_bytes: int = DEFAULT_STREAM_BYTES) -> FileScore:
    """Score a text file on the host: `log10_total(ids)` is the summed log10 P of a chunk's tokens
    (harness.models.rows_numpy.HostRows.stream_log10_total)."""
    total, predictions, items = 0.0, 0, 0
    for ids in line_chunks(path, itos, max_bytes):
        total += log10_total(ids)
        predictions += len(ids)
        items += int(np.count_nonzero(ids == 0))
    return FileScore(-LN10 * total, predictions, items)
