"""The neural families against brute force: every predicted token scored alone, causality, the
protocol's two methods agreeing, exact evaluation against a per-item loop, and the sampler."""
import math

import pytest
import torch

from harness.core.errors import HarnessError
from harness.data.corpus import pack
from harness.models.neural.common import IGNORE, NeuralSettings, encode_batch
from harness.models.neural.families import FAMILIES, build_model
from harness.evaluation.evaluate import corpus_nll, item_nll
from harness.evaluation.sampling import sample_batched
from harness.models.protocol import LanguageModel

ITEMS = ["emma", "olivia", "ava", "isabella", "sophia", "mia", "x", "charlotteanne", "bo", "ava" + "n" * 9]
WEIGHTS = [3, 1, 2, 1, 1, 5, 2, 1, 4, 1]
TINY = NeuralSettings(n_embd=8, n_embd2=12, n_layer=2, n_head=2, dropout=0.3)


@pytest.fixture(scope="module")
def corpus():
    return pack("tiny", ITEMS, WEIGHTS, "cpu")


def make(family, corpus, block_size):
    torch.manual_seed(7)
    return build_model(family, corpus.vocab.size, block_size, TINY).eval()


def tokens(corpus, i):
    """(inputs, targets) of item i as Python lists: the start token then characters; characters then the end."""
    ids = corpus.vocab.encode(corpus.items[i])
    return [0] + ids, ids + [0]


def brute_force_log_probs(model, corpus):
    """log p of every predicted token, each from a forward pass over its own prefix alone (cropped to
    the model's context, as makemore's generate crops), in the protocol's order."""
    out = []
    with torch.no_grad():
        for i in range(corpus.num_unique):
            x, y = tokens(corpus, i)
            for t in range(len(y)):
                prefix = x[: t + 1]
                if model.max_context is not None:
                    prefix = prefix[-model.max_context:]
                logits = model(torch.tensor([prefix]))[0, -1]
                out.append(float(torch.log_softmax(logits.double(), -1)[y[t]]))
    return torch.tensor(out, dtype=torch.float64)


def mlp_by_hand(model, context):
    """Bengio's MLP written out from the module's weights for one context list of block_size ids."""
    emb = model.wte.weight[torch.tensor(context)].reshape(-1).double()
    h = torch.tanh(model.hidden.weight.double() @ emb + model.hidden.bias.double())
    return torch.log_softmax(model.lm_head.weight.double() @ h + model.lm_head.bias.double(), -1)


# block_size 16 covers the longest item (15 characters) + 1; 4 makes every family crop its context
@pytest.mark.parametrize("block_size", [16, 4])
@pytest.mark.parametrize("family", list(FAMILIES))
def test_token_log_probs_equal_each_prefix_alone(corpus, family, block_size):
    model = make(family, corpus, block_size)
    got = model.token_log_probs(corpus)
    assert got.dtype == torch.float64 and got.shape == (int((corpus.lengths + 1).sum()),)
    torch.testing.assert_close(got, brute_force_log_probs(model, corpus), rtol=0, atol=2e-5)
    assert model.training is False
    model.train()
    torch.testing.assert_close(model.token_log_probs(corpus), got, rtol=0, atol=0)  # dropout off in scoring
    assert model.training is True  # and the mode is given back


@pytest.mark.parametrize("block_size", [16, 3])
def test_mlp_equals_the_formula_written_out(corpus, block_size):
    model = make("mlp", corpus, block_size)
    expected = []
    with torch.no_grad():
        for i in range(corpus.num_unique):
            x, y = tokens(corpus, i)
            padded = [0] * (block_size - 1) + x  # the boundary before the start, as n-gram contexts pad
            for t in range(len(y)):
                expected.append(float(mlp_by_hand(model, padded[t: t + block_size])[y[t]]))
    torch.testing.assert_close(model.token_log_probs(corpus), torch.tensor(expected, dtype=torch.float64), rtol=0, atol=2e-5)
    assert model.order == block_size + 1


@pytest.mark.parametrize("family", list(FAMILIES))
def test_causal_a_later_token_changes_nothing_before_it(corpus, family):
    model = make(family, corpus, 12)
    x = torch.randint(1, corpus.vocab.size, (5, 12), generator=torch.Generator().manual_seed(3))
    for j in (1, 6, 11):
        changed = x.clone()
        changed[:, j] = (changed[:, j] % (corpus.vocab.size - 1)) + 1  # another character
        with torch.no_grad():
            a, b = model(x), model(changed)
        torch.testing.assert_close(a[:, :j], b[:, :j], rtol=0, atol=1e-6)
        assert not torch.allclose(a[:, j], b[:, j])  # the token itself is seen from its own position on


