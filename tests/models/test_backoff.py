"""The compiled backoff form against the models it is compiled from, and streamed file scoring."""

import numpy as np
import pytest
import torch

import harness.models.backoff as backoff
from harness.core.errors import HarnessError
from harness.data.corpus import pack, unique_with_counts
from harness.data.ngrams import windows
from harness.data.splits import load_split_files
from harness.evaluation.evaluate import window_log_probs
from harness.models.backoff import BackoffModel, score_file_streamed, to_backoff
from harness.models.count import CountModel, SparseCountModel
from harness.models.smoothed import KneserNeyModel, WittenBellModel, fit_smoothed

TINY = ("emma olivia ava isabella sophia mia amelia ava emma ella anna liam noah oliver elijah "
        "james william benjamin lucas henry mila ella emma anna ann annie lia liam mia amy").split()


@pytest.fixture(scope="module")
def tiny():
    items, copies = unique_with_counts(TINY)
    return pack("tiny", items, copies, "cpu")


@pytest.fixture(scope="module")
def split(reference_split):
    """REFERENCE.md's split files (tests/conftest.py), loaded as the harness loads them."""
    folder, _ = reference_split
    corpus, splits, _ = load_split_files(f"files:{folder}/train.txt,{folder}/dev.txt,{folder}/test.txt", "cpu")
    return folder, corpus.vocab, splits


def fit(method: str, train, dev):
    if method == "addk":
        return SparseCountModel.fit(train, 0.1)
    if method == "addk-dense":
        return CountModel.fit(train, 0.3)
    if method == "kn-continuation":
        return KneserNeyModel.fit(train, padding="continuation")
    return fit_smoothed(method, train, dev)[0]


def reference_scores(model, win) -> torch.Tensor:
    return window_log_probs(model, win)


CASES = [(m, n) for n in (2, 3, 4, 5, 6) for m in ("kn", "wb", "addk")] + [
    ("interp", 2), ("interp", 3), ("interp", 4), ("addk-dense", 3), ("addk-dense", 4), ("kn-continuation", 4)]


@pytest.mark.parametrize("method,order", CASES)
def test_backoff_form_scores_equal_the_model_on_names(split, method, order):
    _, _, splits = split
    train, dev, test = (windows(splits[s], order) for s in ("train", "dev", "test"))
    model = fit(method, train, dev)
    compiled = to_backoff(model)
    assert isinstance(compiled, BackoffModel) and compiled.order == order
    for win in (test, dev):
        torch.testing.assert_close(compiled.score(win.context, win.target), reference_scores(model, win), rtol=0, atol=1e-9)


def padded_contexts(order: int, V: int) -> torch.Tensor:
    """Every context id the convention can produce: boundary tokens only as leading padding
    (a boundary after a character would be an end token inside a context, which no item has)."""
    ids = torch.arange(V ** (order - 1))
    ok = torch.ones_like(ids, dtype=torch.bool)
    seen_char = torch.zeros_like(ok)
    for k in range(order - 2, -1, -1):  # oldest position first
        digit = ids // V**k % V
        ok &= ~(seen_char & (digit == 0))
        seen_char |= digit != 0
    return ids[ok]


