"""Training the neural families: it learns, it honours weights, it resumes exactly, its loss
backends agree, and it stops, keeps and saves what it says it does."""
import math
import random

import pytest
import torch

import kernels
from harness.core.errors import HarnessError
from harness.data.corpus import pack
from harness.data.splits import split_corpus
from harness.models.neural.common import NeuralSettings
from harness.models.neural.families import FAMILIES
from harness.evaluation.evaluate import corpus_nll
from harness.evaluation.sampling import sample_batched
from harness.train.neural import BEST, CHECKPOINT, default_threads, fit_neural, load_model, lr_at

TINY = dict(n_embd=8, n_embd2=16, n_layer=1, n_head=2, batch_size=16, warmup_steps=5, eval_interval=10, threads=1)


def syllable_names(n, seed=0):
    """n distinct made-up names from a few syllables: structure a tiny model can learn in steps."""
    rng = random.Random(seed)
    syllables = ["ka", "ri", "na", "lo", "mi", "su", "te", "ba", "ro", "el"]
    names = set()
    while len(names) < n:
        names.add("".join(rng.choice(syllables) for _ in range(rng.randint(1, 3))))
    return sorted(names)


@pytest.fixture(scope="module")
def split():
    corpus = pack("syllables", syllable_names(300), None, "cpu")
    return split_corpus(corpus, seed=1)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_training_lowers_dev_nll(split, family):
    settings = NeuralSettings(**TINY, steps=60, lr=1e-2)
    fit = fit_neural(family, settings, split["train"], split["dev"])
    curve = [r["dev_nll"] for r in fit.dev_curve]
    assert len(curve) == 6 and len(fit.train_losses) == 60 and fit.steps == 60
    assert curve[-1] < curve[0] - 0.3  # from about log(V) = 2.5 to well below
    assert fit.best_dev_nll == min(curve) and fit.dev_curve[[r["step"] for r in fit.dev_curve].index(fit.best_step)]["dev_nll"] == min(curve)
    assert corpus_nll(fit.model, split["dev"]) == pytest.approx(fit.best_dev_nll, abs=1e-12)  # the best weights are the ones returned
    per_item = split["train"].num_predictions() / split["train"].num_items()  # expected tokens per draw
    assert 0.85 < fit.tokens / (60 * 16 * per_item) < 1.15


@pytest.mark.parametrize("family", list(FAMILIES))
def test_each_family_overfits_one_name(family):
    """One name, every token predictable from its prefix: the loss must go to about zero."""
    corpus = pack("one", ["kalorimi"], None, "cpu")
    settings = NeuralSettings(**{**TINY, "n_embd2": 32}, steps=150, lr=2e-2, weight_decay=0.0)
    fit = fit_neural(family, settings, corpus, None)
    assert fit.train_losses[0] > 2.0 and fit.train_losses[-1] < 0.05
    assert corpus_nll(fit.model, corpus) < 0.05


def test_training_draws_items_in_proportion_to_their_weights():
    """A 99:1 weighted corpus trains like 99 copies against 1: the first letter's probability
    follows the weights, which a uniform draw of the two unique items would put near 1/2."""
    corpus = pack("weighted", ["aaa", "bbb"], [99, 1], "cpu")
    settings = NeuralSettings(**TINY, steps=150, lr=2e-2, weight_decay=0.0)
    fit = fit_neural("mlp", settings, corpus, None)
    probs = fit.model.prefix_next_probs(torch.zeros((1, 0), dtype=torch.int64))[0]
    a, b = corpus.vocab.stoi["a"], corpus.vocab.stoi["b"]
    assert 0.9 < float(probs[a]) < 0.999 and float(probs[b]) < 0.1
    # and the draw itself: torch.multinomial over the weights with the seeded generator
    g = torch.Generator().manual_seed(3)
    w = torch.tensor([1.0, 2.0, 7.0], dtype=torch.float64)
    share = torch.bincount(torch.multinomial(w, 20000, replacement=True, generator=g), minlength=3) / 20000
    for got, p in zip(share.tolist(), [0.1, 0.2, 0.7]):
        assert abs(got - p) < 4 * math.sqrt(p * (1 - p) / 20000)


class Interrupt(Exception):
    pass


