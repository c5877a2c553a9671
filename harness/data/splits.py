"""Train/dev/test splits by unique item, seeded and deterministic."""
from __future__ import annotations

from pathlib import Path

import torch

from harness.data.corpus import Corpus, Vocab, pack, read_items, unique_with_counts
from harness.core.errors import HarnessError

SPLIT_NAMES = ("train", "dev", "test")
RATIOS = (0.8, 0.1, 0.1)


def split_corpus(corpus: Corpus, seed: int, ratios=RATIOS) -> dict[str, Corpus]:
    """Shuffle the unique items with a seeded generator and cut 80/10/10.

    A name is one unique item carrying all its copies (weights), so it never sits in two
    splits. The permutation comes from torch.randperm on the CPU so it is the same on every
    device.
    """
    n = corpus.num_unique
    if n < 3:
        raise HarnessError(f"corpus {corpus.name!r} has {n} unique items; a train/dev/test split needs at least 3 (or use --split none)")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_train = max(1, int(round(ratios[0] * n)))
    n_dev = max(1, int(round(ratios[1] * n)))
    n_train = min(n_train, n - 2)
    parts = {
        "train": perm[:n_train],
        "dev": perm[n_train:n_train + n_dev],
        "test": perm[n_train + n_dev:],
    }
    return {name: corpus.subset(idx.sort().values) for name, idx in parts.items()}


FILES_PREFIX = "files:"
EXPAND_LINES_MAX = 2_000_000  # split files repeat an item once per copy up to this many lines


def parse_split_files(spec: str) -> list[Path]:
    """The paths of a `files:TRAIN[,DEV[,TEST]]` split spec."""
    paths = [p.strip() for p in spec[len(FILES_PREFIX):].split(",")]
    if not paths or not paths[0] or len(paths) > 3 or any(not p for p in paths):
        raise HarnessError(f"--split {spec!r}: give files:TRAIN,DEV,TEST (DEV and TEST optional), paths separated by commas")
    return [Path(p) for p in paths]


def read_split_file(path: Path) -> tuple[list[str], list[int] | None]:
    """Items and copies of one split file: a text file (one item per line, repeats are copies) or a
    CSV `item,weight` as a run writes for weighted corpora."""
    if path.suffix.lower() == ".csv" and path.is_file():
        import pandas as pd

        try:
            frame = pd.read_csv(path, keep_default_na=False, dtype={"item": str, "weight": str})
            items, raw = frame["item"].tolist(), frame["weight"].tolist()
        except (KeyError, ValueError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            raise HarnessError(f"split file {str(path)!r} is not a CSV with columns item,weight ({exc})") from None
        if not items:
            raise HarnessError(f"split file {str(path)!r} has no rows")
        return items, [_csv_weight(path, row, w) for row, w in enumerate(raw, 2)]
    return unique_with_counts(read_items(path))


MAX_WEIGHT = 2**53  # a float64 count stays exact up to here


def _csv_weight(path: Path, row: int, text: str) -> int:
    """A CSV weight: a whole number of copies from 1 to 2^53, else a HarnessError naming the row."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (value == int(value) if value == value and abs(value) != float("inf") else False) or not 1 <= value <= MAX_WEIGHT:
        raise HarnessError(f"split file {str(path)!r}, line {row}: weight {text!r} is not a whole number of copies "
                           f"from 1 to 2^53; fix that row")
    return int(value)


def load_split_files(spec: str, device) -> tuple[Corpus, dict[str, Corpus], dict]:
    """A user's own split: the files' items, one vocabulary over all of them, and overlap counts.

    Counts and training use TRAIN only; the vocabulary covers every file, so a character seen
    only in test still has an id (it gets smoothed mass, or inf under k = 0). A name may sit in
    more than one file here: the user's split is the user's, and the overlap is reported.
    """
    paths = parse_split_files(spec)
    parts = {name: read_split_file(path) for name, path in zip(SPLIT_NAMES, paths)}
    chars = set()
    for items, _ in parts.values():
        chars.update("".join(items))
    vocab = Vocab.from_chars(chars)
    splits = {name: pack(f"{name}:{paths[i]}", items, weights, device, vocab=vocab)
              for i, (name, (items, weights)) in enumerate(parts.items())}
    union_items, union_weights = [], []
    seen = {}
    for part in splits.values():
        for item, w in zip(part.items, part.item_weights().tolist()):
            if item in seen:
                union_weights[seen[item]] += w
            else:
                seen[item] = len(union_items)
                union_items.append(item)
                union_weights.append(w)
    corpus = pack(spec, union_items, union_weights if any(w != 1 for w in union_weights) else None, device, vocab=vocab)
    sets = {name: set(part.items) for name, part in splits.items()}
    overlap = {f"{a}&{b}": len(sets[a] & sets[b]) for i, a in enumerate(sets) for b in list(sets)[i + 1:]}
    return corpus, splits, overlap


def write_split(out_dir: Path, splits: dict[str, Corpus]) -> dict[str, str]:
    """Write the split a run used into out_dir/split/: NAME.txt, one item per line (each copy of a
    repeated item on its own line while the file stays under EXPAND_LINES_MAX lines, else each
    unique item once), and for weighted corpora NAME.csv with columns item,weight.

    Reading NAME.txt (or NAME.csv) back with --split files: gives the same items and weights.
    Returns name -> the file the report links, relative to out_dir: NAME.txt for every split while
    each txt lists every copy, else NAME.csv for every split (the file that holds the copies).
    """
    folder = Path(out_dir) / "split"
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    # one rule for every split, so the report links files of one kind: txt while each lists every copy
    every_copy_listed = all(part.weights is None or part.num_items() <= EXPAND_LINES_MAX for part in splits.values())
    for name, part in splits.items():
        weights = part.item_weights().tolist()
        expand = part.weights is None or part.num_items() <= EXPAND_LINES_MAX
        with open(folder / f"{name}.txt", "w", encoding="utf-8") as f:
            for item, w in zip(part.items, weights):
                f.write((item + "\n") * (w if expand else 1))
        written[name] = f"split/{name}.txt"
        if part.weights is not None:
            import pandas as pd

            pd.DataFrame({"item": part.items, "weight": weights}).to_csv(folder / f"{name}.csv", index=False)
            if not every_copy_listed:  # the txt files list names once: link the CSVs, which hold the copies
                written[name] = f"split/{name}.csv"
    return written
