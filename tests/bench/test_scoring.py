"""bench --suite scoring: every form of the harness and KenLM's query give one NLL on the same file."""
import pandas as pd

from harness.cli import main
from tests.models.test_arpa import kenlm_bin


def test_scoring_suite_rows_agree(tmp_path, capsys):
    folder = kenlm_bin()
    args = ["bench", "--suite", "scoring", "--corpus", "ssa:1900", "--orders", "2", "--scoring-chars", "20000",
            "--device", "cpu", "--out", str(tmp_path)]
    assert main(args + (["--kenlm-bin", str(folder)] if folder else [])) == 0
    rows = pd.read_csv(tmp_path / "scoring.csv")
    assert set(rows["method"]) == {"harness-rows", "harness-backoff", "harness-interp", "kenlm-query"}
    timed = rows[rows["status"] == "ok"]
    assert (timed["nll_nats"] - timed["nll_nats"].iloc[0]).abs().max() < 1e-4 and (timed["chars_per_s"] > 0).all()
    query = rows[rows["method"] == "kenlm-query"].iloc[0]
    assert query["status"] == ("ok" if folder else "skipped")  # skipped, saying why, where KenLM is not built
    assert "scoring throughput" in (tmp_path / "scoring.md").read_text().lower()
