"""An ARPA file's text as numpy tables over harness ids: the reading half of harness.models.arpa, numpy only.

harness.models.arpa (its docstring gives the format and the convention gap with KenLM) wraps
these tables as a torch BackoffModel; `score --arpa FILE --file BIG` (harness.cli_fast) compiles
them straight to the one-lookup rows (harness.models.rows_numpy) without importing torch.

The tables are those of harness.models.backoff.BackoffModel: per order k, sorted unique k-gram
ids (base V, oldest token most significant; a leading 0 is `<s>`, a final 0 `</s>`), their
log10 probabilities and log10 backoff weights (0 at the top order and after `</s>`); id 0 at
order 1 holds `</s>`'s probability and `<s>`'s backoff. N-grams the harness convention never
reaches (`<unk>` anywhere, `<s>` after the first token, `</s>` before the last) are dropped.
"""
from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.core.constants import BOUNDARY_CHAR
from harness.core.errors import HarnessError, input_file_problem

START, END, UNKNOWN = "<s>", "</s>", "<unk>"


@dataclass(frozen=True)
class ArpaTables:
    """An ARPA file read (module docstring): order n, the vocabulary's tokens (boundary "." first), per-order arrays.

    keys[k-1]: (M_k,) int64 sorted unique ids; log10_probs[k-1], log10_bows[k-1]: (M_k,) float64.
    """

    order: int
    itos: tuple[str, ...]
    keys: list[np.ndarray]
    log10_probs: list[np.ndarray]
    log10_bows: list[np.ndarray]

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def num_ngrams(self) -> list[int]:
        return [len(k) for k in self.keys]


def description(path, order: int, ngrams: int, characters: int) -> str:
    """The line `score`/`sample --arpa FILE` print on stderr, naming the file."""
    return f"model: ARPA file {path} (order {order}, {ngrams:,} n-grams, {characters} characters), not refitted"


def _missing(path: Path) -> HarnessError:
    problem = input_file_problem(path) or "cannot be read"
    return HarnessError(f"ARPA file {str(path)!r} {problem}; give the path of an ARPA file (e.g. lmplz's output)")


def _unreadable(path: Path, exc: Exception) -> HarnessError:
    return HarnessError(f"ARPA file {str(path)!r} cannot be read as UTF-8 text ({exc}); give an ARPA text file")


def _read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise _missing(path)
    try:
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        return data.decode("utf-8").splitlines()
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise _unreadable(path, exc) from None


def _header(lines: list[str], where: str) -> tuple[list[int], int]:
    """The declared n-gram counts (order 1 first) and the index of the line after the header."""
    try:
        i = next(i for i, line in enumerate(lines) if line.strip() == "\\data\\")
    except StopIteration:
        raise HarnessError(f"{where} has no \\data\\ line; is it an ARPA file?") from None
    counts = {}
    i += 1
    while i < len(lines) and lines[i].strip().startswith("ngram "):
        try:
            order, count = lines[i].strip()[len("ngram "):].split("=")
            counts[int(order)] = int(count)
            if counts[int(order)] < 0:
                raise ValueError
        except ValueError:
            raise HarnessError(f"{where} line {i + 1}: {lines[i].strip()!r} is not 'ngram K=COUNT'") from None
        i += 1
    if not counts or sorted(counts) != list(range(1, len(counts) + 1)):
        raise HarnessError(f"{where}: the \\data\\ header declares orders {sorted(counts)}; an ARPA file declares 'ngram K=COUNT' for K = 1..N")
    return [counts[k] for k in range(1, len(counts) + 1)], i