@pytest.mark.parametrize("order", [2, 3, 4])
@pytest.mark.parametrize("method", ["kn", "kn-continuation", "wb", "interp", "addk"])
def test_every_context_and_target_equals_the_model_on_a_tiny_corpus(tiny, method, order):
    """All V^n (context, target) pairs, unseen and padded contexts included, and the rows of next_token_probs."""
    win = windows(tiny, order)
    model = fit(method, win, win)
    compiled = to_backoff(model)
    V = win.vocab_size
    contexts = padded_contexts(order, V)
    C = contexts.numel()
    context, target = contexts.repeat_interleave(V), torch.arange(V).repeat(C)
    torch.testing.assert_close(compiled.score(context, target), model.score(context, target), rtol=0, atol=1e-12)
    rows = compiled.next_token_probs(contexts)
    torch.testing.assert_close(rows, model.next_token_probs(contexts), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(rows.sum(1), torch.ones(C), rtol=0, atol=1e-5)


@pytest.mark.parametrize("rows_max_bytes", [0, 1 << 30])
def test_hashed_and_flat_lookups_equal_dense_rows(split, monkeypatch, rows_max_bytes):
    """Every order hashed (no dense index), by context rows or by flat n-gram ids: the same scores."""
    _, _, splits = split
    train, test = windows(splits["train"], 4), windows(splits["test"], 4)
    model = WittenBellModel.fit(train)
    reference = to_backoff(model)
    assert all(order.rows and order.context_index.dense for order in reference._orders)
    monkeypatch.setattr(backoff, "DENSE_MAX_IDS", 0)
    monkeypatch.setattr(backoff, "ROWS_MAX_BYTES", rows_max_bytes)
    hashed = to_backoff(model)
    assert all(order.rows == bool(rows_max_bytes) for order in hashed._orders)
    indexes = [o.context_index if o.rows else o.index for o in hashed._orders]
    assert not any(index.dense for index in indexes)
    torch.testing.assert_close(hashed.score(test.context, test.target), reference.score(test.context, test.target), rtol=0, atol=0)


def test_add_k_with_k_zero_and_unknown_models_are_refused(tiny):
    win = windows(tiny, 2)
    with pytest.raises(HarnessError, match="k = 0"):
        to_backoff(CountModel.fit(win, 0.0))
    with pytest.raises(HarnessError, match="cannot compile"):
        to_backoff(object())


@pytest.fixture(scope="module")
def kn_forms(split):
    """order -> (test windows, KN model, the forms scored from a file), fitted once per order for every budget."""
    from harness.models.rows import compile_rows

    _, _, splits = split
    built = {}

    def get(order: int):
        if order not in built:
            model = KneserNeyModel.fit(windows(splits["train"], order))
            built[order] = (windows(splits["test"], order), model,
                            (to_backoff(model), model, compile_rows(to_backoff(model))))  # the last on numpy arrays
        return built[order]

    return get


@pytest.mark.parametrize("max_bytes", [1, 200 * 5000, 1 << 30])
@pytest.mark.parametrize("order", [3, 6])
def test_streamed_file_score_equals_mean_nll(split, kn_forms, order, max_bytes):
    """Tiny budgets cut the file into many chunks (4 KiB, mid-file); the sums do not change."""
    folder, vocab, _ = split
    test, model, forms = kn_forms(order)
    expected = float(-(model.score(test.context, test.target) * test.weight).sum())
    for scored in forms:
        result = score_file_streamed(scored, folder / "test.txt", vocab, max_bytes)
        assert result.predictions == int(test.weight.sum()) and result.items == 3204
        assert result.nll_nats == pytest.approx(expected, rel=1e-12)
        assert result.mean_nll == pytest.approx(expected / result.predictions, rel=1e-12)


def test_streamed_file_skips_blank_lines_and_carriage_returns(tiny, tmp_path):
    win = windows(tiny, 3)
    from harness.models.rows import compile_rows

    model = compile_rows(to_backoff(WittenBellModel.fit(win)))
    items = ["emma", "ava", "liam"]
    clean = score_file_streamed(model, _write(tmp_path / "a.txt", "emma\nava\nliam\n"), tiny.vocab)
    messy = score_file_streamed(model, _write(tmp_path / "b.txt", "\n\nemma\r\n\r\nava\n\nliam"), tiny.vocab)
    direct = model.score(*_windows_of(items, tiny.vocab, 3))
    assert (messy.items, messy.predictions) == (clean.items, clean.predictions) == (3, sum(len(s) + 1 for s in items))
    assert messy.nll_nats == pytest.approx(clean.nll_nats, rel=1e-12)  # two chunks there: the last line has no newline
    assert clean.nll_nats == pytest.approx(float(-direct.sum()), rel=1e-12)


def test_streamed_file_errors(tiny, tmp_path):
    model = to_backoff(WittenBellModel.fit(windows(tiny, 2)))
    with pytest.raises(HarnessError, match="line 2 contains 'z', not in the model's vocabulary"):
        score_file_streamed(model, _write(tmp_path / "z.txt", "emma\nzoe\n"), tiny.vocab)
    with pytest.raises(HarnessError, match="line 2 contains 'ë', not in the model's vocabulary"):  # was "a non-ASCII character"
        score_file_streamed(model, _write(tmp_path / "u.txt", "emma\nemmë\n"), tiny.vocab)
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("emma\nemmë\n".encode("latin-1"))
    with pytest.raises(HarnessError, match=r"line 2 is not UTF-8 \(byte 0xeb.*iconv -f latin1"):
        score_file_streamed(model, latin1, tiny.vocab)
    with pytest.raises(HarnessError, match="does not exist"):
        score_file_streamed(model, tmp_path / "missing.txt", tiny.vocab)


def test_streamed_file_errors_name_the_line_across_chunks(tiny, tmp_path):
    """The line an error names counts the lines of the chunks before (4,096-byte chunks here: 2,000 lines of
    5 bytes are three chunks). Oracle: the bad line's index in the written file."""
    model = to_backoff(WittenBellModel.fit(windows(tiny, 2)))
    lines = ["emma"] * 2000 + ["moë"] + ["ava"] * 10
    with pytest.raises(HarnessError, match="line 2,001 contains 'ë'"):
        score_file_streamed(model, _write(tmp_path / "long.txt", "\n".join(lines)), tiny.vocab, max_bytes=1)


def test_a_byte_order_mark_is_not_scored(tiny, tmp_path):
    """A UTF-8 byte-order mark (Windows editors) is dropped, as the corpus reader drops it: the file scores as
    the same file without it. Before, it was refused as 'a non-ASCII character'."""
    from harness.models.rows import compile_rows

    model = compile_rows(to_backoff(WittenBellModel.fit(windows(tiny, 3))))
    plain = score_file_streamed(model, _write(tmp_path / "a.txt", "emma\nava\n"), tiny.vocab)
    marked = score_file_streamed(model, _write(tmp_path / "b.txt", "\ufeffemma\nava\n"), tiny.vocab)
    assert (marked.nll_nats, marked.predictions, marked.items) == (plain.nll_nats, plain.predictions, plain.items)


def _write(path, text):
    path.write_bytes(text.encode("utf-8"))
    return path


def _windows_of(items, vocab, order):
    win = windows(pack("items", items, None, "cpu", vocab=vocab), order)
    return win.context, win.target


@pytest.mark.parametrize("order", [1, 2, 6, 9])
def test_stream_contexts_equal_the_windows_of_the_corpus(tiny, order):
    """Per-line padding of a token stream, int32 and (V^8 > 2^31 for order 9) int64, against data.ngrams.windows."""
    win = windows(tiny, order)
    stream = torch.cat([torch.tensor(tiny.vocab.encode(item) + [0]) for item in tiny.items])
    torch.testing.assert_close(backoff._stream_windows(stream, order, tiny.vocab.size), win.context, rtol=0, atol=0)


@pytest.mark.parametrize("order", [2, 3, 5, 6])
@pytest.mark.parametrize("method", ["kn", "wb", "interp"])
def test_rows_over_unpadded_stream_contexts_equal_the_padded_windows(split, order, method):
    """HostRows.stream_log10_total reads contexts straight across line ends (its docstring): every
    token's row is the one of its padded context, so the totals agree to the bit."""
    from harness.models.rows import compile_rows
    from harness.models.smoothed import fit_smoothed

    _, _, splits = split
    train, dev, test = (windows(splits[s], order) for s in ("train", "dev", "test"))
    rows = compile_rows(to_backoff(fit_smoothed(method, train, dev)[0]))
    corpus = splits["test"]
    # the token stream of the unique test items, each ended by 0, and their padded windows (weight 1 each)
    stream = np.concatenate([np.array(corpus.vocab.encode(item) + [0], dtype=np.int32) for item in corpus.items])
    once = windows(pack("once", list(corpus.items), None, "cpu", vocab=corpus.vocab), order)
    assert np.array_equal(stream, once.target.numpy())
    assert rows.stream_log10_total(stream) == rows.numpy_log10_total(once.context.numpy(), stream)


@pytest.mark.parametrize("order", [2, 3, 5, 6])
@pytest.mark.parametrize("method", ["kn", "wb", "interp"])
def test_one_lookup_rows_equal_the_backoff_rule(split, order, method):
    """compile_rows (longest listed context, precomputed rows) against the per-order backoff lookups."""
    from harness.models.rows import compile_rows
    from harness.models.smoothed import fit_smoothed

    _, _, splits = split
    train, dev, test = (windows(splits[s], order) for s in ("train", "dev", "test"))
    reference = to_backoff(fit_smoothed(method, train, dev)[0])
    rows = compile_rows(reference)
    torch.testing.assert_close(rows.log10_score(test.context, test.target), reference.log10_score(test.context, test.target),
                               rtol=0, atol=1e-12)
    stream_total = rows.numpy_log10_total(test.context.numpy(), test.target.numpy())
    assert stream_total == pytest.approx(float(reference.log10_score(test.context, test.target).sum()), rel=1e-12)
