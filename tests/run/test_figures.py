"""Figures: each function writes a readable PNG, survives inf/NaN, and annotates the heat map only when it fits."""
import math
from pathlib import Path

import matplotlib
import matplotlib.image
import pytest
import torch

from harness.run import figures

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
INF, NAN = float("inf"), float("nan")


def assert_png(path: Path, min_side_px: int = 200) -> tuple[int, int]:
    """A PNG file by its signature, non-empty, decodable to an RGBA image of a sensible size."""
    assert path.is_file()
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 1000
    image = matplotlib.image.imread(path)
    height, width = image.shape[:2]
    assert image.ndim == 3 and image.shape[2] in (3, 4)
    assert height >= min_side_px and width >= min_side_px
    return height, width


def tiny_counts(V: int) -> torch.Tensor:
    return torch.arange(V * V, dtype=torch.float64).view(V, V) * 3


def test_bigram_heatmap_writes_png_at_lecture_size(tmp_path):
    itos = [".", "a", "b", "c", "d"]
    out = figures.bigram_heatmap(tiny_counts(5), itos, tmp_path / "sub" / "bigram.png")
    assert out == tmp_path / "sub" / "bigram.png"
    height, width = assert_png(out)
    assert width == round(16 * figures.DPI)  # 16 in wide, as in the lecture
    assert height >= width


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.int64])
def test_heatmap_cells_show_bigram_and_count(dtype):
    itos = [".", "a", "e", "m"]
    counts = torch.zeros(4, 4, dtype=dtype)
    counts[2, 3] = 7  # "em" seen 7 times
    counts[0, 1] = 12345  # compacted to fit the cell
    fig = figures._heatmap_figure(counts, itos)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert len(texts) == 2 * 4 * 4  # bigram and count in every cell
    cell = {(texts[i]): texts[i + 1] for i in range(0, len(texts), 2)}
    assert cell["em"] == "7"
    assert cell[".a"] == "12.3k"
    assert cell[".."] == "0"


def test_heatmap_large_vocab_has_no_cell_text(tmp_path):
    V = figures.ANNOTATE_MAX_V + 5
    itos = ["."] + [chr(0x100 + i) for i in range(V - 1)]
    fig = figures._heatmap_figure(tiny_counts(V), itos)
    assert len(fig.axes[0].texts) == 0
    assert "left out" in fig.axes[0].get_title()
    assert_png(figures.bigram_heatmap(tiny_counts(V), itos, tmp_path / "big.png"))


def test_heatmap_survives_non_finite_and_all_zero_counts(tmp_path):
    counts = tiny_counts(3)
    counts[0, 0], counts[1, 2], counts[2, 1] = INF, NAN, -INF
    assert_png(figures.bigram_heatmap(counts, [".", "a", "b"], tmp_path / "inf.png"))
    assert_png(figures.bigram_heatmap(torch.zeros(3, 3), [".", "a", "b"], tmp_path / "zero.png"))


def test_heatmap_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="square"):
        figures._heatmap_figure(torch.zeros(3, 4), [".", "a", "b"])
    with pytest.raises(ValueError, match="itos"):
        figures._heatmap_figure(torch.zeros(3, 3), [".", "a"])


def test_tuning_plot_with_zero_inf_nan_and_chosen(tmp_path):
    curves = {
        "order 2": [(0, INF), (0.01, 2.46), (0.1, 2.45), (1.0, 2.452), (10.0, 2.46)],
        "order 3": [(0, 2.5), (0.01, 2.23), (0.1, 2.22), (1.0, NAN), (10.0, 2.36)],
        "order 4": [(0, INF), (1.0, INF)],  # nothing finite to draw
    }
    chosen = {"order 2": 0.1, "order 3": 0.0, "order 4": 1.0}
    out = figures.tuning_plot(curves, "k", tmp_path / "k.png", chosen=chosen)
    assert_png(out)


def test_tuning_plot_without_positive_x_uses_a_linear_axis(tmp_path):
    assert_png(figures.tuning_plot({"order 2": [(0.0, 2.5)]}, "lambda", tmp_path / "lam.png"))
    assert_png(figures.tuning_plot({}, "lambda", tmp_path / "empty.png"))


def test_loss_curves_with_gaps_and_references(tmp_path):
    curves = {"bigram": [3.3, 2.9, NAN, INF, 2.5, 2.46], "trigram": [3.3 - 0.1 * i for i in range(10)]}
    reference = {"count model train NLL": 2.45, "broken reference": INF}
    assert_png(figures.loss_curves(curves, tmp_path / "loss.png", reference=reference))
    assert_png(figures.loss_curves({"diverged": [NAN, NAN]}, tmp_path / "nan.png"))


