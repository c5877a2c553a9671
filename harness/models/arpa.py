"""ARPA files out and in: the n-gram exchange format of KenLM, SRILM and speech decoders.

    \\data\\
    ngram 1=29
    ngram 2=620

    \\1-grams:
    -99.0	<unk>	0.0
    -99.0	<s>	-2.9502418
    -1.3783141	</s>
    -1.3783141	y	-1.0465735
    ...
    \\2-grams:
    -1.1466931	y </s>
    ...
    \\end\\

Each line is a log10 probability, the n-gram's tokens separated by spaces and, below the top
order, a log10 backoff weight (harness.models.backoff gives the scoring rule). Tokens here are
single characters, `<s>`, `</s>` and `<unk>`.

The convention gap. KenLM scores a line `e m m a` as `<s> e m m a </s>`: it predicts every
character and `</s>`, never `<s>`, and the history of the first character is `<s>` alone. The
harness pads an order-n context with n-1 boundary tokens and predicts the same tokens, the end
token last. The two agree token for token when the harness context 0^j c1..cm (j >= 1) is read
as `<s> c1..cm` and a target 0 as `</s>`; that is how `write_arpa` lists a model (every n-gram
that starts with padding keeps one `<s>`, with the probability of the full padded context) and
how `read_arpa` maps a file back. So for any test file the harness NLL (nats per predicted
character, end token included) is -ln(10) * (sum of query's per-sentence log10 totals) / (number
of characters + number of lines). Written files give `<s>` and `<unk>` log10 probability -99
(never predicted: a harness model has no unknown token); n-grams an ARPA file holds that the
harness convention never reaches (`<unk>` anywhere, `<s>` after the first token, `</s>` before
the last) are dropped on reading, and a character the file does not know is an error when scoring.
"""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from harness.core.errors import HarnessError
from harness.data.corpus import BOUNDARY_CHAR, Vocab
from harness.models.backoff import BackoffModel, to_backoff

START, END, UNKNOWN = "<s>", "</s>", "<unk>"
NEVER_LOG10 = -99.0  # SRILM's log10 of "never": the probability of <s> and of <unk> in written files


# ---------------------------------------------------------------------------------------------
# writing


def _token_strings(vocab: Vocab) -> list[str]:
    for ch in vocab.itos[1:]:
        if len(ch) != 1 or ch.isspace():
            raise HarnessError(f"vocabulary token {ch!r} cannot be an ARPA token (ARPA separates tokens by "
                               "whitespace); drop or replace such characters in the corpus")
    return list(vocab.itos)


def _format(values: torch.Tensor) -> list[str]:
    return [repr(v) for v in values.cpu().tolist()]  # shortest text that reads back to the same float64


