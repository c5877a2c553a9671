"""Every family answers the model protocol the same way: item-level methods agree with the n-gram
methods computed by hand, dense tables agree with the rows, and evaluation through the one fit path
gives the old numbers."""
import math

import pytest
import torch

from harness.core.constants import LECTURE_SEED
from harness.data.corpus import load_corpus, pack
from harness.data.ngrams import windows
from harness.evaluation.evaluate import corpus_nll, item_nll, mean_nll
from harness.models.count import CountModel, SparseCountModel
from harness.models.families import FAMILIES, FitData, count_point, fit_configuration
from harness.models.gradient import GradientModel
from harness.models.protocol import LanguageModel, NGramModel
from harness.models.smoothed import fit_smoothed
from harness.run.config import DEFAULTS, METHODS
from harness.train.fit import GradientSettings, fit_gradient

TRAIN = ["emma", "olivia", "ava", "isabella", "sophia", "mia", "amelia", "harper", "evelyn", "abigail"]
HELD = ["ella", "avery", "sofia", "zoe"]  # z is in the vocabulary below but never seen in TRAIN


def _train(order):
    corpus = pack("train", TRAIN, [3, 1, 2, 1, 1, 4, 1, 1, 2, 1], "cpu", vocab=pack("v", ["abcdefghijklmnopqrstuvwxyz"], None, "cpu").vocab)
    return corpus, windows(corpus, order)


def _fit(family, order):
    corpus, win = _train(order)
    dev = windows(pack("dev", HELD, None, "cpu", vocab=corpus.vocab), order)
    if family == "dense add-k":
        return corpus, CountModel.fit(win, 0.5)
    if family == "sparse add-k":
        return corpus, SparseCountModel.fit(win, 0.5)
    if family in ("kn", "wb", "interp"):
        return corpus, fit_smoothed(family, win, dev)[0]
    if family == "gradient":
        return corpus, fit_gradient(win, GradientSettings(steps=5, lr=10.0), "cpu").model
    if family == "gradient additive":
        return corpus, fit_gradient(win, GradientSettings(steps=5, lr=10.0, additive=True), "cpu").model
    raise AssertionError(family)


FAMILY_CASES = ["dense add-k", "sparse add-k", "kn", "wb", "interp", "gradient", "gradient additive"]


def _context_id(tokens, order, V):
    """The last order - 1 tokens of a boundary-padded prefix as one base-V id, by hand."""
    padded = [0] * (order - 1) + list(tokens)
    cid = 0
    for t in padded[len(padded) - (order - 1):] if order > 1 else []:
        cid = cid * V + t
    return cid


@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("family", FAMILY_CASES)
def test_item_methods_agree_with_a_window_by_window_computation(family, order):
    corpus, model = _fit(family, order)
    assert isinstance(model, NGramModel) and isinstance(model, LanguageModel)
    assert model.order == order and model.vocab_size == corpus.vocab.size
    held = pack("held", HELD, [2, 1, 1, 3], "cpu", vocab=corpus.vocab)
    V = corpus.vocab.size
    table = model.log_prob_table()
    expected = []
    for name in HELD:
        ids = corpus.vocab.encode(name) + [0]
        for j, target in enumerate(ids):
            cid = _context_id(ids[:j], order, V)
            if table is not None:  # the model's own dense table, else its own score of one pair
                expected.append(float(table[cid, target]))
            else:
                expected.append(float(model.score(torch.tensor([cid]), torch.tensor([target]))[0]))
    got = model.token_log_probs(held)
    assert got.dtype == torch.float64 and got.shape == (len(expected),)
    torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=1e-12)
    # evaluation of a corpus (any family) equals evaluation of its windows (n-gram families), and the
    # per-item sums add up to it
    weights = torch.tensor([2, 1, 1, 3], dtype=torch.float64)
    lengths = torch.tensor([len(n) + 1 for n in HELD], dtype=torch.float64)
    assert corpus_nll(model, held) == pytest.approx(mean_nll(model, windows(held, order)), rel=1e-12)
    nats, n = item_nll(model, held)
    assert n.tolist() == lengths.long().tolist()
    assert float((nats * weights).sum() / (lengths * weights).sum()) == pytest.approx(corpus_nll(model, held), rel=1e-12)


