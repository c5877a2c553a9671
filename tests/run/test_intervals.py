"""Intervals in a run: results.json, report.md and compare (issue 18)."""
import json

import pytest
import torch

from harness.cli import main
from harness.evaluation.intervals import nll_interval


@pytest.fixture(scope="module")
def runs(names_path, tmp_path_factory):
    """Two runs on the same seeded split of 3,000 names: add-k (two ks) and Kneser-Ney, orders 2 and 3."""
    root = tmp_path_factory.mktemp("intervals")
    corpus = root / "names3000.txt"
    corpus.write_text("".join(names_path.read_text().splitlines(keepends=True)[:3000]))
    common = ["run", "--device", "cpu", "--quiet", "--no-figures", "--corpus", str(corpus), "--samples", "2", "--orders", "2,3"]
    assert main([*common, "--smoothing", "0.5,1", "--out", str(root / "addk")]) == 0
    assert main([*common, "--smoothing", "kn", "--out", str(root / "kn")]) == 0
    return root


def load(folder):
    return json.loads((folder / "results.json").read_text())


def test_every_nll_carries_an_interval_that_contains_it(runs):
    for name in ("addk", "kn"):
        for r in load(runs / name)["results"]:
            for split in ("train", "dev", "test"):
                low, high = r[f"{split}_nll_ci"]
                assert low <= r[f"{split}_nll"] <= high
                assert 0.001 < high - low < 0.2


def test_per_item_nlls_are_aligned_with_the_split(runs):
    """The stored per-item NLLs, weighed by the stored copies and lengths, give the run's own NLL (computed
    over windows), and their bootstrap is the stored interval."""
    results = load(runs / "addk")
    for split in ("dev", "test"):
        items = results["run"]["split_items"][split]
        chars = torch.tensor(items["chars"], dtype=torch.float64)
        copies = torch.tensor(items["copies"], dtype=torch.float64)
        for r in results["results"]:
            per_item = torch.tensor(r["item_nll"][split], dtype=torch.float64)
            assert float((copies * per_item).sum() / (copies * chars).sum()) == pytest.approx(r[f"{split}_nll"], abs=1e-9)
            seed = results["run"]["config"]["seed"]
            assert nll_interval(per_item, chars, copies, seed=seed).as_list() == pytest.approx(r[f"{split}_nll_ci"])


def test_report_marks_the_best_and_its_near_neighbours(runs):
    text = (runs / "addk" / "report.md").read_text()
    table = text[text.index("## Loss"):]
    assert "±" in table and "dev − best [95 %]" in table
    assert table.count("| best ") == 1
    # the trigram beats the bigram by ~0.2 nats: far beyond noise, so the bigram rows are not "≈ best"
    bigram_rows = [line for line in table.splitlines() if line.startswith("| 2 ")]
    assert bigram_rows and all("≈ best" not in line for line in bigram_rows)


def test_compare_add_k_against_kn_says_what_is_beyond_noise(runs, capsys):
    assert main(["compare", str(runs / "addk"), str(runs / "kn")]) == 0
    out = capsys.readouterr().out
    # orders 2 and 3 have two add-k configurations each in A: no one-to-one pair, and no shared key
    assert "No configuration finished in both runs" in out and "Only in A" in out and "Only in B" in out
    one_k = runs / "addk1"
    assert main(["run", "--device", "cpu", "--quiet", "--no-figures", "--corpus", str(runs / "names3000.txt"), "--samples", "2",
                 "--orders", "2,3", "--smoothing", "1", "--out", str(one_k)]) == 0
    capsys.readouterr()
    assert main(["compare", str(one_k), str(runs / "kn")]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if "→" in line]
    assert len(rows) == 2
    assert "paired over the same items" in out
    trigram = next(line for line in rows if line.startswith("| order=3"))
    assert "beyond noise" in trigram  # KN beats add-k k=1 at order 3 by far more than its noise


def test_the_report_states_threads_and_load_around_the_run(runs):
    results = load(runs / "kn")
    load_info = results["run"]["machine_load"]
    assert load_info["cores"] >= 1 and load_info["threads"] >= 1
    assert len(load_info["start"]) == 3 and len(load_info["end"]) == 3
    text = (runs / "kn" / "report.md").read_text()
    line = next(x for x in text.splitlines() if x.startswith("- threads: "))
    assert f"{load_info['threads']} of {load_info['cores']} cores" in line
    assert f"{load_info['start'][0]:.2f}" in line and f"{load_info['end'][0]:.2f}" in line


def test_short_fits_carry_a_time_band_from_repeated_fits(runs):
    for r in load(runs / "kn")["results"]:
        low, high = r["fit_seconds_range"]  # fits of a 3,000-name corpus take milliseconds: timed 5 times
        assert 0 < low <= r["fit_seconds"] <= high


def test_a_gradient_fits_time_band_comes_from_its_step_times():
    """The band against numpy's quantiles of the same step times, scaled to the fit's total."""
    import numpy as np

    from harness.train.fit import GradientFit

    steps = [0.010, 0.011, 0.012, 0.030, 0.009, 0.010, 0.013, 0.011]
    fit = GradientFit(model=None, fit_seconds=sum(steps), losses=[0.0] * len(steps), step_seconds=steps)
    p20, median, p80 = np.quantile(steps, [0.2, 0.5, 0.8])
    assert fit.fit_seconds_range() == pytest.approx([sum(steps) * p20 / median, sum(steps) * p80 / median])
    assert GradientFit(model=None, fit_seconds=1.0, losses=[0.0] * 3, step_seconds=[0.3] * 3).fit_seconds_range() is None


@pytest.mark.parametrize("band_a, band_b, expected", [
    ([0.9, 1.1], [1.9, 2.2], "2.00×"),          # disjoint: a ratio beyond noise
    ([0.9, 1.1], [1.0, 2.2], "≈ (within noise)"),  # overlapping bands: no ratio shown
    (None, [1.9, 2.2], "— (no noise band)"),
])
def test_compare_shows_a_time_ratio_only_beyond_noise(band_a, band_b, expected):
    from harness.run.compare import time_ratio_cell

    a = {"fit_seconds": 1.0, "fit_seconds_range": band_a}
    b = {"fit_seconds": 2.0, "fit_seconds_range": band_b}
    assert time_ratio_cell(a, b) == expected
