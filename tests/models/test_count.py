"""Count models against REFERENCE.md's figures."""
import math

import pytest
import torch

from harness.data.corpus import load_corpus, pack
from harness.evaluation.evaluate import mean_nll
from harness.models.count import CountModel, check_dense_table
from harness.data.ngrams import windows
from harness.data.splits import split_corpus
from harness.core.errors import HarnessError
from harness.train.fit import fit_count
from harness.run.config import K_GRID


@pytest.fixture(scope="module")
def names(names_path):
    return load_corpus(str(names_path))


@pytest.mark.parametrize("k, expected", [(0, 2.454014), (1, 2.454577)])
def test_lecture_nll_on_all_names(names, k, expected):
    win = windows(names, 2)
    assert mean_nll(CountModel.fit(win, k), win) == pytest.approx(expected, abs=5e-7)


def test_unseen_context_is_inf_not_nan():
    train = pack("t", ["ab", "ba"], None, "cpu")
    model = CountModel.fit(windows(train, 3), 0.0)
    lp = model.log_prob_table()
    assert not torch.isnan(lp).any()
    heldout = pack("h", ["aab"], None, "cpu", vocab=train.vocab)  # context "aa" never seen
    assert mean_nll(model, windows(heldout, 3)) == math.inf


def test_probabilities_sum_to_one(names):
    lp = CountModel.fit(windows(names, 3), 0.1).log_prob_table()
    assert torch.allclose(lp.exp().sum(1), torch.ones(lp.shape[0], dtype=lp.dtype))


def test_trigram_beats_bigram_on_dev(names):
    splits = split_corpus(names, seed=42)
    dev_nll = {}
    for order in (2, 3):
        fit = fit_count(windows(splits["train"], order), windows(splits["dev"], order), None, K_GRID)
        assert fit.model.k > 0
        dev_nll[order] = mean_nll(fit.model, windows(splits["dev"], order))
        assert math.isfinite(dev_nll[order])
    # REFERENCE.md, split by unique name: about 2.457 (bigram) and 2.234 (trigram) on dev
    assert dev_nll[2] == pytest.approx(2.457, abs=0.02)
    assert dev_nll[3] == pytest.approx(2.234, abs=0.02)
    assert dev_nll[3] < dev_nll[2] - 0.15


def test_negative_k_and_oversized_tables_are_errors():
    with pytest.raises(HarnessError, match="k must be >= 0"):
        CountModel.fit(windows(pack("t", ["ab"], None, "cpu"), 2), -1).log_prob_table()
    with pytest.raises(HarnessError, match="budget"):
        check_dense_table(4000, 3)
