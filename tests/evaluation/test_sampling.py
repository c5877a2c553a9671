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