@pytest.mark.parametrize("family", list(FAMILIES))
def test_prefix_next_probs_are_the_token_probabilities(corpus, family):
    """Rows sum to 1, and the probability of an item's next character after its prefix is the one
    token_log_probs gives that character (prefixes longer than the context included)."""
    model = make(family, corpus, 5)
    log_probs = model.token_log_probs(corpus)
    first = torch.cumsum(torch.cat([torch.zeros(1, dtype=torch.int64), corpus.lengths + 1]), 0)
    i = ITEMS.index("charlotteanne")
    ids = corpus.vocab.encode(ITEMS[i]) + [0]
    for t in (0, 1, 4, 9, len(ids) - 1):
        prefix = torch.tensor([ids[:t]] * 3, dtype=torch.int64).reshape(3, t)
        probs = model.prefix_next_probs(prefix)
        assert probs.shape == (3, corpus.vocab.size) and probs.dtype == torch.float32
        torch.testing.assert_close(probs.sum(1), torch.ones(3), rtol=0, atol=1e-6)
        assert math.log(float(probs[0, ids[t]])) == pytest.approx(float(log_probs[first[i] + t]), abs=2e-5)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_exact_evaluation_equals_a_loop_over_items(corpus, family):
    model = make(family, corpus, 16)
    sums, counts = [], []
    with torch.no_grad():
        for i in range(corpus.num_unique):  # the oracle: one item at a time, straight through forward
            x, y = tokens(corpus, i)
            lp = torch.log_softmax(model(torch.tensor([x]))[0].double(), -1)
            sums.append(-float(lp[torch.arange(len(y)), torch.tensor(y)].sum()))
            counts.append(len(y))
    nll, n = item_nll(model, corpus)
    torch.testing.assert_close(nll, torch.tensor(sums, dtype=torch.float64), rtol=0, atol=1e-4)
    assert n.tolist() == counts
    expected = sum(w * s for w, s in zip(WEIGHTS, sums)) / sum(w * c for w, c in zip(WEIGHTS, counts))
    assert corpus_nll(model, corpus) == pytest.approx(expected, abs=1e-6)


def test_evaluation_chunks_do_not_change_the_scores(corpus, monkeypatch):
    """Many small padded batches (a chunk of a few positions) give the scores of one big batch."""
    import harness.models.neural.common as common

    model = make("transformer", corpus, 16)
    whole = model.token_log_probs(corpus)
    monkeypatch.setattr(common, "EVAL_POSITIONS", 20)
    torch.testing.assert_close(model.token_log_probs(corpus), whole, rtol=0, atol=1e-6)


def test_encode_batch_inputs_and_targets(corpus):
    rows = torch.tensor([6, 0, 2])  # x, emma, ava
    x, y = encode_batch(corpus, rows)
    stoi = corpus.vocab.stoi
    e, m, a, xx, v = (stoi[c] for c in "emaxv")
    assert x.tolist() == [[0, xx, 0, 0, 0], [0, e, m, m, a], [0, a, v, a, 0]]
    assert y.tolist() == [[xx, 0, IGNORE, IGNORE, IGNORE], [e, m, m, a, 0], [a, v, a, 0, IGNORE]]
    x7, y7 = encode_batch(corpus, rows, 7)
    assert x7.shape == y7.shape == (3, 7) and (y7[:, 5:] == IGNORE).all() and torch.equal(x7[:, :5], x)


class FixedFirstLetter(LanguageModel):
    """A model whose first character is drawn from `first` and which then always ends the name."""

    vocab_size = 4
    order = 2

    def __init__(self, first):
        self.first = torch.tensor(first, dtype=torch.float32)

    def token_log_probs(self, corpus):
        raise NotImplementedError

    def prefix_next_probs(self, prefix):
        if prefix.shape[1] == 0:
            return self.first.expand(prefix.shape[0], -1).clone()
        return torch.tensor([1.0, 0, 0, 0]).expand(prefix.shape[0], -1).clone()


def test_sampler_draws_in_proportion_to_the_model():
    first = [0.0, 0.6, 0.3, 0.1]
    vocab = pack("v", ["a", "b", "c"], None, "cpu").vocab
    names = sample_batched(FixedFirstLetter(first), vocab, 20000, torch.Generator().manual_seed(11))
    assert set(names) == {"a", "b", "c"}
    for ch, p in zip("abc", first[1:]):
        share = names.count(ch) / len(names)
        assert abs(share - p) < 4 * math.sqrt(p * (1 - p) / len(names))  # four standard errors


@pytest.mark.parametrize("family", list(FAMILIES))
def test_sampler_is_seeded_and_stops(corpus, family):
    model = make(family, corpus, 6)
    a = sample_batched(model, corpus.vocab, 8, torch.Generator().manual_seed(5), max_len=20)
    b = sample_batched(model, corpus.vocab, 8, torch.Generator().manual_seed(5), max_len=20)
    assert a == b and len(a) == 8 and all(len(s) <= 20 for s in a)
    assert all(ch in corpus.vocab.stoi for s in a for ch in s)


def test_bad_settings_and_names_raise_one_line_errors(corpus):
    for bad in (dict(n_embd=0), dict(dropout=1.0), dict(lr=-1.0), dict(loss="cuda"), dict(batch_size=2.5),
                dict(time_budget_seconds=-1), dict(patience=-1)):
        with pytest.raises(HarnessError, match=next(iter(bad))):
            NeuralSettings(**bad)
    with pytest.raises(HarnessError, match="unknown neural family 'lstm'"):
        build_model("lstm", corpus.vocab.size, 8, TINY)
    with pytest.raises(HarnessError, match="multiple of n_head"):
        build_model("transformer", corpus.vocab.size, 8, NeuralSettings(n_embd=10, n_head=4))
