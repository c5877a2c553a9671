"""`score --arpa FILE --file BIG` without torch (harness.cli_fast) against the torch path (harness.cli.main).

The oracles: the torch path's printed lines and FileScore (the same arrays, so equal to the bit),
the per-order backoff lookups of BackoffModel (another algorithm, to 1e-12), and a second Python
process whose imported modules are listed by `python -X importtime`.
"""
import re
import subprocess
import sys

import pytest

from harness.cli import main
from harness.cli_fast import fast_main
from harness.data.splits import load_split_files
from harness.data.stream import score_stream
from harness.models.arpa import read_arpa, write_arpa
from harness.models.arpa_text import read_arpa_tables
from harness.models.backoff import score_file_streamed
from harness.models.rows_numpy import HostRows, compile_row_tables
from harness.models.smoothed import KneserNeyModel, WittenBellModel
from harness.data.ngrams import windows
from harness.run.models_io import file_scorer
from tests.conftest import REPO
from tests.models.test_arpa import HAND_WRITTEN

HEAVY = ("torch", "pandas", "matplotlib", "harness.bench", "harness.cli", "harness.models.backoff")


@pytest.fixture(scope="module")
def split(reference_split):
    folder, _ = reference_split
    _, splits, _ = load_split_files(f"files:{folder}/train.txt,{folder}/dev.txt,{folder}/test.txt", "cpu")
    return folder, splits


@pytest.fixture(scope="module")
def arpa_files(split, tmp_path_factory):
    """Written ARPA files of orders 2-6 (kn; wb at 4) fitted on REFERENCE.md's train split, and the hand-written one."""
    folder, splits = split
    out = tmp_path_factory.mktemp("arpa")
    files = {}
    for order in (2, 3, 4, 5, 6):
        train = windows(splits["train"], order)
        model = WittenBellModel.fit(train) if order == 4 else KneserNeyModel.fit(train)
        files[order] = out / f"o{order}.arpa"
        write_arpa(model, files[order], splits["train"].vocab)
    files["hand"] = out / "hand.arpa"
    files["hand"].write_text(HAND_WRITTEN)
    return files


def both(capsys, argv):
    """(exit status, stdout, stderr) of the fast path and of harness.cli.main on the same command line."""
    capsys.readouterr()
    fast = fast_main(list(argv))
    assert fast is not None, "the fast path did not take this command line"
    fast_out = capsys.readouterr()
    full = main(list(argv))
    full_out = capsys.readouterr()
    return (fast, fast_out.out, fast_out.err), (full, full_out.out, full_out.err)


@pytest.mark.parametrize("order", [2, 3, 4, 5, 6])
def test_the_fast_path_prints_what_the_torch_path_prints(split, arpa_files, order, capsys):
    folder, _ = split
    fast, full = both(capsys, ["score", "--arpa", str(arpa_files[order]), "--file", str(folder / "test.txt")])
    assert fast == full and fast[0] == 0
    assert fast[1].startswith(f"{folder / 'test.txt'}: mean NLL ") and fast[2].startswith("model: ARPA file")


@pytest.mark.parametrize("order", [2, 3, 4, 5, 6, "hand"])
@pytest.mark.parametrize("max_bytes", [1, 1 << 28])  # 4 KiB chunks (many, cut mid-file) and one chunk
def test_the_fast_nll_equals_the_torch_paths(split, arpa_files, order, max_bytes, tmp_path):
    folder, _ = split
    test = folder / "test.txt"
    if order == "hand":
        test = tmp_path / "ab.txt"
        test.write_text("a\nb\nab\nba\naba\nabba\nbbbab\naab\n" * 50)
    tables = read_arpa_tables(arpa_files[order])
    rows = HostRows(tables.order, tables.vocab_size, *compile_row_tables(tables.order, tables.vocab_size, tables.keys,
                                                                         tables.log10_probs, tables.log10_bows))
    fast = score_stream(rows.stream_log10_total, test, tables.itos, max_bytes)
    model, vocab = read_arpa(arpa_files[order])
    assert vocab.itos == tables.itos
    assert score_file_streamed(file_scorer(model), test, vocab, max_bytes, "cpu") == fast  # the torch path: to the bit
    lookups = score_file_streamed(model, test, vocab, max_bytes, "cpu")  # BackoffModel's per-order lookups, torch
    assert (lookups.predictions, lookups.items) == (fast.predictions, fast.items)
    assert lookups.nll_nats == pytest.approx(fast.nll_nats, rel=1e-12)


