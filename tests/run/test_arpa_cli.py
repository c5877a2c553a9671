"""ARPA through the command line: a run's models exported and queried by KenLM, lmplz's files scored by
`score --arpa`, each against KenLM's own `query` (skipped, saying so, where KenLM is not built)."""
import json
import random

import pytest

from harness.cli import main
from tests.models.test_arpa import kenlm, lmplz_arpa, query_nll, run_lmplz, split  # noqa: F401 - fixtures: KenLM's bin folder, lmplz's files, REFERENCE split

ORDERS = (2, 5)  # every order 2-6 passes too (the table); two keep the run short
SMOOTHINGS = ("kn", "wb", "0.1", "interp")
SMALL_NAMES = 3000  # the runs below check agreement with query, which no corpus size changes


@pytest.fixture(scope="module")
def small_split(names_path, tmp_path_factory):
    """REFERENCE.md's convention (random.seed(42), shuffle, 80/10/10) over the first 3,000 shuffled names of
    names.txt, as .txt and, characters spaced, .sp: the runs here, a tenth of the full split's time."""
    words = names_path.read_text().splitlines()
    random.seed(42)
    random.shuffle(words)
    words = words[:SMALL_NAMES]
    a, b = int(0.8 * len(words)), int(0.9 * len(words))
    folder = tmp_path_factory.mktemp("small-split")
    for name, part in (("train", words[:a]), ("dev", words[a:b]), ("test", words[b:])):
        (folder / f"{name}.txt").write_text("\n".join(part) + "\n")
        (folder / f"{name}.sp").write_text("\n".join(" ".join(w) for w in part) + "\n")
    assert set("".join(words[:a])) == set("".join(words))  # lmplz's vocabulary (train) is the run's (all three)
    return (folder,)


@pytest.fixture(scope="module")
def run_dir(small_split, tmp_path_factory):
    folder = small_split[0]
    out = tmp_path_factory.mktemp("arpa-run") / "run"
    assert main(["run", "--split", f"files:{folder}/train.txt,{folder}/dev.txt,{folder}/test.txt",
                 "--orders", ",".join(map(str, ORDERS)), "--smoothing", ",".join(SMOOTHINGS), "--samples", "0",
                 "--device", "cpu", "--quiet", "--no-figures", "--out", str(out)]) == 0
    return out


def predictions(path) -> int:
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    return sum(len(line) + 1 for line in lines)


def printed_nll(out: str) -> float:
    return float(out.split("mean NLL ")[1].split()[0])


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("smoothing", SMOOTHINGS)
def test_exported_arpa_queried_by_kenlm_gives_the_run_test_nll(run_dir, small_split, kenlm, order, smoothing, tmp_path, capsys):
    folder = small_split[0]
    spec = smoothing if smoothing in ("kn", "wb", "interp") else repr(float(smoothing))
    (record,) = [r for r in json.loads((run_dir / "results.json").read_text())["results"]
                 if r["order"] == order and r["smoothing_spec"] == spec]
    arpa = tmp_path / "model.arpa"
    assert main(["export", str(run_dir), "--order", str(order), "--smoothing", smoothing, "--arpa", str(arpa)]) == 0
    nll = query_nll(kenlm, arpa, folder / "test.sp", predictions(folder / "test.txt"))
    assert nll == pytest.approx(record["test_nll"], abs=1e-4)
    capsys.readouterr()
    assert main(["score", "--arpa", str(arpa), "--file", str(folder / "test.txt"), "--device", "cpu"]) == 0
    assert printed_nll(capsys.readouterr().out) == pytest.approx(record["test_nll"], abs=1e-6)


@pytest.mark.parametrize("order", [2, 3, 4, 5, 6])
def test_lmplz_arpa_scored_by_the_harness_equals_query(split, kenlm, lmplz_arpa, order, capsys):
    folder = split[0]
    arpa = lmplz_arpa(order)  # built once for this and tests/models/test_arpa.py
    expected = query_nll(kenlm, arpa, folder / "test.sp", predictions(folder / "test.txt"))
    capsys.readouterr()
    assert main(["score", "--arpa", str(arpa), "--file", str(folder / "test.txt"), "--device", "cpu"]) == 0
    out, err = capsys.readouterr()
    assert printed_nll(out) == pytest.approx(expected, abs=1e-4) and err.startswith("model: ARPA file")


def test_sample_from_an_arpa_file(kenlm, lmplz_arpa, capsys):
    arpa = lmplz_arpa(3)
    capsys.readouterr()
    assert main(["sample", "--arpa", str(arpa), "--num", "10", "--device", "cpu"]) == 0
    names = capsys.readouterr().out.split()
    assert len(names) == 10 and all(n and not n.endswith(".") for n in names)  # a name a line, no end token


