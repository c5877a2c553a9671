"""The counting suite's pieces: the lecture's dict loop agrees with the harness's counts; the baselines' sample.

The whole `bench --counting` run (counting.csv, counting.md, merging, --expand) is exercised by
tests/data/test_scale.py::test_bench_counting_quick_structure.
"""
import pytest

from harness.bench.counting import baseline_words, lecture_dict_counts
from harness.data.corpus import pack
from harness.data.ngrams import count, windows

WORDS = ["emma", "ava", "emma", "mia", "ava", "emma", "liam", "noah", "ann", "anna"]


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_lecture_dict_counts_match_the_harness_counts(order):
    unique = list(dict.fromkeys(WORDS))
    corpus = pack("tiny", unique, [WORDS.count(w) for w in unique], "cpu")
    counts = count(windows(corpus, order))
    lecture = lecture_dict_counts(WORDS, order)
    assert sum(lecture.values()) == sum(len(w) + 1 for w in WORDS)  # every character and the end, once
    # the same n-grams with the same counts: as multisets (the harness numbers contexts its own way)
    assert sorted(lecture.values()) == sorted(int(c) for c in counts[counts > 0].tolist())


def test_baseline_words_are_every_copy_or_a_weighted_sample():
    unique = list(dict.fromkeys(WORDS))
    corpus = pack("tiny", unique, [WORDS.count(w) for w in unique], "cpu")
    words, note = baseline_words(corpus, max_chars=10_000, seed=1)
    assert sorted(words) == sorted(WORDS) and note == "all rows"
    words, note = baseline_words(corpus, max_chars=12, seed=1)
    assert 1 <= len(words) < len(WORDS) and set(words) <= set(WORDS) and "seeded sample" in note
    assert baseline_words(corpus, max_chars=12, seed=1) == (words, note)  # seeded: the same sample again


def test_bench_counting_records_threads_and_load(tmp_path):
    import pandas as pd

    from harness.bench.counting import CSV_COLUMNS
    from harness.cli import main

    corpus = tmp_path / "names.txt"
    corpus.write_text("\n".join(WORDS) + "\n")
    out = tmp_path / "counting"
    assert main(["bench", "--counting", "--quick", "--corpus", str(corpus), "--orders", "2", "--threads", "1",
                 "--device", "cpu", "--out", str(out)]) == 0
    df = pd.read_csv(out / "counting.csv", keep_default_na=False, na_values=[""])
    assert list(df.columns) == CSV_COLUMNS and (df["threads"] == 1).all()
    md = (out / "counting.md").read_text()
    harness_rows = df[df["method"].str.startswith("harness")]
    # repeated passes carry their p80/p20 (>= 1), shown in the passes table; one-pass baselines have none
    assert (harness_rows["repeats"] < 3).all() or (harness_rows.loc[harness_rows["repeats"] >= 3, "spread"] >= 1).all()
    assert df.loc[df["method"] == "lecture-dict", "spread"].isna().all() and "p80/p20" in md.split("Harness passes:")[1]
    assert "1 torch CPU thread(s)" in md and f"before: {df['load_avg_start'].iloc[-1]}" in md
