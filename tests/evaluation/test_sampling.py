import torch

from harness.data.corpus import load_corpus
from harness.models.count import CountModel
from harness.data.ngrams import windows
from harness.core.constants import LECTURE_SEED
from harness.evaluation.sampling import sample_batched, sample_lecture

LECTURE_NAMES = ["cexze", "momasurailezitynn", "konimittain", "llayn", "ka"]


def test_lecture_sampler_reproduces_the_lecture(names_path):
    corpus = load_corpus(str(names_path))
    win = windows(corpus, 2)
    for k in (0, 1):
        model = CountModel.fit(win, k)
        g = torch.Generator().manual_seed(LECTURE_SEED)
        assert sample_lecture(model, corpus.vocab, 5, g) == LECTURE_NAMES


def test_batched_sampler_is_seeded_and_follows_the_table(names_path):
    corpus = load_corpus(str(names_path))
    win = windows(corpus, 3)
    model = CountModel.fit(win, 0.0)
    a = sample_batched(model, corpus.vocab, 200, torch.Generator().manual_seed(1))
    b = sample_batched(model, corpus.vocab, 200, torch.Generator().manual_seed(1))
    assert a == b and len(a) == 200
    # with k = 0 every sampled trigram must have been seen in training
    stoi, V = corpus.vocab.stoi, corpus.vocab.size
    for name in a:
        ids = [0, 0] + [stoi[ch] for ch in name] + [0]
        for i in range(2, len(ids)):
            assert model.counts[ids[i - 2] * V + ids[i - 1], ids[i]] > 0


# --- sampling controls (issue 18, item 4) ---------------------------------------------------------

import pytest  # noqa: E402

from harness.core.errors import HarnessError  # noqa: E402
from harness.evaluation.sampling import SamplingControls, sample_names  # noqa: E402


@pytest.fixture(scope="module")
def bigram(names_path):
    corpus = load_corpus(str(names_path))
    return corpus, CountModel.fit(windows(corpus, 2), 1.0)


def greedy(model, vocab, prefix="", max_len=64) -> str:
    """Brute force: follow the most likely next character of the bigram table until the boundary."""
    table = model.probs_table()
    ids = [vocab.stoi[ch] for ch in prefix]
    while len(ids) < max_len + len(prefix):
        nxt = int(table[ids[-1] if ids else 0].argmax())
        if nxt == 0:
            break
        ids.append(nxt)
    return vocab.decode(ids)


def test_default_controls_draw_exactly_what_the_plain_sampler_draws(bigram):
    corpus, model = bigram
    plain = sample_batched(model, corpus.vocab, 50, torch.Generator().manual_seed(3))
    assert sample_names(model, corpus.vocab, 50, torch.Generator().manual_seed(3)) == plain


def test_top_1_and_a_cold_temperature_are_the_greedy_path(bigram):
    corpus, model = bigram
    expected = greedy(model, corpus.vocab)
    top1 = sample_names(model, corpus.vocab, 20, torch.Generator().manual_seed(0), SamplingControls(top_k=1))
    assert top1 == [expected] * 20
    cold = sample_names(model, corpus.vocab, 20, torch.Generator().manual_seed(0), SamplingControls(temperature=0.01))
    assert cold == [expected] * 20
    with_prefix = sample_names(model, corpus.vocab, 5, torch.Generator().manual_seed(0),
                               SamplingControls(top_k=1, prefix="zo"))
    assert with_prefix == [greedy(model, corpus.vocab, "zo")] * 5


def test_a_hot_temperature_flattens_the_distribution(bigram):
    corpus, model = bigram
    cold = sample_names(model, corpus.vocab, 400, torch.Generator().manual_seed(1), SamplingControls(temperature=0.5))
    hot = sample_names(model, corpus.vocab, 400, torch.Generator().manual_seed(1), SamplingControls(temperature=2.0))
    # more distinct first letters and longer names when the distribution is flatter
    assert len({n[:1] for n in hot}) >= len({n[:1] for n in cold})
    assert sum(map(len, hot)) > sum(map(len, cold))


def test_prefix_and_exclude_train(bigram):
    corpus, model = bigram
    names = sample_names(model, corpus.vocab, 50, torch.Generator().manual_seed(2),
                         SamplingControls(prefix="ma", exclude_train=True), train_items=corpus.items)
    assert len(names) == 50
    assert all(n.startswith("ma") for n in names)
    assert not set(names) & set(corpus.items)


@pytest.mark.parametrize("kwargs, says", [({"temperature": 0}, "--temperature"), ({"temperature": float("nan")}, "--temperature"),
                                          ({"top_k": -1}, "--top-k"), ({"top_k": 1.5}, "--top-k")])
def test_bad_controls_are_one_line(kwargs, says):
    with pytest.raises(HarnessError, match=says):
        SamplingControls(**kwargs)


def test_a_prefix_outside_the_vocabulary_and_too_few_new_names(bigram):
    corpus, model = bigram
    with pytest.raises(HarnessError, match="not in the corpus vocabulary"):
        sample_names(model, corpus.vocab, 3, torch.Generator().manual_seed(0), SamplingControls(prefix="Ma"))
    with pytest.raises(HarnessError, match="not in the training split"):
        sample_names(model, corpus.vocab, 3, torch.Generator().manual_seed(0),
                     SamplingControls(top_k=1, exclude_train=True, max_rounds=2), train_items=[greedy(model, corpus.vocab)])
