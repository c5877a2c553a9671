"""The mixture of --mix against brute force: EM's λ against a grid minimum of the dev NLL, the mixture's
NLL against a per-token Python sum over the protocol's other path (next-token rows), λ = 1 and 0 as
its components, and sampling through the one batched sampler."""
import math

import pytest
import torch

from harness.core.errors import HarnessError
from harness.data.corpus import pack
from harness.data.ngrams import windows
from harness.evaluation.evaluate import corpus_nll, token_items
from harness.evaluation.sampling import sample_batched
from harness.models.mixture import MixtureModel, fit_lambda_em, mixed_log_probs
from harness.models.neural.common import NeuralSettings
from harness.train.neural import fit_neural
from harness.models.smoothed import fit_smoothed

TRAIN = ["emma", "olivia", "ava", "isabella", "sophia", "mia", "amelia", "harper", "evelyn", "abigail", "emily",
         "ella", "elizabeth", "camila", "luna", "sofia", "avery", "mila", "aria", "scarlett"]
DEV = ["ema", "liv", "bella", "ariana", "zoe"]
DEV_WEIGHTS = [2, 1, 3, 1, 1]


@pytest.fixture(scope="module")
def components():
    """A Kneser-Ney trigram and an MLP trained for a few steps, on one vocabulary, with a weighted dev corpus."""
    items = TRAIN + DEV
    corpus = pack("mix", items, None, "cpu")
    train = corpus.subset(torch.arange(len(TRAIN)))
    dev = pack("dev", DEV, DEV_WEIGHTS, "cpu", vocab=corpus.vocab)
    count, _ = fit_smoothed("kn", windows(train, 3), None)
    settings = NeuralSettings(n_embd=6, n_embd2=10, block_size=4, batch_size=8, lr=0.02, steps=60, warmup_steps=5,
                              eval_interval=60, threads=1)
    neural = fit_neural("mlp", settings, train, None).model
    return count, neural, dev


def token_weights(corpus):
    return corpus.item_weights().to(torch.float64)[token_items(corpus)]