def test_a_malformed_arpa_is_a_one_line_error(tmp_path, capsys):
    from tests.test_cli import assert_clean_error_in_process

    bad = tmp_path / "bad.arpa"
    bad.write_text("\\data\\\nngram 1=3\n\n\\1-grams:\n-1.0\t<s>\n")
    assert_clean_error_in_process(capsys, ["score", "--arpa", str(bad), "--file", str(bad)], "truncated or malformed")


def test_export_of_an_unknown_run_folder(tmp_path, capsys):
    from tests.test_cli import assert_clean_error_in_process

    assert_clean_error_in_process(capsys, ["export", str(tmp_path / "nope"), "--order", "3", "--smoothing", "kn",
                                           "--arpa", str(tmp_path / "x.arpa")], "does not exist")


def test_an_arpa_file_as_a_run_configuration(small_split, kenlm, tmp_path, capsys):
    """run --arpa: lmplz's file evaluated on the run's splits, its test NLL equal to query's."""
    folder = small_split[0]
    arpa = run_lmplz(kenlm, folder / "train.sp", 3, tmp_path / "lmplz.arpa")
    out = tmp_path / "run"
    assert main(["run", "--split", f"files:{folder}/train.txt,{folder}/dev.txt,{folder}/test.txt", "--orders", "3",
                 "--smoothing", "kn", "--arpa", str(arpa), "--samples", "3", "--device", "cpu", "--quiet", "--no-figures", "--out", str(out)]) == 0
    (record,) = [r for r in json.loads((out / "results.json").read_text())["results"] if r["method"] == "arpa"]
    expected = query_nll(kenlm, arpa, folder / "test.sp", predictions(folder / "test.txt"))
    assert record["test_nll"] == pytest.approx(expected, abs=1e-4) and (out / record["model_file"]).is_file()
    from tests.test_cli import assert_clean_error_in_process

    assert_clean_error_in_process(capsys, ["run", "--orders", "2", "--arpa", str(arpa), "--out", str(tmp_path / "x")],
                                  "order-3 model", "add 3")


@pytest.mark.parametrize("names, says", [("abba\nbab\nabc\ncab\nba\n" * 4, "corpus only: ['c'], file only: []"),
                                         ("aa\naaa\na\naaaa\naaaaa\n" * 4, "corpus only: [], file only: ['b']")])
def test_an_arpa_file_of_other_characters_is_refused_before_any_fit(tmp_path, capsys, monkeypatch, names, says):
    """Not a failed configuration after the others ran: one line, exit 2, no run folder."""
    import harness.run.runner as runner
    from tests.models.test_arpa import HAND_WRITTEN  # characters a and b, order 3
    from tests.test_cli import assert_clean_error_in_process

    def no_run(*args, **kwargs):
        raise AssertionError("the run began")

    monkeypatch.setattr(runner, "run_grid", no_run)
    arpa, corpus, out = tmp_path / "ab.arpa", tmp_path / "names.txt", tmp_path / "run"
    arpa.write_text(HAND_WRITTEN)
    corpus.write_text(names)
    assert_clean_error_in_process(capsys, ["run", "--corpus", str(corpus), "--orders", "3", "--smoothing", "kn", "--arpa", str(arpa),
                                           "--device", "cpu", "--quiet", "--out", str(out)], "its characters are not the corpus's", says)
    assert not out.exists()


@pytest.mark.parametrize("cut, says", [(lambda text: text[:text.index("\\end\\")], "has no \\end\\ line"),
                                       (lambda text: text[:text.index("-0.45")], "truncated or malformed"),
                                       (lambda text: text.replace("-0.5", "nan", 1), "not a finite number")])
def test_a_truncated_arpa_is_refused_before_any_fit(tmp_path, capsys, monkeypatch, cut, says):
    """Read whole before the grid runs: it was a failed configuration (exit 1) found after the rest had trained."""
    import harness.run.runner as runner
    from tests.models.test_arpa import HAND_WRITTEN  # characters a and b, order 3
    from tests.test_cli import assert_clean_error_in_process

    def no_run(*args, **kwargs):
        raise AssertionError("the run began")

    monkeypatch.setattr(runner, "run_grid", no_run)
    arpa, corpus, out = tmp_path / "ab.arpa", tmp_path / "names.txt", tmp_path / "run"
    damaged = cut(HAND_WRITTEN)
    assert damaged != HAND_WRITTEN
    arpa.write_text(damaged)
    corpus.write_text("abba\nbab\nab\nba\n" * 4)
    assert_clean_error_in_process(capsys, ["run", "--corpus", str(corpus), "--orders", "3", "--smoothing", "kn", "--arpa", str(arpa),
                                           "--device", "cpu", "--quiet", "--out", str(out)], f"ARPA file {str(arpa)!r}", says)
    assert not out.exists()