@pytest.mark.parametrize("family", ["transformer", "gru", "cnn"])
def test_resume_gives_the_uninterrupted_losses(split, family, tmp_path):
    """2N steps straight vs N steps, an interrupt, and a resume: the same losses, exactly (dropout on,
    so the dropout RNG must be restored too, not just the batch sampler's)."""
    settings = NeuralSettings(**TINY, steps=40, lr=1e-2, dropout=0.2)
    whole = fit_neural(family, settings, split["train"], split["dev"], checkpoint_dir=tmp_path / "whole")

    def stop_at_20(record):
        if record["step"] == 20:
            raise Interrupt

    with pytest.raises(Interrupt):
        fit_neural(family, settings, split["train"], split["dev"], checkpoint_dir=tmp_path / "cut", progress=stop_at_20)
    resumed = fit_neural(family, settings, split["train"], split["dev"], checkpoint_dir=tmp_path / "cut", resume=True)
    assert resumed.resumed_from == 20
    assert resumed.train_losses == whole.train_losses  # exactly
    assert [r["dev_nll"] for r in resumed.dev_curve] == [r["dev_nll"] for r in whole.dev_curve]
    assert (resumed.best_step, resumed.best_dev_nll, resumed.tokens) == (whole.best_step, whole.best_dev_nll, whole.tokens)
    for (name, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    again = fit_neural(family, settings, split["train"], split["dev"], checkpoint_dir=tmp_path / "cut", resume=True)
    assert again.train_losses == whole.train_losses and again.resumed_from == 40  # finished: nothing more to do


def test_checkpoint_files_and_resume_checks(split, tmp_path):
    settings = NeuralSettings(**TINY, steps=30, lr=1e-2)
    fit = fit_neural("mlp", settings, split["train"], split["dev"], checkpoint_dir=tmp_path)
    assert (tmp_path / CHECKPOINT).is_file() and (tmp_path / BEST).is_file()
    best = load_model(tmp_path / BEST)
    assert corpus_nll(best, split["dev"]) == fit.best_dev_nll  # the saved weights are the best-on-dev ones
    with pytest.raises(HarnessError, match="setting lr was 0.01, now 0.02"):
        fit_neural("mlp", NeuralSettings(**TINY, steps=30, lr=2e-2), split["train"], split["dev"], checkpoint_dir=tmp_path, resume=True)
    with pytest.raises(HarnessError, match="another family"):
        fit_neural("gru", settings, split["train"], split["dev"], checkpoint_dir=tmp_path, resume=True)


def test_same_seed_same_losses_and_samples_and_caller_state_untouched(split):
    settings = NeuralSettings(**TINY, steps=20, lr=1e-2, dropout=0.1)
    threads, rng = torch.get_num_threads(), torch.get_rng_state()
    a = fit_neural("transformer", settings, split["train"], split["dev"])
    b = fit_neural("transformer", settings, split["train"], split["dev"])
    assert a.train_losses == b.train_losses
    vocab = split["train"].vocab
    assert sample_batched(a.model, vocab, 10, torch.Generator().manual_seed(2)) == \
        sample_batched(b.model, vocab, 10, torch.Generator().manual_seed(2))
    assert torch.get_num_threads() == threads and torch.equal(torch.get_rng_state(), rng)
    c = fit_neural("transformer", NeuralSettings(**{**TINY, "seed": 5}, steps=20, lr=1e-2, dropout=0.1), split["train"], split["dev"])
    assert c.train_losses != a.train_losses


@pytest.mark.parametrize("backend", ["manual", "compiled", "triton"])
def test_loss_backends_give_the_torch_losses(split, backend):
    """A few training steps through another kernels backend follow F.cross_entropy's losses."""
    ok, why = kernels.backend_available(backend, "cpu")
    if not ok:
        pytest.skip(f"loss backend {backend} cannot run here: {why}")
    settings = dict(**TINY, steps=6, lr=1e-2)
    reference = fit_neural("transformer", NeuralSettings(**settings, loss="torch"), split["train"], split["dev"])
    other = fit_neural("transformer", NeuralSettings(**settings, loss=backend), split["train"], split["dev"])
    torch.testing.assert_close(torch.tensor(other.train_losses), torch.tensor(reference.train_losses), rtol=1e-5, atol=1e-5)


def test_patience_and_time_budget_stop_training(split):
    # lr so small that fp32 weights cannot move: dev never improves after the first score
    stuck = NeuralSettings(**{**TINY, "patience": 2}, steps=1000, lr=1e-12)
    fit = fit_neural("mlp", stuck, split["train"], split["dev"])
    assert fit.stop_reason == "patience" and fit.steps == 30 and fit.best_step == 10
    timed = NeuralSettings(**TINY, steps=10**7, time_budget_seconds=0.5)
    fit = fit_neural("mlp", timed, split["train"], split["dev"])
    assert fit.stop_reason == "time" and 0.5 <= fit.fit_seconds < 5 and fit.steps < 10**7
    assert fit.horizon < 10**7  # the cosine was fitted to the steps the budget allows


def test_learning_rate_schedule():
    s = NeuralSettings(lr=1.0, warmup_steps=4, min_lr_ratio=0.1)
    assert [lr_at(t, s, 104) for t in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_at(54, s, 104) == pytest.approx(0.55)  # half way down the cosine: (1 + 0.1) / 2
    assert lr_at(104, s, 104) == pytest.approx(0.1) and lr_at(500, s, 104) == pytest.approx(0.1)


def test_unavailable_backend_is_a_harness_error(split, monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")  # no CUDA and no interpreter: the Triton kernel cannot run
    with pytest.raises(HarnessError, match="loss backend 'triton' cannot run on cpu"):
        fit_neural("mlp", NeuralSettings(**TINY, loss="triton"), split["train"], split["dev"])


def test_thread_rule():
    assert default_threads(2, 0.0) == 1 and default_threads(1, 0.0) == 1  # this project's machine: 1
    assert default_threads(16, 3.2) == 12 and default_threads(8, 20.0) == 1


def test_context_shorter_than_the_items(split):
    """An MLP with a 3-token context trains on whole items (its windows slide); a Transformer
    cannot hold an item longer than its position table, and says so."""
    fit = fit_neural("mlp", NeuralSettings(**{**TINY, "block_size": 3}, steps=20, lr=1e-2), split["train"], split["dev"])
    assert fit.block_size == 3 and fit.model.order == 4 and math.isfinite(fit.best_dev_nll)
    longest = int(split["train"].lengths.max()) + 1
    with pytest.raises(HarnessError, match=f"at least {longest}"):
        fit_neural("transformer", NeuralSettings(**{**TINY, "block_size": 3}, steps=20), split["train"], split["dev"])
