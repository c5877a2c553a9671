"""Hostile but realistic input (issue 16): one line on stderr, exit 2, no traceback, no hang.

Through main() in process, so each case costs milliseconds; the cases that need a second
process (locks, kill -9) live in tests/core/test_rundir.py and tests/run.
"""
import os

import pytest

from harness.cli import main

# --no-figures: these tests are about refusals and kept numbers; the two that draw say so (DRAWN)
RUN = ["run", "--device", "cpu", "--quiet", "--no-figures", "--orders", "2", "--smoothing", "1", "--samples", "3"]
DRAWN = [a for a in RUN if a != "--no-figures"]


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


# ---------------------------------------------------------------------------------------------
# run folders: the lock, no silent overwrite, resume checks (issue 16 item 1)

import json
import math
import random
import sys
import warnings
from pathlib import Path

from harness.core.rundir import RunFolderLock


def tiny_names(n=300, seed=0, letters="abcdefghijkl"):
    rng = random.Random(seed)
    return "".join("".join(rng.choice(letters) for _ in range(rng.randint(2, 7))) + "\n" for _ in range(n))


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.txt"
    path.write_text(tiny_names(), encoding="utf-8")
    return str(path)


def run_tiny(tiny, out, *extra):
    return main([*RUN, "--corpus", tiny, "--out", str(out), *extra])


