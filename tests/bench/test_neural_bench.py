"""The neural training bench: one verified row per family x backend, and its markdown from the CSV."""
import pytest
import torch

from harness.bench.common import write_rows
from harness.bench.neural import CSV_COLUMNS, render_neural, run_neural_bench

SIZES = dict(n_embd=8, n_embd2=16, n_layer=1, n_head=2, batch_size=8, threads=1)


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "names.txt"
    path.write_text("\n".join(f"{a}{b}{c}" for a in "kmr" for b in "aeio" for c in "ln") + "\n")
    return path


def test_rows_are_timed_and_checked_against_torch(corpus_file):
    rows = run_neural_bench(str(corpus_file), torch.device("cpu"), quick=True, seed=3, log=lambda _: None,
                            families=("mlp", "gru"), backends=("torch", "manual"), sizes=SIZES)
    assert [(r["family"], r["backend"], r["status"]) for r in rows] == [
        ("mlp", "torch", "ok"), ("mlp", "manual", "ok"), ("gru", "torch", "ok"), ("gru", "manual", "ok")]
    for r in rows:
        assert r["steps"] == 20 and r["steps_per_second"] > 0 and r["tokens_per_second"] > r["steps_per_second"]
        assert r["max_loss_rel_diff"] <= 1e-4 and r["threads"] == 1 and r["parameters"] > 0
    assert rows[0]["vs_torch"] == 1.0 and rows[0]["max_loss_rel_diff"] == 0.0


def test_unavailable_backends_are_skipped_and_the_report_renders(corpus_file, tmp_path, monkeypatch):
    import kernels

    real = kernels.backend_available
    monkeypatch.setattr(kernels, "backend_available",
                        lambda name, device: (False, "needs CUDA") if name == "triton" else real(name, device))
    rows = run_neural_bench(str(corpus_file), torch.device("cpu"), True, 3, log=lambda _: None,
                            families=("mlp",), backends=("torch", "triton"), sizes=SIZES)
    assert (rows[1]["status"], rows[1]["note"]) == ("skipped", "needs CUDA")
    write_rows(rows, tmp_path / "neural.csv", CSV_COLUMNS)
    text = render_neural(tmp_path / "neural.csv", "python -m harness bench --suite train")
    assert "| mlp" in text and "skipped" in text and "compile time excluded" in text
