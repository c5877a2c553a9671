"""Tensor n-gram counts against the lecture's dict counting, done by brute force in Python."""
import random
from collections import Counter

import pytest
import torch

from harness.data.corpus import load_corpus, pack
from harness.data.ngrams import count, windows


def brute_force_counts(words, weights, order):
    """The lecture's loop: pad with order-1 '.', add one '.', count (context, next) with weights."""
    counts = Counter()
    for word, w in zip(words, weights):
        chs = ["."] * (order - 1) + list(word) + ["."]
        for i in range(order - 1, len(chs)):
            counts[(tuple(chs[i - order + 1:i]), chs[i])] += w
    return counts


ALPHABETS = ["abc", "abcdefghijklmnopqrstuvwxyz", "aéßøñ李龙Ω-'"]


@pytest.mark.parametrize("order", [1, 2, 3, 4])
@pytest.mark.parametrize("alphabet", ALPHABETS)
def test_counts_match_brute_force(order, alphabet):
    rng = random.Random(order * 100 + len(alphabet))
    words = list({"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 7))) for _ in range(60)})
    weights = [rng.randint(1, 5) for _ in words]
    corpus = pack("random", words, weights, "cpu")
    counts = count(windows(corpus, order))
    V = corpus.vocab.size
    expected = torch.zeros_like(counts)
    for (context, nxt), w in brute_force_counts(words, weights, order).items():
        row = 0
        for ch in context:
            row = row * V + (0 if ch == "." else corpus.vocab.stoi[ch])
        expected[row, 0 if nxt == "." else corpus.vocab.stoi[nxt]] += w
    assert torch.equal(counts, expected)


def test_windows_of_emma():
    corpus = pack("t", ["emma"], None, "cpu", vocab=None)
    V = corpus.vocab.size  # . a e m
    win = windows(corpus, 3)
    itos = corpus.vocab.itos
    pairs = [(itos[c // V] + itos[c % V], itos[t]) for c, t in zip(win.context.tolist(), win.target.tolist())]
    assert pairs == [("..", "e"), (".e", "m"), ("em", "m"), ("mm", "a"), ("ma", ".")]


def test_lecture_bigram_counts(names_path):
    corpus = load_corpus(str(names_path))
    win = windows(corpus, 2)
    assert win.total_weight() == 228146
    counts = count(win)
    assert counts[0].sum() == 32033
    assert counts.sum() == 228146
    # the lecture's most common bigram is n. (6763) and .a starts 4410 names
    stoi = corpus.vocab.stoi
    assert counts[stoi["n"], 0] == 6763 and counts[0, stoi["a"]] == 4410