def _file(tmp_path, name, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


HOSTILE = {  # case: (ARPA, file to score, extra flags, what the one line says)
    "missing file": ("o3", lambda t: str(t / "missing.txt"), [], "does not exist"),
    "a folder": ("o3", lambda t: str(t), [], "is a directory"),
    "empty file": ("o3", lambda t: _file(t, "e.txt", b""), [], "holds no items"),
    "blank lines only": ("o3", lambda t: _file(t, "b.txt", b"\n\r\n\n"), [], "holds no items"),
    "undecodable bytes": ("o3", lambda t: _file(t, "u.txt", b"emma\n\xff\xfeava\n"), [], "line 2 is not UTF-8 (byte 0xff"),
    "undecodable bytes, non-ASCII ARPA": ("accented", lambda t: _file(t, "u.txt", b"a\n\xc3a\n"), [], "line 2 is not UTF-8 (byte 0xc3"),
    "a character outside the ARPA": ("o3", lambda t: _file(t, "z.txt", b"emma\nzo3\n"), [], "line 2 contains '3', not in the model's vocabulary"),
    "a broken ARPA": ("broken", lambda t: _file(t, "ok.txt", b"emma\n"), [], "truncated or malformed"),
    "an ARPA that is no text": ("binary", lambda t: _file(t, "ok.txt", b"emma\n"), [], "cannot be read as UTF-8"),
    "a missing ARPA": ("missing", lambda t: _file(t, "ok.txt", b"emma\n"), [], "does not exist"),
    "a bad --max-memory": ("o3", lambda t: _file(t, "ok.txt", b"emma\n"), ["--max-memory", "lots"], "not a size"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_input_is_the_same_one_line_exit_2_on_both_paths(arpa_files, tmp_path, case, capsys):
    which, make_file, extra, says = HOSTILE[case]
    arpa = {"broken": _file(tmp_path, "broken.arpa", b"\\data\\\nngram 1=3\n\n\\1-grams:\n-1.0\t<s>\n"),
            "binary": _file(tmp_path, "binary.arpa", b"\x89PNG\r\n\x1a\n\x00\xff"),
            "missing": str(tmp_path / "missing.arpa"),
            "accented": _file(tmp_path, "accented.arpa", re.sub(r"(?<=[\t ])b(?=\s)", "é", HAND_WRITTEN).encode())}.get(which)
    arpa = arpa or str(arpa_files[3])
    fast, full = both(capsys, ["score", "--arpa", arpa, "--file", make_file(tmp_path), *extra])
    assert fast == full, (fast, full)
    code, out, err = fast
    lines = err.strip().splitlines()
    assert code == 2 and out == "" and len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], err
    assert "Traceback" not in err


@pytest.mark.parametrize("argv", [
    ["score", "--arpa", "a.arpa", "--file", "f.txt", "--per-item", "x.csv"],  # per-item: the torch path
    ["score", "--arpa", "a.arpa", "emma"],  # words
    ["score", "--arpa", "a.arpa", "--file", "f.txt", "emma"],
    ["score", "--arpa", "a.arpa", "--file", "f.txt", "--device", "cuda"],
    ["score", "--arp", "a.arpa", "--file", "f.txt"],  # argparse's abbreviations stay harness.cli's
    ["score", "--arpa", "a.arpa", "--file", "f.txt", "--order", "3"],
    ["score", "--arpa", "", "--file", "f.txt"],
    ["score", "--arpa", "a.arpa"],
    ["score", "-h"],
    ["sample", "--arpa", "a.arpa"],
    [],
])
def test_every_other_command_line_goes_to_the_full_cli(argv):
    assert fast_main(argv) is None


def test_an_arpa_past_the_rows_limits_goes_to_the_full_cli(split, arpa_files, monkeypatch, capsys):
    import harness.models.rows_numpy as rows_numpy

    folder, _ = split
    argv = ["score", "--arpa", str(arpa_files[3]), "--file", str(folder / "test.txt")]
    capsys.readouterr()
    monkeypatch.setattr(rows_numpy, "MAX_CONTEXT_IDS", 0)
    assert fast_main(argv) is None and capsys.readouterr() == ("", "")
    assert main(argv) == 0 and "mean NLL" in capsys.readouterr().out  # by the per-order lookups


def imported_modules(proc) -> set[str]:
    """Module names from `python -X importtime` lines: `import time: self | cumulative | name`."""
    return {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")
            and "|" in line}


def test_python_m_harness_score_arpa_file_imports_no_torch(split, arpa_files, capsys):
    folder, _ = split
    argv = ["score", "--arpa", str(arpa_files[5]), "--file", str(folder / "test.txt")]
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "harness", *argv], capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    modules = imported_modules(proc)
    assert "numpy" in modules and "harness.cli_fast" in modules  # the listing works
    heavy = sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))
    assert not heavy, heavy
    capsys.readouterr()
    assert main(argv) == 0
    assert proc.stdout == capsys.readouterr().out


def test_python_m_harness_error_without_torch(tmp_path):
    """A hostile input on the fast path: one line, exit 2, and still no torch imported."""
    bad = tmp_path / "z.txt"
    bad.write_text("emma\nzo3\n")
    arpa = tmp_path / "hand.arpa"
    arpa.write_text(HAND_WRITTEN)
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "harness", "score", "--arpa", str(arpa), "--file", str(bad)],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    lines = [line for line in proc.stderr.splitlines() if not line.startswith("import time:")]
    assert proc.returncode == 2 and len(lines) == 1 and "not in the model's vocabulary" in lines[0], proc.stderr[-2000:]
    assert not any(m == "torch" or m.startswith("torch.") for m in imported_modules(proc))
