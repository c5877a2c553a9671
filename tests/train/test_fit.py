"""Gradient n-gram models: the lecture's figures through every loss backend that runs here."""
import math

import pytest
import torch

import kernels
from harness.run.config import K_GRID
from harness.data.corpus import load_corpus, pack
from harness.evaluation.evaluate import mean_nll
from harness.data.ngrams import windows
from harness.core.constants import LECTURE_SEED
from harness.evaluation.sampling import sample_lecture
from harness.data.splits import split_corpus
from harness.train.fit import GradientSettings, fit_count, fit_gradient

REFERENCE_LOSSES = {1: 3.768619, 10: 2.718831, 100: 2.490130}


@pytest.fixture(scope="module")
def names(names_path):
    return load_corpus(str(names_path))


@pytest.fixture(scope="module")
def bigrams(names):
    return windows(names, 2)


def test_lecture_gradient_bigram_full_run(bigrams, names):
    """100 steps of W -= 50 * grad through the exact sufficient-statistics step, and its samples."""
    fit = fit_gradient(bigrams, GradientSettings(input="counts"), "cpu")
    for step, expected in REFERENCE_LOSSES.items():
        assert fit.losses[step - 1] == pytest.approx(expected, abs=2e-6)
    g = torch.Generator().manual_seed(LECTURE_SEED)
    assert sample_lecture(fit.model, names.vocab, 5, g) == [
        "cexze", "momasurailezityha", "konimittain", "llayn", "ka"]


@pytest.mark.parametrize("loss, input", [("torch", "table"), ("torch", "index"), ("torch", "onehot"),
                                         ("manual", "table"), ("triton", "table"),
                                         ("compiled", "table")])
def test_lecture_first_ten_steps_through_each_backend(bigrams, loss, input):
    ok, why = kernels.backend_available(loss, "cpu")
    if not ok:
        pytest.skip(f"backend {loss} cannot run here: {why}")
    fit = fit_gradient(bigrams, GradientSettings(steps=10, loss=loss, input=input), "cpu")
    assert fit.losses[0] == pytest.approx(REFERENCE_LOSSES[1], abs=2e-6)
    assert fit.losses[9] == pytest.approx(REFERENCE_LOSSES[10], abs=2e-6)


def test_onehot_equals_indexing_step_by_step():
    """Lecture exercise E04: one_hot(ix) @ W and W[ix] train the same model."""
    corpus = pack("t", ["emma", "olivia", "ava", "isabella", "sophia", "mia"], [3, 1, 2, 1, 1, 5], "cpu")
    for order, additive in ((2, False), (3, False), (3, True)):
        win = windows(corpus, order)
        fits = [fit_gradient(win, GradientSettings(steps=20, lr=5, input=inp, additive=additive), "cpu")
                for inp in ("onehot", "index")]
        assert fits[0].losses == pytest.approx(fits[1].losses, rel=1e-6)
        for a, b in zip(fits[0].model.tables, fits[1].model.tables):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_two_backends_agree_at_every_step(bigrams):
    ok, why = kernels.backend_available("triton", "cpu")
    if not ok:
        pytest.skip(f"triton cannot run here: {why}")
    sub = windows(pack("t", ["emma", "olivia", "ava", "isabella", "sophia", "mia", "zoe"], None, "cpu"), 3)
    a = fit_gradient(sub, GradientSettings(steps=15, lr=10, loss="torch"), "cpu")
    b = fit_gradient(sub, GradientSettings(steps=15, lr=10, loss="triton"), "cpu")
    assert a.losses == pytest.approx(b.losses, rel=1e-5)


@pytest.mark.parametrize("order, tolerance", [(2, 0.01), (3, 0.02)])
def test_gradient_model_converges_to_the_count_model(names, order, tolerance):
    """The lecture's point: both roads lead to one model (dev NLL within 0.01 / 0.02)."""
    splits = split_corpus(names, seed=42)
    train, dev = windows(splits["train"], order), windows(splits["dev"], order)
    count = fit_count(train, dev, None, K_GRID)
    count_dev = mean_nll(count.model, dev)
    fit = fit_gradient(train, GradientSettings(steps=3000, lr=50, reg=0.001, input="counts"), "cpu")
    grad_dev = mean_nll(fit.model, dev)
    assert math.isfinite(grad_dev)
    assert abs(grad_dev - count_dev) < tolerance


def test_counts_step_equals_the_per_row_step(bigrams):
    a = fit_gradient(bigrams, GradientSettings(steps=5, input="counts"), "cpu")
    b = fit_gradient(bigrams, GradientSettings(steps=5, input="table", loss="torch"), "cpu")
    assert a.losses == pytest.approx(b.losses, rel=1e-5)  # float32 sums in another order
    torch.testing.assert_close(a.model.tables[0], b.model.tables[0], rtol=0, atol=1e-3)  # lr 50 magnifies rounding


def test_minibatch_training_is_seeded_and_learns(bigrams):
    settings = GradientSettings(steps=60, lr=20, batch_size=512)
    a = fit_gradient(bigrams, settings, "cpu")
    b = fit_gradient(bigrams, settings, "cpu")
    assert a.losses == b.losses
    assert sum(a.losses[-10:]) / 10 < a.losses[0] - 0.5