def write_arpa(model, path, vocab: Vocab) -> BackoffModel:
    """Write `model` (add-k, kn, wb, interp, or a BackoffModel) to `path` as an ARPA file; returns its backoff form.

    Probabilities are written with full float64 precision, so read_arpa gives back the same
    numbers. `vocab` is the model's vocabulary (vocab.size == model.vocab_size).
    """
    backoff = to_backoff(model)
    V, n = backoff.vocab_size, backoff.order
    if vocab.size != V:
        raise HarnessError(f"the vocabulary has {vocab.size} tokens but the model {V}; pass the vocabulary the model was fitted with")
    names = np.array(_token_strings(vocab), dtype=object)
    lines = ["\\data\\"]
    lines += [f"ngram {k}={int(keys.numel()) + (2 if k == 1 else 0)}" for k, keys in enumerate(backoff.keys, start=1)]
    for k, (keys, probs, bows) in enumerate(zip(backoff.keys, backoff.log10_probs, backoff.log10_bows), start=1):
        lines += ["", f"\\{k}-grams:"]
        x = keys.cpu().numpy()
        if k == 1:
            # id 0 holds </s>'s probability and <s>'s backoff weight
            lines.append(f"{NEVER_LOG10!r}\t{UNKNOWN}\t0.0")
            lines.append(f"{NEVER_LOG10!r}\t{START}\t{float(bows[0])!r}")
        columns = [names[(x // V ** (k - 1 - i)) % V] for i in range(k)]
        if k > 1:
            columns[0] = np.where(x < V ** (k - 1), START, columns[0])
        columns[-1] = np.where(x % V == 0, END, columns[-1])
        grams = columns[0].astype(object)
        for column in columns[1:]:
            grams = grams + " " + column
        p = _format(probs)
        if k == n:
            lines += [f"{a}\t{g}" for a, g in zip(p, grams)]
        else:
            b = _format(bows)
            ends = (x % V == 0).tolist()
            lines += [f"{a}\t{g}" if e else f"{a}\t{g}\t{w}" for a, g, w, e in zip(p, grams, b, ends)]
    lines += ["", "\\end\\", ""]
    Path(path).write_text("\n".join(lines), encoding="utf-8")
    return backoff


# ---------------------------------------------------------------------------------------------
# reading


def _read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise HarnessError(f"ARPA file {str(path)!r} does not exist; give the path of an ARPA file (e.g. lmplz's output)")
    try:
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        return data.decode("utf-8").splitlines()
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise HarnessError(f"ARPA file {str(path)!r} cannot be read as UTF-8 text ({exc}); give an ARPA text file") from None


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
        except ValueError:
            raise HarnessError(f"{where} line {i + 1}: {lines[i].strip()!r} is not 'ngram K=COUNT'") from None
        i += 1
    if not counts or sorted(counts) != list(range(1, len(counts) + 1)):
        raise HarnessError(f"{where}: the \\data\\ header declares orders {sorted(counts)}; an ARPA file declares 'ngram K=COUNT' for K = 1..N")
    return [counts[k] for k in range(1, len(counts) + 1)], i


def _section(lines: list[str], i: int, k: int, count: int, where: str) -> tuple[list[list[str]], int]:
    """The split lines of the k-grams section, checked for count and shape."""
    while i < len(lines) and not lines[i].strip():
        i += 1
    if i >= len(lines) or lines[i].strip() != f"\\{k}-grams:":
        found = "the end of the file" if i >= len(lines) else repr(lines[i].strip()[:40])
        raise HarnessError(f"{where}: expected the \\{k}-grams: section, found {found}; the file is truncated or malformed")
    start = i + 1
    body = lines[start:start + count]
    rows = [line.split() for line in body]
    bad = next((j for j, r in enumerate(rows) if not k + 1 <= len(r) <= k + 2), None)
    if len(rows) < count or bad is not None:
        j = len(rows) if bad is None else bad
        shown = "the end of the file" if j >= len(body) else repr(body[j][:60])
        raise HarnessError(f"{where} line {start + j + 1}: expected one of the {count} {k}-grams declared "
                           f"(log10 prob, {k} tokens, optional backoff), found {shown}; the file is truncated or malformed")
    return rows, start + count


def _floats(values: list[str], where: str, what: str) -> np.ndarray:
    try:
        return np.array(values, dtype=np.float64)
    except ValueError:
        bad = next(v for v in values if not _is_float(v))
        raise HarnessError(f"{where}: {what} {bad!r} is not a number; the file is malformed") from None


def _is_float(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def arpa_order(path) -> int:
    """The order an ARPA file's \\data\\ header declares, reading only the header."""
    path = Path(path)
    if not path.is_file():
        raise HarnessError(f"ARPA file {str(path)!r} does not exist; give the path of an ARPA file (e.g. lmplz's output)")
    opener = gzip.open if path.suffix == ".gz" else open
    header = []
    try:
        with opener(path, "rt", encoding="utf-8") as handle:
            for line in handle:
                if line.strip().endswith("-grams:"):
                    break
                header.append(line.rstrip("\n"))
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise HarnessError(f"ARPA file {str(path)!r} cannot be read as UTF-8 text ({exc}); give an ARPA text file") from None
    return len(_header(header, f"ARPA file {str(path)!r}")[0])


def read_arpa(path, vocab: Vocab | None = None, order: int | None = None) -> tuple[BackoffModel, Vocab]:
    """An ARPA file (e.g. lmplz's, plain or .gz) as a BackoffModel over harness ids, and its vocabulary.

    vocab: None builds one from the file's character unigrams (boundary "." first, characters
    sorted); a given vocabulary must hold exactly the file's characters. order: when given, the
    file's order must equal it. Malformed or truncated files raise HarnessError.
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
        rows, i = _section(lines, i, k, count, where)
        sections.append(rows)
    if not any(line.strip() == "\\end\\" for line in lines[i:]):
        raise HarnessError(f"{where} has no \\end\\ line after the {n}-grams; the file is truncated")

    unigrams = [r[1] for r in sections[0]]
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
    if vocab is None:
        vocab = Vocab.from_chars(chars)
    elif set(vocab.itos[1:]) != set(chars):
        extra, missing = sorted(set(chars) - set(vocab.itos[1:])), sorted(set(vocab.itos[1:]) - set(chars))
        raise HarnessError(f"{where}: its characters differ from the given vocabulary (file only: {extra[:10]}, "
                           f"vocabulary only: {missing[:10]}); read it with vocab=None or fit on the same characters")
    V = vocab.size
    # token codes: characters by id, then the specials, which only some positions allow
    code = {ch: i for i, ch in enumerate(vocab.itos) if i}
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
        keys.append(torch.from_numpy(ids))
        probs.append(torch.from_numpy(log10_prob))
        bows.append(torch.from_numpy(log10_bow))
    return BackoffModel(n, V, keys, probs, bows), vocab