@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("family", FAMILY_CASES)
def test_prefix_rows_are_the_next_token_rows_of_the_right_context(family, order):
    corpus, model = _fit(family, order)
    V = corpus.vocab.size
    prefixes = [[], [5], [13, 13], [1, 22, 1], [26, 26, 26, 26]]
    for prefix in prefixes:
        p = torch.tensor([prefix], dtype=torch.int64).reshape(1, len(prefix))
        row = model.prefix_next_probs(p)
        assert row.shape == (1, V) and row.dtype == torch.float32
        assert float(row.sum()) == pytest.approx(1.0, abs=1e-5)
        want = model.next_token_probs(torch.tensor([_context_id(prefix, order, V)]))
        torch.testing.assert_close(row, want, rtol=0, atol=0)
    batch = torch.tensor([[0, 0, 5], [13, 13, 1], [1, 22, 1]])
    rows = model.prefix_next_probs(batch)
    want = model.next_token_probs(torch.tensor([_context_id(r, order, V) for r in batch.tolist()]))
    torch.testing.assert_close(rows, want, rtol=0, atol=0)
    probs = model.probs_table()
    if probs is not None:  # a dense model's float32 table is its next-token rows
        contexts = torch.arange(V ** (order - 1))
        torch.testing.assert_close(model.next_token_probs(contexts), probs, rtol=0, atol=0)
        torch.testing.assert_close(probs.double().log(), model.log_prob_table(), rtol=1e-5, atol=1e-5)


def test_dense_only_where_a_table_exists():
    _, sparse = _fit("sparse add-k", 2)
    _, kn = _fit("kn", 2)
    for model in (sparse, kn):
        assert model.log_prob_table() is None and model.probs_table() is None
    _, dense = _fit("dense add-k", 2)
    assert dense.log_prob_table().shape == (27, 27)
    assert isinstance(_fit("gradient", 2)[1], GradientModel)


def test_families_are_named_in_one_place():
    assert tuple(FAMILIES) == ("count", "gradient", "mlp", "cnn", "gru", "transformer", "arpa", "mix")
    assert METHODS == tuple(FAMILIES)[:-1]  # --methods takes all but the mixture, which --mix adds


@pytest.mark.parametrize("spec, expected", [("0.0", 2.454014), ("1.0", 2.454577)])
def test_the_one_fit_path_gives_the_lectures_numbers(names_path, spec, expected):
    corpus = load_corpus(str(names_path))
    win = windows(corpus, 2)
    fit = fit_configuration(count_point(2, spec), FitData(win, None, "cpu", DEFAULTS))
    assert fit.record["smoothing"] == float(spec) and fit.record["tuning"] == []
    assert mean_nll(fit.model, win) == pytest.approx(expected, abs=5e-7)
    assert corpus_nll(fit.model, corpus) == pytest.approx(expected, abs=5e-7)


def test_the_one_fit_path_fits_smoothed_and_gradient_models(names_path):
    corpus = load_corpus(str(names_path))
    win = windows(corpus, 2)
    for spec in ("kn", "wb"):
        fit = fit_configuration(count_point(2, spec), FitData(win, None, "cpu", DEFAULTS))
        assert fit.record["smoothing"] is None
        assert mean_nll(fit.model, win) == pytest.approx(mean_nll(fit_smoothed(spec, win, None)[0], win), rel=1e-12)
    point = {"order": 2, "method": "gradient", "loss": "torch", "smoothing_spec": None, "reg": 0.01}
    fit = fit_configuration(point, FitData(win, None, "cpu", DEFAULTS))
    # the lecture's gradient bigram: loss 3.768619 at step 1, 2.490130 after 100 (REFERENCE.md)
    assert fit.record["train_losses"][0] == pytest.approx(3.768619, abs=2e-6)
    assert fit.record["train_losses"][-1] == pytest.approx(2.490130, abs=2e-6)
    assert DEFAULTS.seed == LECTURE_SEED
    assert math.isfinite(fit.record["steps_per_second"])
