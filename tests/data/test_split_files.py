"""Same data as other toolkits: split files in, split files out, whole-file scoring."""
import json
import math
import random

import pytest

from harness.cli import main
from harness.run.report import load_results


def records(out):
    return load_results(out)["results"]


def files_spec(folder, ext="txt"):
    return "files:" + ",".join(str(folder / "split" / f"{s}.{ext}") for s in ("train", "dev", "test"))


def test_a_written_split_reproduces_the_run_and_scores_equal(names_path, tmp_path, capsys):
    # 3,000 lines of names.txt: what is on trial is the split files' round trip, not names.txt's figures
    corpus = tmp_path / "names3000.txt"
    corpus.write_text("".join(names_path.read_text().splitlines(keepends=True)[:3000]))
    first = tmp_path / "first"
    assert main(["run", "--no-figures", "--corpus", str(corpus), "--orders", "2,3", "--smoothing", "0.1", "--samples", "2",
                 "--quiet", "--out", str(first)]) == 0
    again = tmp_path / "again"
    assert main(["run", "--no-figures", "--split", files_spec(first), "--orders", "2,3", "--smoothing", "0.1", "--samples", "2",
                 "--quiet", "--out", str(again)]) == 0
    for a, b in zip(records(first), records(again)):
        assert (a["train_nll"], a["dev_nll"], a["test_nll"]) == (b["train_nll"], b["dev_nll"], b["test_nll"])
    assert "[split/test.txt](split/test.txt)" in (first / "report.md").read_text()
    capsys.readouterr()
    # score --file of the test split under the same model (same split seed, order, k) = the run's test NLL
    assert main(["score", "--corpus", str(corpus), "--split", "seeded", "--order", "3", "--smoothing", "0.1",
                 "--file", str(first / "split" / "test.txt"), "--per-item", str(tmp_path / "items.csv")]) == 0
    line = capsys.readouterr().out.strip().splitlines()[0]
    nll = float(line.split("mean NLL ")[1].split()[0])
    assert nll == pytest.approx(records(first)[1]["test_nll"], abs=5e-7)
    import pandas as pd

    items = pd.read_csv(tmp_path / "items.csv", keep_default_na=False)
    total = (items["nll_nats"] * items["copies"]).sum() / (items["predicted_chars"] * items["copies"]).sum()
    assert total == pytest.approx(records(first)[1]["test_nll"], rel=1e-9)


def test_weighted_split_round_trips_through_csv(tmp_path):
    first = tmp_path / "first"
    assert main(["run", "--no-figures", "--corpus", "ssa-births:1900", "--orders", "2", "--smoothing", "1", "--samples", "0",
                 "--quiet", "--out", str(first)]) == 0
    assert (first / "split" / "train.csv").read_text().startswith("item,weight\n")
    again = tmp_path / "again"
    assert main(["run", "--no-figures", "--split", files_spec(first, "csv"), "--orders", "2", "--smoothing", "1", "--samples", "0",
                 "--quiet", "--out", str(again)]) == 0
    assert [r["test_nll"] for r in records(first)] == [r["test_nll"] for r in records(again)]


def test_a_character_only_test_contains(tmp_path, capsys):
    (tmp_path / "train.txt").write_text("anna\nbob\nabba\n", encoding="utf-8")
    (tmp_path / "dev.txt").write_text("ab\nanna\n", encoding="utf-8")
    (tmp_path / "test.txt").write_text("zoë\nbob\n", encoding="utf-8")
    spec = "files:" + ",".join(str(tmp_path / f) for f in ("train.txt", "dev.txt", "test.txt"))
    out = tmp_path / "run"
    assert main(["run", "--no-figures", "--split", spec, "--orders", "2", "--smoothing", "0,0.5", "--samples", "3", "--quiet", "--out", str(out)]) == 0
    unsmoothed, smoothed = records(out)
    assert unsmoothed["test_nll"] == math.inf and not math.isnan(unsmoothed["test_nll"])
    assert math.isfinite(smoothed["test_nll"])
    saved = json.loads((out / "results.json").read_text())
    assert "ë" in saved["run"]["corpus"]["vocab"] and "z" in saved["run"]["corpus"]["vocab"]
    assert saved["run"]["corpus"]["split_overlap"] == {"train&dev": 1, "train&test": 1, "dev&test": 0}
    assert "train & dev: 1" in (out / "report.md").read_text()