def test_a_busy_run_folder_is_refused_naming_the_holder(tiny, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    with RunFolderLock(out).acquire("the first run"):
        one_line_exit_2(capsys, [*RUN, "--corpus", tiny, "--out", str(out)], "in use by pid")
    assert sorted(p.name for p in out.iterdir()) == [".lock"]  # nothing written by the refused run


def test_an_existing_run_is_never_overwritten_without_overwrite(tiny, tmp_path, capsys):
    out = tmp_path / "run"
    assert run_tiny(tiny, out) == 0
    (out / "compare-vs-x.md").write_text("an old comparison")
    before = (out / "results.json").read_bytes()
    one_line_exit_2(capsys, [*RUN, "--corpus", tiny, "--out", str(out), "--samples", "4"], "holds a run")
    assert (out / "results.json").read_bytes() == before
    assert main([*RUN, "--corpus", tiny, "--out", str(out), "--samples", "4", "--overwrite"]) == 0
    (record,) = json.loads((out / "results.json").read_text())["results"]
    assert len(record["samples"]) == 4 and not (out / "compare-vs-x.md").exists()


def test_a_foreign_folder_is_not_taken_over(tiny, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("mine")
    line = one_line_exit_2(capsys, [*RUN, "--corpus", tiny, "--out", str(out)], "not empty and holds no run")
    assert "--resume" not in line and "another --out" in line  # there is no run to resume
    assert (out / "thesis.tex").read_text() == "mine"


def test_resume_refuses_a_changed_corpus(tiny, tmp_path, capsys):
    out = tmp_path / "run"
    assert run_tiny(tiny, out) == 0
    before = (out / "results.json").read_bytes()
    with open(tiny, "a", encoding="utf-8") as f:
        f.write("zzz\n")
    one_line_exit_2(capsys, ["run", "--resume", str(out), "--quiet", "--no-figures"], "the corpus content")
    assert (out / "results.json").read_bytes() == before


def test_resume_refuses_changed_split_files(tmp_path, capsys):
    files = []
    for name, seed in (("train", 1), ("dev", 2), ("test", 3)):
        (tmp_path / f"{name}.txt").write_text(tiny_names(100, seed), encoding="utf-8")
        files.append(str(tmp_path / f"{name}.txt"))
    out = tmp_path / "run"
    assert main([*RUN, "--split", "files:" + ",".join(files), "--out", str(out)]) == 0
    Path(files[1]).write_text(tiny_names(100, 9), encoding="utf-8")
    one_line_exit_2(capsys, ["run", "--resume", str(out), "--quiet", "--no-figures"], "the split differ")


def edit_results(out, change):
    data = json.loads((out / "results.json").read_text())
    change(data)
    (out / "results.json").write_text(json.dumps(data))
    return (out / "results.json").read_bytes()


def test_resume_refuses_an_edited_grid(tiny, tmp_path, capsys):
    out = tmp_path / "run"
    assert run_tiny(tiny, out) == 0
    before = edit_results(out, lambda d: d["run"]["config"].update(samples=7))
    one_line_exit_2(capsys, ["run", "--resume", str(out), "--quiet", "--no-figures"], "the grid in results.json")
    assert (out / "results.json").read_bytes() == before


def test_resume_refuses_records_that_do_not_match_the_stored_config(tiny, tmp_path, capsys):
    """A finished record the stored grid does not have is refused, not dropped silently."""
    out = tmp_path / "run"
    assert run_tiny(tiny, out) == 0
    before = edit_results(out, lambda d: d["results"][0].update(key="order=2 count smoothing=3.0"))
    one_line_exit_2(capsys, ["run", "--resume", str(out), "--quiet", "--no-figures"], "not in its stored config's grid")
    assert (out / "results.json").read_bytes() == before


def test_resume_with_other_grid_flags_is_refused(tiny, tmp_path, capsys):
    out = tmp_path / "run"
    assert run_tiny(tiny, out) == 0
    one_line_exit_2(capsys, ["run", "--resume", str(out), "--orders", "3"], "drop the other flags (orders)")
    assert main(["run", "--resume", str(out), "--quiet", "--no-figures", "--threads", "1"]) == 0  # threads change no result


CORRUPT = {
    "truncated": lambda good: good[: len(good) // 2],
    "empty": lambda good: b"",
    "binary": lambda good: b"\x89PNG\r\n\x1a\n\x00\xff",
    "a list": lambda good: b"[1, 2]",
    "without run": lambda good: b'{"results": []}',
    "run without config": lambda good: json.dumps({"run": {"started": "x"}, "results": []}).encode(),
    "records not objects": lambda good: json.dumps({**json.loads(good), "results": [3]}).encode(),
}


def _edited(path: list, value):
    """A damage that sets one field of the good results.json (path: keys and list indices) to `value`."""
    def damage(good: bytes) -> bytes:
        data = json.loads(good)
        node = data
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        return json.dumps(data).encode()
    return damage


# values of the wrong type inside records and the run (a hostile sweep found each a traceback before)
CORRUPT.update({
    "dev_nll a string": _edited(["results", 0, "dev_nll"], "abc"), "dev_nll a list": _edited(["results", 0, "dev_nll"], [1]),
    "ci of one number": _edited(["results", 0, "dev_nll_ci"], [1]), "ci a string": _edited(["results", 0, "dev_nll_ci"], "x"),
    "item_nll strings": _edited(["results", 0, "item_nll"], {"dev": "x"}),
    "item_nll too short": _edited(["results", 0, "item_nll", "dev"], [1.0]),
    "order a word": _edited(["results", 0, "order"], "two"), "samples a number": _edited(["results", 0, "samples"], 5),
    "new_share a string": _edited(["results", 0, "new_share"], "x"), "tuning a string": _edited(["results", 0, "tuning"], "x"),
    "split_items a string": _edited(["run", "split_items"], "x"), "hashes a string": _edited(["run", "hashes"], "x"),
    "seed a string": _edited(["run", "config", "seed"], "x"),
})


@pytest.fixture(scope="module")
def good_results(tmp_path_factory):
    folder = tmp_path_factory.mktemp("good")
    corpus = folder / "tiny.txt"
    corpus.write_text(tiny_names(), encoding="utf-8")
    assert main([*RUN, "--corpus", str(corpus), "--out", str(folder / "run")]) == 0
    return folder / "run"


@pytest.mark.parametrize("damage", sorted(CORRUPT))
@pytest.mark.parametrize("command", ["report", "compare", "resume"])
def test_a_corrupt_results_json_is_one_line_and_never_overwritten(good_results, tmp_path, capsys, damage, command):
    out = tmp_path / "run"
    out.mkdir()
    bad = CORRUPT[damage]((good_results / "results.json").read_bytes())
    (out / "results.json").write_bytes(bad)
    argv = {"report": ["report", str(out)], "compare": ["compare", str(good_results), str(out)],
            "resume": ["run", "--resume", str(out), "--quiet", "--no-figures"]}[command]
    line = one_line_exit_2(capsys, argv, str(out / "results.json"))
    assert "restore it from a copy, or rerun" in line
    assert (out / "results.json").read_bytes() == bad
    assert sorted(p.name for p in out.iterdir() if p.name != ".lock") == ["results.json"]


@pytest.mark.parametrize("where, says", [("file", "is a file"), ("under a file", "Not a directory"),
                                         ("proc", "cannot create run folder"), ("sys", "cannot create run folder")])
def test_unwritable_out_folders(tiny, tmp_path, capsys, where, says):
    (tmp_path / "f").write_text("x")
    out = {"file": tmp_path / "f", "under a file": tmp_path / "f" / "run", "proc": Path("/proc/harness-run"),
           "sys": Path("/sys/harness-run")}[where]
    one_line_exit_2(capsys, [*RUN, "--corpus", tiny, "--out", str(out)], says)
    assert (tmp_path / "f").read_text() == "x"


def test_a_read_only_out_folder(tiny, tmp_path, capsys):
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders; this case needs an ordinary user")
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o555)
    try:
        one_line_exit_2(capsys, [*RUN, "--corpus", tiny, "--out", str(parent / "run")], "cannot create run folder")
    finally:
        parent.chmod(0o755)


def test_output_files_into_missing_folders(good_results, tiny, tmp_path, capsys):
    one_line_exit_2(capsys, ["compare", str(good_results), str(good_results), "--out", str(tmp_path / "no" / "c.md")],
                    "does not exist")
    items = tmp_path / "items.txt"
    items.write_text("abc\nbca\n")
    one_line_exit_2(capsys, ["score", "--corpus", tiny, "--file", str(items), "--per-item", str(tmp_path / "no" / "x.csv")],
                    "does not exist")
    assert not (tmp_path / "no").exists()


def test_a_full_stdout_and_a_closed_pipe(tiny, monkeypatch, capsys):
    argv = ["sample", "--corpus", tiny, "--num", "2000"]  # more than one buffer of names
    with open("/dev/full", "w") as full:
        monkeypatch.setattr(sys, "stdout", full)
        one_line_exit_2(capsys, argv, "No space left on device")
    read, write = os.pipe()
    os.close(read)
    with os.fdopen(write, "w") as closed:
        monkeypatch.setattr(sys, "stdout", closed)
        assert main(argv) == 0  # the reader left (`| head`): nothing to say
    assert "Traceback" not in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# values validated at the edge, the same for flags and TOML keys (issue 16 items 2, 3)


@pytest.mark.parametrize("argv, says", [
    (["--seed", str(2**64)], "seed (--seed) must be at most 2^64 - 1"),
    (["--seed", "-1"], "seed (--seed) must be >= 0"),
    (["--seed", "1.7"], "seed (--seed) must be a whole number"),
    (["--samples", "2.9"], "samples (--samples) must be a whole number"),
    (["--smoothing", "1e308"], "k must be a finite number from 0 to 1e+09"),
    (["--k-grid", "0.1,1e308"], "k_grid (--k-grid) must be at most 1e+09"),
    (["--orders", "99"], "order 99 is too high"),
    (["--orders", "20"], "order 20 over this corpus's 13 tokens"),  # valid alone, past int64 ids on this corpus
    (["--orders", "2,2"], "orders (--orders) lists 2 twice"),
    (["--smoothing", "1,1.0"], "lists '1.0' twice"),
    (["--methods", "gradient", "--batch-size", "100000000"], "more than the"),
])
def test_bad_values_are_refused_before_any_folder(tiny, tmp_path, capsys, argv, says):
    out = tmp_path / "run"
    one_line_exit_2(capsys, [*RUN, "--corpus", tiny, "--out", str(out), *argv], says)
    assert not out.exists()


@pytest.mark.parametrize("toml, says", [
    ("orders = [2.5]", "order 2.5 must be a whole number"),
    ("orders = [true]", "order True must be a whole number"),
    ("samples = 2.9", "samples (--samples) must be a whole number"),
    ("seed = 1.7", "seed (--seed) must be a whole number"),
    ("seed = true", "seed (--seed) must be a whole number"),
    ("steps = 3.0", "steps (--steps) must be a whole number"),
    ("lr = true", "lr (--lr) must be a number"),
    ("device = 5", "device (--device) must be a string"),
    ("k_grid = [1e308]", "k_grid (--k-grid) must be at most"),
    ("threads = -1", "threads (--threads) must be >= 0"),
])
def test_toml_values_are_not_coerced(tiny, tmp_path, capsys, toml, says):
    grid = tmp_path / "grid.toml"
    grid.write_text(toml + "\n")
    one_line_exit_2(capsys, ["run", "--config", str(grid), "--corpus", tiny, "--out", str(tmp_path / "run")], says)


@pytest.mark.parametrize("argv, says", [
    (["sample", "--smoothing", "1e308"], "from 0 to 1e+09"),
    (["sample", "--seed", str(2**64)], "2^64 - 1"),
    (["score", "--seed", "-5", "abc"], "must be >= 0"),
])
def test_score_and_sample_validate_the_same_way(tiny, capsys, argv, says):
    one_line_exit_2(capsys, [*argv, "--corpus", tiny], says)


def test_minus_zero_smoothing_is_stored_as_zero(tiny, tmp_path):
    out = tmp_path / "run"
    assert main([*RUN[:-4], "--split", "none", "--smoothing", "-0", "--samples", "2", "--corpus", tiny, "--out", str(out)]) == 0
    (record,) = json.loads((out / "results.json").read_text())["results"]
    assert record["smoothing_spec"] == "0.0" and math.copysign(1.0, record["smoothing"]) == 1.0
    # the smoothing line only: the file also holds the corpus path, and pytest's tmp folders are named pytest-0, pytest-1...
    (smoothing,) = [line for line in (out / "grid.toml").read_text().splitlines() if line.startswith("smoothing =")]
    assert smoothing == 'smoothing = ["0.0"]'


def test_directories_are_called_directories(tiny, tmp_path, capsys):
    d = tmp_path / "adir"
    d.mkdir()
    one_line_exit_2(capsys, ["score", "--corpus", tiny, "--file", str(d)], "is a directory")
    one_line_exit_2(capsys, ["run", "--config", str(d)], "is a directory")
    one_line_exit_2(capsys, [*RUN, "--split", f"files:{tiny},{d}"], "is a directory")


def test_an_empty_out_and_a_grid_file_with_a_byte_order_mark(tiny, tmp_path, capsys):
    one_line_exit_2(capsys, [*RUN, "--corpus", tiny, "--out", ""], "--out is empty")
    grid = tmp_path / "grid.toml"
    grid.write_text("orders = [1]\n", encoding="utf-8-sig")
    out = tmp_path / "run"
    assert main([*RUN[:5], "--config", str(grid), "--corpus", tiny, "--smoothing", "1", "--out", str(out)]) == 0
    assert [r["order"] for r in json.loads((out / "results.json").read_text())["results"]] == [1]


def test_config_from_a_pipe(tiny, tmp_path):
    """`--config <(echo ...)`: bash hands over /dev/fd/N, a pipe, which is not a regular file."""
    read, write = os.pipe()
    os.write(write, b"orders = [1]\nsamples = 2\n")
    os.close(write)
    out = tmp_path / "run"
    try:
        assert main(["run", "--config", f"/dev/fd/{read}", "--corpus", tiny, "--smoothing", "1", "--quiet", "--no-figures",
                     "--device", "cpu", "--out", str(out)]) == 0
    finally:
        os.close(read)
    (record,) = json.loads((out / "results.json").read_text())["results"]
    assert record["order"] == 1 and len(record["samples"]) == 2


@pytest.mark.parametrize("argv", [["run", "--orders"], ["frobnicate"], ["score", "--order", "two"], ["run", "--quiet=3"],
                                  []])
def test_argparse_errors_are_one_line(capsys, argv):
    line = one_line_exit_2(capsys, argv, "")
    assert "--help" in line and "usage:" not in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# what fails after the losses keeps them (issue 16 item 4); reports and figures


def test_a_failed_sampling_keeps_the_nlls(tiny, tmp_path, monkeypatch, capsys):
    reference = tmp_path / "reference"
    assert run_tiny(tiny, reference) == 0
    from harness.run.runner import Runner

    def out_of_memory(self, model):
        raise RuntimeError("CUDA out of memory (simulated)")

    monkeypatch.setattr(Runner, "samples_of", out_of_memory)
    out = tmp_path / "run"
    assert run_tiny(tiny, out) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "samples" in err[0] and "NLLs kept" in err[0]
    (record,) = json.loads((out / "results.json").read_text())["results"]
    (expected,) = json.loads((reference / "results.json").read_text())["results"]
    assert record["status"] == "ok" and record["samples"] == []
    assert [record[k] for k in ("train_nll", "dev_nll", "test_nll")] == [expected[k] for k in ("train_nll", "dev_nll", "test_nll")]
    assert "out of memory" in record["part_failed"]["samples"]
    assert "samples failed (NLLs kept)" in (out / "report.md").read_text()


def test_a_failed_figure_keeps_the_run(tiny, tmp_path, monkeypatch, capsys):
    from harness.run import figures

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(figures, "bigram_heatmap", broken)
    out = tmp_path / "run"
    assert main([*DRAWN, "--corpus", tiny, "--out", str(out)]) == 1
    assert "figures could not be drawn" in capsys.readouterr().err
    saved = json.loads((out / "results.json").read_text())
    assert "No space left" in saved["run"]["figure_errors"]["bigram_counts.png"]
    assert saved["results"][0]["status"] == "ok" and math.isfinite(saved["results"][0]["dev_nll"])
    assert "`bigram_counts.png`: OSError" in (out / "report.md").read_text()


def test_the_tuning_table_has_no_nan_cells(tiny, tmp_path):
    out = tmp_path / "run"
    assert main([*RUN[:-4], "--smoothing", "auto,interp", "--samples", "2", "--corpus", tiny, "--out", str(out)]) == 0
    report = (out / "report.md").read_text()
    tuning = report.split("## Smoothing tuned on dev")[1].split("\n## ")[0]
    assert "| nan" not in tuning and "nan |" not in tuning and "—" in tuning


def test_compare_of_different_corpora_says_so(good_results, tiny, tmp_path, capsys):
    other = tmp_path / "other.txt"
    other.write_text(tiny_names(300, seed=5), encoding="utf-8")
    out = tmp_path / "b"
    assert main([*RUN, "--corpus", str(other), "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["compare", str(good_results), str(out)]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: the runs are on different corpora")
    assert "**Warning:** the runs are on different corpora" in (out / f"compare-vs-{good_results.name}.md").read_text()
    capsys.readouterr()
    assert main(["compare", str(good_results), str(good_results), "--out", str(tmp_path / "same.md")]) == 0
    assert "warning" not in capsys.readouterr().err


def test_an_emoji_corpus_draws_without_warnings_under_quiet(tmp_path, capsys):
    corpus = tmp_path / "emoji.txt"
    # emoji, and glyphs DejaVu Sans lacks (matplotlib warns once per glyph it cannot draw)
    corpus.write_text("a\U0001F600b\n\U0001F600\nab\u0938\nba\u2764\nab\naab\u4e2d\nbba\n", encoding="utf-8")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main([*DRAWN[:-4], "--split", "none", "--smoothing", "1", "--samples", "2", "--corpus", str(corpus),
                     "--out", str(tmp_path / "run")]) == 0
    assert [str(w.message) for w in caught if "lyph" in str(w.message)] == []
    assert capsys.readouterr().err == "" and (tmp_path / "run" / "bigram_counts.png").exists()


@pytest.mark.parametrize("argv, says", [
    (["run", "--samples", str(10**11)], "samples (--samples)"),
    (["run", "--steps", str(10**12)], "steps (--steps)"),
    (["sample", "--num", str(10**11)], "--num must be from 0 to 1,000,000"),
])
def test_counts_past_what_could_finish_are_refused(capsys, argv, says):
    one_line_exit_2(capsys, argv, says)


OUTPUT_CASES = [(command, case) for command in ("export", "compare", "score")
                for case in ("run's results.json", "fifo", "empty", "under a file")] + [("score", "the input")]


@pytest.mark.parametrize("command, case", OUTPUT_CASES)
def test_an_output_path_never_replaces_what_is_there(good_results, tiny, tmp_path, capsys, case, command):
    """export --arpa, compare --out and score --per-item refuse, in one line, a target that the atomic rename would
    have replaced without a word: a run's own file, a FIFO, '' or a path under a file; score refuses its own --file."""
    fifo, afile = tmp_path / "fifo", tmp_path / "afile"
    os.mkfifo(fifo)
    afile.write_text("x")
    names = tmp_path / "names.txt"
    names.write_text("emma\nava\n")
    target = {"run's results.json": str(good_results / "results.json"), "fifo": str(fifo), "empty": "",
              "under a file": str(afile / "out"), "the input": str(names)}[case]
    before = {p: p.read_bytes() for p in (good_results / "results.json", names, afile)}
    argv = {"export": ["export", str(good_results), "--order", "2", "--smoothing", "1", "--arpa", target],
            "compare": ["compare", str(good_results), str(good_results), "--out", target],
            "score": ["score", "--corpus", tiny, "--device", "cpu", "--file", str(names), "--per-item", target]}[command]
    says = {"run's results.json": "is the results.json of the run", "fifo": "not a regular file", "empty": "is empty",
            "under a file": "is a file, not a folder", "the input": "also what this command reads"}[case]
    one_line_exit_2(capsys, argv, says)
    assert {p: p.read_bytes() for p in before} == before and fifo.is_fifo()


@pytest.mark.parametrize("kind, says", [("fifo", "is not a regular file"), ("/dev/null", "is not a regular file"),
                                        ("folder", "is a directory"), ("missing", "does not exist")])
@pytest.mark.parametrize("flag", ["--file", "--arpa", "--model"])
def test_an_input_that_is_not_a_file_is_named_for_what_it_is(tiny, tmp_path, capsys, flag, kind, says):
    """The hostile sweep found a FIFO, /dev/null and a folder said 'not to exist' by score's --file, --arpa and --model."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    path = {"fifo": str(fifo), "/dev/null": "/dev/null", "folder": str(tmp_path / "sub"), "missing": str(tmp_path / "no")}[kind]
    (tmp_path / "sub").mkdir()
    if flag == "--model" and kind == "folder":
        says = "has no models/ folder"  # a folder is a run folder to --model
    argv = {"--file": ["score", "--corpus", tiny, "--device", "cpu", "--smoothing", "1", "--file", path],
            "--arpa": ["score", "--arpa", path, "emma"],
            "--model": ["score", "--corpus", tiny, "--device", "cpu", "--model", path, "emma"]}[flag]
    one_line_exit_2(capsys, argv, says)


@pytest.mark.parametrize("argv", [["score", "--arpa", "", "emma"], ["score", "--corpus", "ssa:1900", "--model", " ", "emma"],
                                  ["run", "--config", ""], ["run", "--arpa", ""], ["run", "--resume", ""],
                                  ["score", "--corpus", "ssa:1900", "--file", ""]])
def test_an_empty_path_is_refused_not_taken_as_absent(capsys, argv):
    """'' for a path option read as 'not given' (score --arpa '' fitted a model from the corpus instead)."""
    flag = next(a for a in argv if a.startswith("--") and argv[argv.index(a) + 1].strip() == "")
    one_line_exit_2(capsys, argv, f"{flag} is empty")


def test_a_prefix_outside_the_vocabulary_says_prefix(tiny, capsys):
    one_line_exit_2(capsys, ["sample", "--corpus", tiny, "--device", "cpu", "--prefix", "Q", "--num", "2"], "give a --prefix made of")


@pytest.mark.parametrize("argv, says", [(["--orders", "2,,3"], "empty item"), (["--orders", "2,"], "empty item"),
                                        (["--smoothing", ",1"], "empty item")])
def test_an_empty_item_in_a_list_flag_is_refused(tiny, capsys, argv, says):
    """'2,,3' was read as 2,3: a slip taken for a choice (found by the hostile sweep)."""
    one_line_exit_2(capsys, [*RUN, "--corpus", tiny, *argv], says)


def test_the_same_arpa_file_twice_is_refused(tiny, tmp_path, capsys):
    arpa = tmp_path / "m.arpa"
    arpa.write_text("x")
    one_line_exit_2(capsys, [*RUN, "--corpus", tiny, "--arpa", f"{arpa},{arpa}"], "twice")