def grid_nll(p_a, p_b, weight, lam):
    """-sum w log(λ p_a + (1 - λ) p_b) / sum w, in plain probabilities (no log-space mixing)."""
    return float(-(weight * torch.log(lam * p_a + (1 - lam) * p_b)).sum() / weight.sum())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_em_lambda_is_the_grid_minimum_of_the_dev_nll(seed):
    generator = torch.Generator().manual_seed(seed)
    n = 501
    p_a = torch.rand(n, generator=generator, dtype=torch.float64) * 0.9 + 0.01
    p_b = torch.rand(n, generator=generator, dtype=torch.float64) * 0.9 + 0.01
    p_b[: n // (seed + 3)] *= 0.2  # a stretch where a is much better, so the optimum is interior and off 0.5
    weight = torch.randint(1, 5, (n,), generator=generator).to(torch.float64)
    em = fit_lambda_em(p_a.log(), p_b.log(), weight)
    grid = [i / 10_000 for i in range(1, 10_000)]
    best = min(grid, key=lambda lam: grid_nll(p_a, p_b, weight, lam))
    assert 0.01 < best < 0.99
    assert em.converged and em.iterations <= 100 and abs(em.lam - best) < 1e-3
    # EM climbs the likelihood: the dev NLL never rises along its path
    nlls = [grid_nll(p_a, p_b, weight, lam) for lam in [0.5, *em.path]]
    assert all(b <= a + 1e-12 for a, b in zip(nlls, nlls[1:]))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_newton_finish_reaches_the_maximum_that_em_creeps_toward(seed):
    """EM's stopping rule (a step under 1e-6) leaves λ about 3e-6 from the maximum on these tokens; the finish
    takes it to the root of the slope. Oracle: a ternary search of the NLL in plain probabilities (good to about
    1e-8, where the flat top of the NLL meets float64), and the slope itself in plain probabilities."""
    generator = torch.Generator().manual_seed(seed)
    n = 501
    p_a = torch.rand(n, generator=generator, dtype=torch.float64) * 0.9 + 0.01
    p_b = torch.rand(n, generator=generator, dtype=torch.float64) * 0.9 + 0.01
    p_b[: n // (seed + 3)] *= 0.2
    weight = torch.randint(1, 5, (n,), generator=generator).to(torch.float64)
    lo, hi = 0.0, 1.0
    for _ in range(200):
        m1, m2 = lo + (hi - lo) / 3, hi - (hi - lo) / 3
        lo, hi = (lo, m2) if grid_nll(p_a, p_b, weight, m1) < grid_nll(p_a, p_b, weight, m2) else (m1, hi)
    oracle = (lo + hi) / 2
    em_only = fit_lambda_em(p_a.log(), p_b.log(), weight, finish=False)
    em = fit_lambda_em(p_a.log(), p_b.log(), weight)
    assert abs(em_only.lam - oracle) > 1e-6  # EM stopped short
    assert abs(em.lam - oracle) < 3e-8 and em.converged and 1 <= em.newton_steps <= 10 and em.path == em_only.path
    slope = float((weight * (p_a - p_b) / (em.lam * p_a + (1 - em.lam) * p_b)).sum())
    assert abs(slope) < 1e-9 * float(weight.sum())
    assert grid_nll(p_a, p_b, weight, em.lam) <= grid_nll(p_a, p_b, weight, em_only.lam)


def test_em_lambda_of_real_components_is_the_grid_minimum(components):
    count, neural, dev = components
    a, b, w = count.token_log_probs(dev), neural.token_log_probs(dev), token_weights(dev)
    em = fit_lambda_em(a, b, w)
    grid = [i / 2000 for i in range(0, 2001)]
    best = min(grid, key=lambda lam: grid_nll(a.exp(), b.exp(), w, lam))
    assert abs(em.lam - best) < 1e-3
    assert corpus_nll(MixtureModel(count, neural, em.lam), dev) <= min(corpus_nll(count, dev), corpus_nll(neural, dev))


def test_mixture_nll_is_the_per_token_python_sum(components):
    """Every dev token's two probabilities from prefix_next_probs (rows, not token_log_probs), mixed and
    summed in Python floats, weighted by the item's copies."""
    count, neural, dev = components
    lam = 0.37
    mixture = MixtureModel(count, neural, lam)
    total, tokens = 0.0, 0.0
    for name, copies in zip(DEV, DEV_WEIGHTS):
        ids = dev.vocab.encode(name) + [0]
        for t, target in enumerate(ids):
            prefix = torch.tensor([ids[:t]], dtype=torch.int64)
            p = lam * float(count.prefix_next_probs(prefix)[0, target]) + (1 - lam) * float(neural.prefix_next_probs(prefix)[0, target])
            total -= copies * math.log(p)
            tokens += copies
    assert corpus_nll(mixture, dev) == pytest.approx(total / tokens, abs=1e-6)


def test_lambda_one_and_zero_are_the_components_exactly(components):
    count, neural, dev = components
    assert torch.equal(MixtureModel(count, neural, 1.0).token_log_probs(dev), count.token_log_probs(dev))
    assert torch.equal(MixtureModel(count, neural, 0.0).token_log_probs(dev), neural.token_log_probs(dev))
    prefix = torch.tensor([[1, 2], [3, 4]])
    torch.testing.assert_close(MixtureModel(count, neural, 1.0).prefix_next_probs(prefix), count.prefix_next_probs(prefix))
    torch.testing.assert_close(MixtureModel(count, neural, 0.0).prefix_next_probs(prefix), neural.prefix_next_probs(prefix))


def test_em_at_the_edges():
    lp = torch.log(torch.tensor([0.2, 0.5, 0.1], dtype=torch.float64))
    same = fit_lambda_em(lp, lp)
    assert same.lam == 0.5 and same.iterations == 1 and same.converged  # equal components: nothing to move λ
    zero = torch.full_like(lp, -math.inf)
    assert fit_lambda_em(lp, zero).lam == 1.0  # b gives every token probability 0: all weight to a, at once
    assert fit_lambda_em(zero, lp).lam == 0.0
    # a token both give 0 says nothing about λ; one only b gives 0 pulls λ toward a (here not to 1: the slope of
    # the log-likelihood at λ = 1 is (0.05 - 0.4) / 0.05 + 0.3 / 0.3 + (0.4 - 0.2) / 0.4 = -5.5 < 0)
    a = torch.log(torch.tensor([0.05, 0.0, 0.3, 0.4], dtype=torch.float64))
    b = torch.log(torch.tensor([0.4, 0.0, 0.0, 0.2], dtype=torch.float64))
    both_dropped = fit_lambda_em(a[[0, 3]], b[[0, 3]]).lam
    with_zero = fit_lambda_em(a[[0, 1, 3]], b[[0, 1, 3]]).lam
    assert with_zero == pytest.approx(both_dropped, abs=1e-12)
    assert both_dropped < fit_lambda_em(a, b).lam < 1.0
    # λ = 0 or 1 in log space: the other component's -inf does not turn into NaN
    assert torch.equal(mixed_log_probs(lp, zero, 1.0), lp) and torch.equal(mixed_log_probs(zero, lp, 0.0), lp)
    stopped = fit_lambda_em(lp, lp - 1.0, max_iterations=3, finish=False)
    assert stopped.iterations == 3 and not stopped.converged
    # a beats b on every token: the maximum is λ = 1, where EM only creeps; the Newton finish puts it there
    finished = fit_lambda_em(lp, lp - 1.0, max_iterations=3)
    assert finished.lam == 1.0 and finished.converged and finished.path == stopped.path


def test_bad_weights_are_refused(components):
    count, neural, _ = components
    for lam in (-0.1, 1.5, float("nan")):
        with pytest.raises(HarnessError, match="λ must lie in"):
            MixtureModel(count, neural, lam)


def test_samples_come_from_the_mixed_rows(components):
    count, neural, dev = components
    names = sample_batched(MixtureModel(count, neural, 0.5), dev.vocab, 8, torch.Generator().manual_seed(1))
    assert len(names) == 8 and all(set(n) <= set(dev.vocab.itos[1:]) for n in names)
    # λ = 1 draws what the count model draws, draw for draw
    assert sample_batched(MixtureModel(count, neural, 1.0), dev.vocab, 8, torch.Generator().manual_seed(1)) == \
        sample_batched(count, dev.vocab, 8, torch.Generator().manual_seed(1))


def test_mix_with_a_missing_kind_is_skipped_saying_which():
    """At run time (the up-front checks passed): every neural configuration failed, so there is nothing to mix."""
    from harness.models.families import FitData, Skipped, fit_configuration

    finished = ({"key": "c", "method": "count", "status": "ok", "dev_nll": 2.0},
                {"key": "m", "method": "mlp", "status": "failed"}, {"key": "g", "method": "gru", "status": "ok", "dev_nll": math.inf})
    point = {"order": None, "method": "mix", "loss": None, "smoothing_spec": None, "reg": None}
    with pytest.raises(Skipped, match="no finished neural configuration with a finite dev NLL"):
        fit_configuration(point, FitData(None, None, "cpu", None, finished=finished))
