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
