"""`bench --smoothing` on a tiny corpus: the shape of smoothing.csv and smoothing.md, and nltk's rows."""
import math
import sys

import pytest

from harness.bench.smoothing import CSV_COLUMNS, METHODS, NLTK_DISCOUNTS
from harness.cli import main

NAMES = ("emma olivia ava isabella sophia mia amelia ava emma ella anna liam noah oliver elijah james william "
         "benjamin lucas henry mila ella emma anna ann annie lia liam mia amy charlotte harper evelyn abigail emily "
         "elizabeth sofia avery scarlett eleanor madison layla penelope aria chloe grace ellie nora hazel zoey riley "
         "victoria lily aurora violet nova hannah emilia zoe stella everly isla leah").split()


def bench_smoothing(tmp_path, name: str):
    """Run `bench --smoothing` at order 2 with a tiny nltk budget; (csv frame, markdown text)."""
    import pandas as pd

    corpus = tmp_path / "names.txt"
    corpus.write_text("\n".join(NAMES) + "\n")  # repeated names become weights: nltk gets the copies
    out = tmp_path / name
    argv = ["bench", "--smoothing", "--quick", "--corpus", str(corpus), "--orders", "2", "--nltk-seconds", "0.0001",
            "--out", str(out), "--device", "cpu"]
    assert main(argv) == 0
    return pd.read_csv(out / "smoothing.csv", keep_default_na=False, na_values=[""]), (out / "smoothing.md").read_text()


def check_ours(df, md):
    assert list(df.columns) == CSV_COLUMNS
    ours = df[df["method"].str.startswith("harness-")]
    assert set(ours["method"]) == set(METHODS) - {"nltk-kn"}
    assert set(ours["order"]) == {2}
    # each of our models: a fit on train, and scores on the dev subset (if nltk ran) and on all of dev
    for _, model in ours.groupby(["method", "discount"], dropna=False):
        assert set(zip(model["phase"], model["scope"])) >= {("fit", "train"), ("score", "dev")}
    assert (ours["chars_per_s"] > 0).all() and (ours["seconds"] > 0).all()
    scores = ours[ours["phase"] == "score"]
    assert scores["nll_nats"].map(math.isfinite).all() and (scores["nll_nats"] > 0).all()
    for column in ("machine", "load_avg", "load_avg_start", "load_avg_end", "threads", "cores", "torch", "nltk",
                   "git_commit", "timestamp", "device_name"):
        assert df[column].notna().all() and (df[column].astype(str) != "").all(), column
    assert (df["threads"] == 1).all() and (df["threads_how"] == "given").all()  # the default: nltk runs on one core
    assert (f"latest run: 1 torch CPU thread(s) of {int(df['cores'].iloc[0])} cores" in md
            and f"after: {df['load_avg_end'].iloc[-1]}" in md)
    assert md.startswith("# Smoothed count models against nltk.lm.KneserNeyInterpolated")
    ours = df[df["method"] != "nltk-kn"]
    assert ((ours["repeats"] < 3) | (ours["spread"] >= 1)).all()  # a repeated row's p80/p20 is recorded
    for text in ("## Environment", "load average", "## Where nltk's Kneser-Ney and ours differ", "| order, method",
                 "fit p80/p20", "dev p80/p20",
                 "2 harness-kn ", "2 harness-kn-nltkdef d=0.75"):
        assert text in md, text


def test_bench_smoothing_with_nltk(tmp_path):
    pytest.importorskip("nltk.lm", reason="nltk is not installed: its rows of bench --smoothing cannot be measured")
    df, md = bench_smoothing(tmp_path, "with-nltk")
    check_ours(df, md)
    nltk = df[df["method"] == "nltk-kn"]
    assert sorted(set(nltk["discount"])) == sorted(NLTK_DISCOUNTS)
    assert set(zip(nltk["phase"], nltk["scope"])) == {("fit", "train"), ("score", "dev-subset")}
    assert (nltk["chars_per_s"] > 0).all()
    subset = df[(df["phase"] == "score") & (df["scope"] == "dev-subset")]
    whole = df[(df["phase"] == "score") & (df["scope"] == "dev")]
    # the budget runs out after the first dev name: a strict subset, the same one for every method
    assert subset["items"].nunique() == 1 and subset["items"].iloc[0] < whole["items"].iloc[0]
    assert set(subset["method"]) == set(METHODS)
    # at order 2 nltk's padding adds nothing ours lacks: ours under nltk's definition scores the same
    for d in NLTK_DISCOUNTS:
        pair = subset[subset["discount"] == d].set_index("method")["nll_nats"]
        assert pair["harness-kn-nltkdef"] == pytest.approx(pair["nltk-kn"], abs=1e-9)
    assert "sums to" in " ".join(nltk["note"].dropna())
    assert "nltk scored order 2:" in md and "How dev NLL compares" in md and "2 nltk-kn d=0.1" in md


def test_bench_smoothing_without_nltk(tmp_path, monkeypatch):
    """With nltk unimportable, our rows are measured and nltk's fit rows say why they are empty."""
    monkeypatch.setitem(sys.modules, "nltk", None)  # `import nltk...` raises ImportError
    df, md = bench_smoothing(tmp_path, "without-nltk")
    check_ours(df, md)
    nltk = df[df["method"] == "nltk-kn"]
    assert set(nltk["phase"]) == {"fit"} and nltk["chars_per_s"].isna().all()
    assert nltk["note"].str.contains("nltk not installed").all()
    assert (df["nltk"] == "not installed").all()
    assert "nltk: nltk not installed" in md