def test_nll_by_order_with_non_finite_rows(tmp_path):
    rows = [
        {"order": 1, "label": "counts, add-k", "dev_nll": 2.82},
        {"order": 2, "label": "counts, add-k", "dev_nll": 2.45},
        {"order": 3, "label": "counts, add-k", "dev_nll": 2.22},
        {"order": 1, "label": "counts, k = 0", "dev_nll": 2.82},
        {"order": 2, "label": "counts, k = 0", "dev_nll": INF},
        {"order": 3, "label": "gradient, lambda 0.01", "dev_nll": NAN},
    ]
    assert_png(figures.nll_by_order(rows, tmp_path / "order.png"))
    assert_png(figures.nll_by_order([], tmp_path / "none.png"))


def test_drawing_changes_no_global_matplotlib_state(tmp_path):
    rc_before = dict(matplotlib.rcParams)
    backend_before = matplotlib.get_backend()
    figures.loss_curves({"a": [1.0, 0.5]}, tmp_path / "a.png")
    figures.tuning_plot({"a": [(0, 1.0), (1, 0.5)]}, "k", tmp_path / "b.png")
    assert matplotlib.get_backend() == backend_before
    changed = {key for key, value in matplotlib.rcParams.items()
               if not (value == rc_before[key] or (isinstance(value, float) and math.isnan(value)))}
    assert changed == set()


@pytest.mark.parametrize("value, text", [(0, "0"), (7, "7"), (6763, "6763"), (0.5, "0.5"),
                                         (12_345, "12.3k"), (4_500_000, "4.5M"), (123_456_789, "123M"),
                                         (2.5e9, "2.5G")])
def test_compact_counts_fit_a_cell(value, text):
    assert figures._compact(value) == text


@pytest.mark.parametrize("vocab", ["abc", "a`b", "``x`", "é" * 130])
def test_the_vocabulary_line_is_one_code_span(vocab):
    """A world corpus's vocabulary holds a backtick and thousands of characters: the report's code span
    must survive both (CommonMark: a span fenced by a longer backtick run; an ellipsis where it is cut)."""
    import re

    from harness.run.report import VOCAB_SHOWN, code_span

    span = code_span(vocab, VOCAB_SHOWN)
    fence = re.match(r"`+", span).group(0)
    body, _, rest = span[len(fence):].partition(fence)
    assert body.strip(" ") == vocab[:VOCAB_SHOWN] and fence not in body
    assert (rest == "") == (len(vocab) <= VOCAB_SHOWN) and ("…" in rest) == (len(vocab) > VOCAB_SHOWN)


def test_the_report_names_gradient_models_still_improving():
    from harness.run.training_notes import still_improving

    def record(key, losses, method="gradient"):
        return {"key": key, "method": method, "status": "ok", "train_losses": losses}

    steady = [3.0 - 0.01 * i for i in range(100)]  # falls 0.10 over its last 10 steps (89 to 99)
    flat = [2.5] * 90 + [2.5 - 1e-5 * i for i in range(10)]
    oscillating = [3.0 + (0.5 if i % 2 else -0.5) for i in range(100)]
    lines = still_improving([record("a", steady), record("b", flat), record("c", oscillating),
                             record("d", steady, method="count")])
    assert len(lines) == 1 and lines[0].startswith("- a: the loss fell 0.1000 nats/char over its last 10 of 100 steps")


def test_the_report_names_gradient_models_whose_loss_did_not_settle():
    """Oracle: curves built by hand, the window means worked out here. An order-1 model at lr 50 swings
    between 3 and 11 nats; a minibatch curve is noisy but falls; a curve falls to 2.0 and climbs back to 2.5."""
    import random

    from harness.run.training_notes import training_lines, unstable

    def record(key, losses, lr=50.0):
        return {"key": key, "method": "gradient", "status": "ok", "train_losses": losses, "lr": lr}

    swinging = [3.4 if i == 0 else (11.0 if i % 2 else 3.0) for i in range(100)]  # windows of 10: mean 7.0 or so
    rng = random.Random(0)
    noisy = [3.0 - 0.005 * i + rng.uniform(-0.3, 0.3) for i in range(100)]  # noise averages out in windows of 10
    rebound = [3.0 - 0.05 * i for i in range(21)] + [2.0 + 0.5 * (i + 1) / 79 for i in range(79)]  # 100 steps
    lines = unstable([record("a", swinging), record("b", noisy), record("c", rebound, lr=1.0),
                      record("d", [3.0 - 0.01 * i for i in range(100)])])
    assert [line.split(":")[0] for line in lines] == ["- a", "- c"]
    best = min(sum(rebound[i:i + 10]) / 10 for i in range(91))  # every window of 10, by brute force
    assert 2.0 < best < 2.05  # the lowest lies just after the bottom at step 20, where the climb is slow
    assert f"its last 10 steps averaged {sum(rebound[-10:]) / 10:.4f} nats/char, above the {best:.4f} over its best 10 steps" in lines[1]
    assert f"above the 3.4000 at step 1" in lines[0]  # it never fell: the windows all average 6.9 to 7.0
    assert "the learning rate (1) overshoots" in lines[1] and "(50)" in lines[0]
    block = training_lines([record("a", swinging)])
    assert block[0].startswith("Not settled") and block[2] == lines[0]
