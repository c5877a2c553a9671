import pytest
import torch

from harness.data.corpus import load_corpus, pack
from harness.core.errors import HarnessError
from harness.data.splits import split_corpus


def test_split_by_unique_item_is_disjoint_and_deterministic(names_path):
    corpus = load_corpus(str(names_path))
    a = split_corpus(corpus, seed=7)
    b = split_corpus(corpus, seed=7)
    c = split_corpus(corpus, seed=8)
    sets = {k: set(v.items) for k, v in a.items()}
    assert not (sets["train"] & sets["dev"]) and not (sets["train"] & sets["test"]) and not (sets["dev"] & sets["test"])
    assert sum(len(s) for s in sets.values()) == corpus.num_unique
    assert len(sets["train"]) == pytest.approx(0.8 * corpus.num_unique, abs=1)
    # repeated lines travel together: every copy of a name lands in one split
    assert sum(p.num_items() for p in a.values()) == corpus.num_items()
    assert all(a[k].items == b[k].items for k in a)
    assert a["dev"].items != c["dev"].items


def test_weighted_split_keeps_weights():
    names = [f"n{i}" for i in range(50)]
    corpus = pack("w", names, list(range(1, 51)), "cpu")
    parts = split_corpus(corpus, seed=1)
    for part in parts.values():
        for item, w in zip(part.items, part.weights.tolist()):
            assert int(item[1:]) + 1 == w


def test_too_small_to_split():
    with pytest.raises(HarnessError, match="at least 3"):
        split_corpus(pack("t", ["a", "b"], None, "cpu"), seed=0)