def _section(lines: list[str], i: int, k: int, count: int, where: str, top: bool) -> tuple[list[list[str]], int]:
    """The split lines of the k-grams section, checked for count and shape (`top`: the highest order, whose
    lines have no backoff weight)."""
    while i < len(lines) and not lines[i].strip():
        i += 1
    if i >= len(lines) or lines[i].strip() != f"\\{k}-grams:":
        found = "the end of the file" if i >= len(lines) else repr(lines[i].strip()[:40])
        raise HarnessError(f"{where}: expected the \\{k}-grams: section, found {found}; the file is truncated or malformed")
    start = i + 1
    body = lines[start:start + count]
    rows = [line.split() for line in body]
    lengths = set(map(len, rows))
    longest = k + 1 if top else k + 2
    if len(rows) < count or not lengths <= set(range(k + 1, longest + 1)):
        j = next((j for j, r in enumerate(rows) if not k + 1 <= len(r) <= longest), len(rows))
        shown = "the end of the file" if j >= len(body) else repr(body[j][:60])
        backoff = "" if top else ", optional backoff"
        raise HarnessError(f"{where} line {start + j + 1}: expected one of the {count} {k}-grams declared "
                           f"(log10 prob, {k} tokens{backoff}), found {shown}; the file is truncated or malformed")
    return rows, start + count


def _floats(values: list[str], where: str, what: str) -> np.ndarray:
    try:
        numbers = np.array(values, dtype=np.float64)
    except ValueError:
        bad = next(v for v in values if not _is_float(v))
        raise HarnessError(f"{where}: {what} {bad!r} is not a number; the file is malformed") from None
    if not np.isfinite(numbers).all():  # nan, inf, or 1e309 read as inf: no toolkit writes them (never is -99)
        bad = values[int(np.flatnonzero(~np.isfinite(numbers))[0])]
        raise HarnessError(f"{where}: {what} {bad!r} is not a finite number; the file is malformed")
    return numbers


