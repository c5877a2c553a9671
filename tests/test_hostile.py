"""Hostile but realistic input (issue 16): one line on stderr, exit 2, no traceback, no hang.

Through main() in process, so each case costs milliseconds; the cases that need a second
process (locks, kill -9) live in tests/core/test_rundir.py and tests/run.
"""
import os

import pytest

from harness.cli import main

RUN = ["run", "--device", "cpu", "--quiet", "--orders", "2", "--smoothing", "1", "--samples", "3"]


def one_line_exit_2(capsys, argv, says):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    assert says in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def corpus(tmp_path):
    def write(text: str, name="names.txt"):
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return str(path)
    return write


def test_a_fifo_corpus_is_refused_without_waiting(tmp_path, capsys):
    fifo = tmp_path / "names.fifo"
    os.mkfifo(fifo)
    one_line_exit_2(capsys, [*RUN, "--corpus", str(fifo), "--out", str(tmp_path / "run")], "not a regular file")


@pytest.mark.parametrize("separator, says", [("\u2028", "U+2028"), ("\u0085", "U+0085"), ("\u2029", "U+2029"),
                                             ("\x0b", "control character"), ("\x1e", "control character")])
def test_names_with_line_separators_are_refused_not_split(corpus, tmp_path, capsys, separator, says):
    path = corpus(f"emma\nann{separator}a\nolivia\n")
    line = one_line_exit_2(capsys, [*RUN, "--corpus", path, "--out", str(tmp_path / "run")], says)
    assert "item 2" in line
    assert not (tmp_path / "run").exists()


def test_a_literal_boundary_character_is_refused(corpus, tmp_path, capsys):
    path = corpus("emma\nst.john\nolivia\n")
    one_line_exit_2(capsys, [*RUN, "--corpus", path], "boundary token '.'")


def test_an_empty_corpus_spec(capsys):
    one_line_exit_2(capsys, [*RUN, "--corpus", ""], "--corpus is empty")


@pytest.mark.parametrize("weight, says", [("1.5", "'1.5'"), ("1e20", "'1e20'"), ("0", "'0'"), ("-3", "'-3'"),
                                          ("nan", "'nan'"), ("inf", "'inf'"), ("many", "'many'")])
def test_csv_split_weights_must_be_whole_copies(corpus, tmp_path, capsys, weight, says):
    train = corpus(f"item,weight\nemma,3\nava,{weight}\n", "train.csv")
    dev = corpus("ann\n", "dev.txt")
    line = one_line_exit_2(capsys, [*RUN, "--split", f"files:{train},{dev}", "--out", str(tmp_path / "run")], says)
    assert "line 3" in line


def test_an_empty_csv_item_is_refused(corpus, tmp_path, capsys):
    train = corpus("item,weight\nemma,3\n,2\n", "train.csv")
    dev = corpus("ann\n", "dev.txt")
    one_line_exit_2(capsys, [*RUN, "--split", f"files:{train},{dev}"], "empty item")


def test_score_refuses_a_boundary_character_in_a_word(names_path, capsys):
    one_line_exit_2(capsys, ["score", "--corpus", str(names_path), "--order", "2", "--smoothing", "1", "st.john"],
                    "not in the corpus vocabulary")
