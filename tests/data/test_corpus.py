import pytest
import torch

from harness.data.corpus import Vocab, load_corpus, pack
from harness.core.errors import HarnessError


def test_names_txt_as_the_lecture_sees_it(names_path):
    corpus = load_corpus(str(names_path))
    assert corpus.num_items() == 32033
    assert corpus.num_unique == 29494
    assert corpus.vocab.itos == tuple(".abcdefghijklmnopqrstuvwxyz")
    assert corpus.vocab.stoi["a"] == 1 and corpus.vocab.stoi["z"] == 26
    lengths = corpus.lengths
    assert int(lengths.min()) == 2 and int(lengths.max()) == 15
    assert corpus.codes.dtype == torch.uint8


def test_codes_round_trip_unicode(tmp_path):
    words = ["zoë", "José", "李小龙", "o'neil", "ana-maria", "zoë", "Ωmega"]
    path = tmp_path / "names.txt"
    path.write_text("\r\n".join(f"  {w}  " for w in words) + "\n\n", encoding="utf-8")
    corpus = load_corpus(str(path))
    assert corpus.num_items() == 7 and corpus.num_unique == 6
    assert corpus.vocab.itos[0] == "." and list(corpus.vocab.itos[1:]) == sorted(set("".join(words)))
    decoded = [corpus.vocab.decode(corpus.codes[a:b].tolist()) for a, b in zip(corpus.offsets[:-1].tolist(), corpus.offsets[1:].tolist())]
    assert decoded == list(dict.fromkeys(words))
    assert corpus.weights.tolist() == [2, 1, 1, 1, 1, 1]


def test_case_is_kept_verbatim(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("Anna\nanna\n", encoding="utf-8")
    corpus = load_corpus(str(path))
    assert corpus.items == ("Anna", "anna") and "A" in corpus.vocab.stoi


@pytest.mark.parametrize("content, message", [
    (b"", "empty"),
    (b"\n  \n\r\n", "only blank lines"),
    (b"caf\xe9\n", "not valid UTF-8"),
    (b"ab\x00cd\n", "binary"),
])
def test_bad_files_are_clear_errors(tmp_path, content, message):
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    with pytest.raises(HarnessError, match=message):
        load_corpus(str(path))


def test_missing_file_and_unknown_names():
    with pytest.raises(HarnessError, match="does not exist"):
        load_corpus("no/such/file.txt")
    with pytest.raises(HarnessError, match="unknown corpus"):
        load_corpus("nosuchcorpus")
    with pytest.raises(HarnessError, match="unknown SSA year"):
        load_corpus("ssa:1700")
    with pytest.raises(HarnessError, match="unknown SSA year"):
        load_corpus("ssa-births:abc")


def test_ssa_builtins():
    ssa = load_corpus("ssa")
    assert ssa.name == "ssa:2017" and 29000 < ssa.num_unique < 31000
    assert ssa.weights is None and ssa.items[0] == "emma"
    assert all(ch.islower() for ch in ssa.vocab.itos[1:])
    births = load_corpus("ssa-births:all")
    assert births.num_unique == 97310
    assert births.num_items() == 348_120_517
    assert births.weights.dtype == torch.int64


def test_subset_gathers_items():
    corpus = pack("t", ["ab", "c", "def", "gh"], [1, 2, 3, 4], "cpu")
    sub = corpus.subset(torch.tensor([3, 0]))
    assert sub.items == ("gh", "ab")
    assert sub.vocab == corpus.vocab
    assert [sub.vocab.decode(sub.codes[a:b].tolist()) for a, b in zip(sub.offsets[:-1].tolist(), sub.offsets[1:].tolist())] == ["gh", "ab"]
    assert sub.weights.tolist() == [4, 1]


def test_vocab_encode_rejects_unknown_characters():
    vocab = Vocab.from_chars("abc")
    assert vocab.encode("cab") == [3, 1, 2]
    with pytest.raises(HarnessError, match="'z'"):
        vocab.encode("abz")
