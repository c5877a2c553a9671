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

from harness.core import jsonio
from harness.core.errors import HarnessError
from harness.data.corpus import Vocab
from harness.models.arpa_text import END, START, UNKNOWN, read_arpa_tables
from harness.models.backoff import BackoffModel, to_backoff

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
    text = "\n".join(lines)  # .gz: compressed, as read_arpa and lmplz read it
    jsonio.write_atomic(Path(path), gzip.compress(text.encode("utf-8")) if Path(path).suffix == ".gz" else text)
    return backoff


# ---------------------------------------------------------------------------------------------
# reading (the text is parsed by harness.models.arpa_text, numpy only)


def read_arpa(path, vocab: Vocab | None = None, order: int | None = None) -> tuple[BackoffModel, Vocab]:
    """An ARPA file (e.g. lmplz's, plain or .gz) as a BackoffModel over harness ids, and its vocabulary.

    vocab: None builds one from the file's character unigrams (boundary "." first, characters
    sorted); a given vocabulary must hold exactly the file's characters. order: when given, the
    file's order must equal it. Malformed or truncated files raise HarnessError.
    """
    tables = read_arpa_tables(path, None if vocab is None else vocab.itos, order)
    if vocab is None:
        vocab = Vocab(tables.itos)
    as_tensors = [[torch.from_numpy(a) for a in arrays] for arrays in (tables.keys, tables.log10_probs, tables.log10_bows)]
    return BackoffModel(tables.order, vocab.size, *as_tensors), vocab