def _is_float(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _leading_lines(path: Path, last) -> list[str]:
    """A file's lines before the first whose stripped text satisfies `last` (all where none does),
    read line by line: the header and unigrams of a large file without the rest."""
    if not path.is_file():
        raise _missing(path)
    opener = gzip.open if path.suffix == ".gz" else open
    lines = []
    try:
        with opener(path, "rt", encoding="utf-8") as handle:
            for line in handle:
                if last(line.strip()):
                    break
                lines.append(line.rstrip("\n"))
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise _unreadable(path, exc) from None
    return lines


def arpa_order(path) -> int:
    """The order an ARPA file's \\data\\ header declares, reading only the header."""
    path = Path(path)
    return len(_header(_leading_lines(path, lambda line: line.endswith("-grams:")), f"ARPA file {str(path)!r}")[0])


def arpa_characters(path) -> tuple[str, ...]:
    """The vocabulary's tokens (boundary "." first, then the file's characters sorted) of an ARPA file,
    reading only its header and unigrams; their errors are read_arpa_tables'."""
    path = Path(path)
    where = f"ARPA file {str(path)!r}"
    lines = _leading_lines(path, lambda line: line in ("\\2-grams:", "\\end\\"))
    declared, i = _header(lines, where)
    rows, _ = _section(lines, i, 1, declared[0], where, top=len(declared) == 1)
    return _characters([r[1] for r in rows], None, where)


def _characters(unigrams: list[str], itos, where: str) -> tuple[str, ...]:
    """The vocabulary's tokens: built from the file's character unigrams, or `itos`, which must hold exactly them."""
    chars = [t for t in unigrams if t not in (START, END, UNKNOWN)]
    for t in chars:
        if len(t) != 1 or t == BOUNDARY_CHAR:
            raise HarnessError(f"{where}: token {t!r} is not a single character other than {BOUNDARY_CHAR!r}; "
                               "the harness scores character-level models (tokens: characters, <s>, </s>, <unk>)")
    for special in (START, END):
        if special not in unigrams:
            raise HarnessError(f"{where} has no {special} unigram; an ARPA file for sentences lists both <s> and </s>")
    if len(set(unigrams)) != len(unigrams):
        raise HarnessError(f"{where} lists a unigram twice; the file is malformed")
    if itos is None:
        return (BOUNDARY_CHAR, *sorted(set(chars)))  # Vocab.from_chars
    if set(itos[1:]) != set(chars):
        extra, missing = sorted(set(chars) - set(itos[1:])), sorted(set(itos[1:]) - set(chars))
        raise HarnessError(f"{where}: its characters differ from the given vocabulary (file only: {extra[:10]}, "
                           f"vocabulary only: {missing[:10]}); read it with vocab=None or fit on the same characters")
    return tuple(itos)


def read_arpa_tables(path, itos=None, order: int | None = None) -> ArpaTables:
    """An ARPA file (e.g. lmplz's, plain or .gz) as numpy tables over harness ids (module docstring).

    itos: None builds the vocabulary from the file's character unigrams (boundary "." first,
    characters sorted, as Vocab.from_chars); given tokens must be exactly the file's characters.
    order: when given, the file's order must equal it. Malformed or truncated files raise HarnessError.
    """
    path = Path(path)
    where = f"ARPA file {str(path)!r}"
    lines = _read_lines(path)
    declared, i = _header(lines, where)
    n = len(declared)
    if order is not None and order != n:
        raise HarnessError(f"{where} is an order-{n} model, not order {order}; pass --order {n} or another file")
    sections = []
    for k, count in enumerate(declared, start=1):
        rows, i = _section(lines, i, k, count, where, top=k == n)
        sections.append(rows)
    rest = next((line.strip() for line in lines[i:] if line.strip()), None)
    if rest is None:
        raise HarnessError(f"{where} has no \\end\\ line after the {n}-grams; the file is truncated")
    if rest != "\\end\\":  # more lines than the header declares, or a section of an order it does not declare
        raise HarnessError(f"{where}: after the {declared[-1]:,} {n}-grams the header declares, found {rest[:40]!r} where "
                           "\\end\\ belongs; the \\data\\ counts are wrong or the file is malformed")
    itos = _characters([r[1] for r in sections[0]], itos, where)
    V = len(itos)
    # token codes: characters by id, then the specials, which only some positions allow
    code = {ch: i for i, ch in enumerate(itos) if i}
    code.update({START: -1, END: -2, UNKNOWN: -3})
    keys, probs, bows = [], [], []
    for k, rows in enumerate(sections, start=1):
        try:
            tokens = np.array([code[t] for r in rows for t in r[1:k + 1]], dtype=np.int64).reshape(len(rows), k)
        except KeyError as exc:
            raise HarnessError(f"{where}: a {k}-gram uses the token {exc.args[0]!r}, which is not a unigram; the file is malformed") from None
        log10_prob = _floats([r[0] for r in rows], where, f"a {k}-gram's log10 probability")
        log10_bow = _floats([r[k + 1] if len(r) > k + 1 and k < n else "0" for r in rows], where, f"a {k}-gram's backoff weight")
        if (log10_prob > 0).any():
            raise HarnessError(f"{where}: a {k}-gram has a positive log10 probability; the file is malformed")
        keep = (tokens != -3).all(1)
        if k == 1:
            start_bow = log10_bow[tokens[:, 0] == -1]
            keep &= tokens[:, 0] != -1  # <s> is never predicted; its backoff weight goes to id 0
        else:
            keep &= (tokens[:, 1:] != -1).all(1) & (tokens[:, :-1] != -2).all(1)
        tokens, log10_prob, log10_bow = tokens[keep], log10_prob[keep], log10_bow[keep]
        ends = tokens[:, -1] == -2
        log10_bow[ends] = 0.0  # nothing is predicted after </s>
        tokens = np.where(tokens < 0, 0, tokens)  # <s> first, </s> last: both the boundary id
        ids = np.zeros(len(tokens), dtype=np.int64)
        for j in range(k):
            ids = ids * V + tokens[:, j]
        if k == 1:
            log10_bow[ids == 0] = start_bow[0]
        order_ = np.argsort(ids, kind="stable")
        ids, log10_prob, log10_bow = ids[order_], log10_prob[order_], log10_bow[order_]
        if len(ids) > 1 and (ids[1:] == ids[:-1]).any():
            raise HarnessError(f"{where} lists a {k}-gram twice; the file is malformed")
        keys.append(ids)
        probs.append(log10_prob)
        bows.append(log10_bow)
    return ArpaTables(n, itos, keys, probs, bows)