def test_reference_convention_through_files(names_path, tmp_path):
    """REFERENCE.md: random.seed(42); shuffle; 80/10/10 of the lines; add-k trigram k = 0.1 -> dev 2.2225, test 2.2240."""
    words = names_path.read_text().splitlines()
    random.seed(42)
    random.shuffle(words)
    n1, n2 = int(0.8 * len(words)), int(0.9 * len(words))
    for name, part in (("train", words[:n1]), ("dev", words[n1:n2]), ("test", words[n2:])):
        (tmp_path / f"{name}.txt").write_text("\n".join(part) + "\n")
    spec = "files:" + ",".join(str(tmp_path / f"{s}.txt") for s in ("train", "dev", "test"))
    out = tmp_path / "run"
    assert main(["run", "--no-figures", "--split", spec, "--orders", "3", "--smoothing", "0.1", "--samples", "0", "--quiet", "--out", str(out)]) == 0
    (r,) = records(out)
    assert r["dev_nll"] == pytest.approx(2.2225, abs=5e-5)
    assert r["test_nll"] == pytest.approx(2.2240, abs=5e-5)


def test_compare_two_runs(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    for out, k in ((a, "0.1"), (b, "1")):
        assert main(["run", "--no-figures", "--corpus", "ssa:1900", "--orders", "2,3", "--smoothing", k, "--samples", "2", "--quiet", "--out", str(out)]) == 0
    capsys.readouterr()
    # different k: no shared key, so each order's one configuration in A is compared with B's of that order
    assert main(["compare", str(a), str(b)]) == 0
    text = capsys.readouterr().out
    ra, rb = records(a), records(b)
    for order, (x, y) in enumerate(zip(ra, rb), 2):
        row = next(line for line in text.splitlines() if line.startswith(f"| order={order} count smoothing=0.1 → order={order} count smoothing=1.0"))
        assert f"{y['dev_nll'] - x['dev_nll']:+.5f}" in row and "noise" in row
    assert "paired over the same items" in text and "Only in" not in text
    c = tmp_path / "c"
    assert main(["run", "--no-figures", "--corpus", "ssa:1900", "--orders", "2,3", "--smoothing", "0.1", "--samples", "2", "--seed", "7",
                 "--quiet", "--out", str(c)]) == 0
    capsys.readouterr()
    assert main(["compare", str(a), str(c)]) == 0
    text = capsys.readouterr().out
    ra, rc = records(a), records(c)
    expected = f"{rc[1]['dev_nll'] - ra[1]['dev_nll']:.5f}"
    assert expected in text and "order=3 count smoothing=0.1" in text
    assert (c / "compare-vs-a.md").read_text().startswith("# Compare runs")


def test_bad_split_specs(tmp_path, capsys):
    assert main(["run", "--split", f"files:{tmp_path / 'nope.txt'}"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["run", "--split", "halves"]) == 2
    assert "files:TRAIN,DEV,TEST" in capsys.readouterr().err


def test_a_run_links_split_files_of_one_kind(tmp_path):
    from harness.data.corpus import pack
    from harness.data.splits import EXPAND_LINES_MAX, read_split_file, split_corpus, write_split

    items = [f"name{chr(97 + i)}{chr(97 + j)}" for i in range(6) for j in range(5)]
    weighted = pack("w", items, [1 + (i * 7) % 5 for i in range(len(items))], "cpu")
    assert all(link.endswith(".txt") for link in write_split(tmp_path / "small", split_corpus(weighted, 1)).values())
    # past the line cap in one split (train), every split links its CSV
    weighted = pack("w", items, [1 + (i * 7) % 5 + (EXPAND_LINES_MAX if i == 0 else 0) for i in range(len(items))], "cpu")
    links = write_split(tmp_path / "w", split_corpus(weighted, 1))
    assert all(link.endswith(".csv") for link in links.values())
    for name, link in links.items():
        got_items, got_weights = read_split_file(tmp_path / "w" / link)
        part = split_corpus(weighted, 1)[name]
        assert got_items == list(part.items) and got_weights == part.item_weights().tolist()
    plain = pack("p", items, None, "cpu")
    assert all(link.endswith(".txt") for link in write_split(tmp_path / "p", split_corpus(plain, 1)).values())
