"""Neural families in the run grid: trained, scored exactly over whole splits, checkpointed in the run
folder, resumed to the uninterrupted losses, reported, and configured by validated flags and keys."""
import json
import math
import random
from contextlib import contextmanager

import pytest
import torch

from harness.cli import main
from harness.core.progress import Progress
from harness.models.neural.common import NeuralSettings
from harness.run.config import DEFAULTS, make_run_config
from harness.run.report import load_results
from harness.run.runner import grid_of, run_grid
from harness.train.neural import BEST, CHECKPOINT, load_model
from tests.test_cli import assert_clean_error_in_process

TINY = ["--nn-embd", "8", "--nn-embd2", "16", "--nn-layer", "1", "--nn-head", "2", "--nn-batch-size", "16",
        "--nn-lr", "0.01", "--nn-warmup", "5", "--nn-eval-interval", "10", "--nn-steps", "30"]


@pytest.fixture(scope="module")
def names_file(tmp_path_factory):
    """A few hundred made-up names with structure a tiny model learns in tens of steps."""
    rng = random.Random(0)
    syllables = ["ka", "ri", "na", "lo", "mi", "su", "te", "ba", "ro", "el"]
    names = set()
    while len(names) < 300:
        names.add("".join(rng.choice(syllables) for _ in range(rng.randint(1, 3))))
    path = tmp_path_factory.mktemp("corpus") / "names.txt"
    path.write_text("\n".join(sorted(names)) + "\n")
    return path


def records(out):
    return {r["method"]: r for r in json.loads((out / "results.json").read_text())["results"]}


def brute_force_nll(model, names, vocab):
    """Mean NLL per predicted token (end included), every token scored from a forward pass over its own
    prefix alone: an oracle that shares nothing with token_log_probs' padded, length-sorted batches."""
    stoi = {ch: i for i, ch in enumerate(vocab)}
    total, tokens = 0.0, 0
    with torch.no_grad():
        for name in names:
            x = [0] + [stoi[ch] for ch in name]
            y = x[1:] + [0]
            for t in range(len(y)):
                prefix = x[: t + 1][-model.max_context:] if model.max_context else x[: t + 1]
                logits = model(torch.tensor([prefix]))[0, -1].double()
                total -= float(torch.log_softmax(logits, -1)[y[t]])
                tokens += 1
    return total / tokens


@pytest.fixture(scope="module")
def mixed_run(names_file, tmp_path_factory):
    """One run of count models, an MLP and a Transformer, with --mix: the folder."""
    out = tmp_path_factory.mktemp("mixed") / "run"
    assert main(["run", "--corpus", str(names_file), "--orders", "2,3", "--methods", "count,mlp,transformer",
                 "--samples", "5", "--device", "cpu", "--quiet", "--out", str(out), "--mix", *TINY]) == 0
    return out


def test_count_mlp_and_transformer_in_one_run(mixed_run):
    out = mixed_run
    results = json.loads((out / "results.json").read_text())["results"]
    assert [(r["method"], r["order"]) for r in results] == [("count", 2), ("count", 3), ("mlp", None), ("transformer", None),
                                                            ("mix", None)]
    by_method = records(out)
    dev_names = (out / "split" / "dev.txt").read_text().split()
    for method in ("mlp", "transformer"):
        r = by_method[method]
        assert r["status"] == "ok" and r["steps_trained"] == 30 and len(r["train_losses"]) == 30
        assert [c["step"] for c in r["dev_curve"]] == [10, 20, 30]
        folder = out / "checkpoints" / next(p.name for p in (out / "checkpoints").iterdir() if p.name.startswith(method))
        assert (folder / BEST).is_file() and (folder / CHECKPOINT).is_file()
        best = load_model(folder / BEST)
        vocab = torch.load(folder / BEST, weights_only=True)["meta"]["vocab"]
        # the reported dev NLL is the saved best model's, over every dev name
        assert r["dev_nll"] == pytest.approx(brute_force_nll(best, dev_names, vocab), abs=1e-6)
        assert r["dev_nll"] == pytest.approx(r["best_dev_nll"], abs=1e-12) == min(c["dev_nll"] for c in r["dev_curve"])
        assert r["dev_nll"] < math.log(len(vocab)) - 0.3  # it learned something in 30 steps
        low, high = r["dev_nll_ci"]
        assert low < r["dev_nll"] < high and len(r["item_nll"]["dev"]) == len(set(dev_names))
        assert r["parameters"] == best.num_parameters() and r["steps_per_second"] > 0 and r["tokens_per_second"] > 0
        assert len(r["samples"]) == 5
    report = (out / "report.md").read_text()
    board = report.split("## Leaderboard")[1].split("\n## ")[0]
    assert board.count("\n| order 2 count") == 1 and board.count("\n| mlp, torch") == 1 and board.count("\n| transformer, torch") == 1
    assert board.count("\n| mixture of the best count and neural models, λ ") == 1
    assert "![neural training curves](neural_curves.png)" in board
    assert (out / "neural_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "### mlp, torch" in report  # samples per family
    # the report rebuilds from results.json alone, byte for byte
    before = report
    (out / "report.md").unlink()
    assert main(["report", str(out)]) == 0
    assert (out / "report.md").read_text() == before


def test_mix_row_mixes_the_best_count_and_neural_models(mixed_run):
    """The --mix record: its components are the best on dev of each kind, λ is EM's on dev (a mixture at its
    optimum is no worse on dev than either end, λ = 1 or 0), and it carries what every row carries."""
    from harness.evaluation.evaluate import corpus_nll, token_items
    from harness.models.mixture import MixtureModel, fit_lambda_em
    from harness.run.runner import Runner

    results = load_results(mixed_run)
    records = {r["key"]: r for r in results["results"]}
    mix = next(r for r in results["results"] if r["method"] == "mix")
    count = min((r for r in results["results"] if r["method"] == "count"), key=lambda r: r["dev_nll"])
    neural = min((r for r in results["results"] if r["method"] in ("mlp", "transformer")), key=lambda r: r["dev_nll"])
    assert mix["status"] == "ok" and (mix["mix_count"], mix["mix_neural"]) == (count["key"], neural["key"])
    assert 0 < mix["lambda"] <= 1 and mix["em_converged"] and mix["em_iterations"] == len(mix["em_path"]) <= 100
    # here the count model is much the better, so the optimum sits at λ = 1, which EM only creeps toward (it
    # stopped a hair inside); the Newton finish puts λ there, so the mixture is no worse, to float rounding
    assert mix["dev_nll"] <= min(count["dev_nll"], neural["dev_nll"]) + 1e-12
    for split in ("train", "dev", "test"):
        low, high = mix[f"{split}_nll_ci"]
        assert low < mix[f"{split}_nll"] < high
    assert len(mix["item_nll"]["dev"]) == len(results["run"]["split_items"]["dev"]["chars"]) and len(mix["samples"]) == 5
    # the components reloaded from the run folder (as --resume would) give the recorded λ and NLLs again
    runner = Runner(make_run_config(results["run"]["config"]), torch.device("cpu"))
    runner.run_dir, runner.finished = mixed_run, records
    a, b = runner.model_of(count["key"]), runner.model_of(neural["key"])
    dev = runner.splits["dev"]
    assert corpus_nll(a, dev) == pytest.approx(count["dev_nll"], abs=1e-12)
    assert corpus_nll(b, dev) == pytest.approx(neural["dev_nll"], abs=1e-9)
    weight = dev.item_weights().double()[token_items(dev)]
    em = fit_lambda_em(a.token_log_probs(dev), b.token_log_probs(dev), weight)
    assert em.lam == pytest.approx(mix["lambda"], abs=1e-9)
    assert corpus_nll(MixtureModel(a, b, em.lam), runner.splits["test"]) == pytest.approx(mix["test_nll"], abs=1e-9)
    report = (mixed_run / "report.md").read_text()
    assert f"**λ = {mix['lambda']:.4f}**" in report.split("## Mixture (--mix)")[1]
    csv = (mixed_run / "results.csv").read_text().splitlines()
    assert "lambda" in csv[0].split(",") and f"{mix['lambda']}" in csv[-1]


@pytest.mark.parametrize("args, fragment", [
    (["--methods", "mlp"], "mix (--mix) mixes the run's best count model with its best neural one, but methods (--methods) has no count"),
    (["--methods", "count,gradient"], "has no neural family; add one of mlp, cnn, gru, transformer"),
    (["--methods", "count,mlp", "--split", "none", "--smoothing", "1"], "mix (--mix) tunes its weight on the dev split"),
])
def test_mix_without_what_it_mixes_is_one_line_exit_2(capsys, args, fragment):
    assert_clean_error_in_process(capsys, ["run", *args, "--mix"], fragment)


class StopAtScore(Progress):
    """Quiet progress whose training bar of one family raises Ctrl-C at its n-th dev score."""

    def __init__(self, method: str, score: int):
        super().__init__(quiet=True)
        self.method, self.score = method, score

    @contextmanager
    def bar(self, total, desc):
        seen = []

        def step(*_):
            seen.append(1)
            if desc.startswith(self.method) and len(seen) == self.score:
                raise KeyboardInterrupt

        yield step


@pytest.mark.parametrize("method", ["mlp", "gru"])
def test_interrupted_training_resumes_to_the_uninterrupted_losses(names_file, tmp_path, method):
    values = {"corpus": str(names_file), "orders": "2", "methods": f"count,{method}", "samples": 3, "device": "cpu",
              "nn_embd": 8, "nn_embd2": 16, "nn_layer": 1, "nn_head": 2, "nn_batch_size": 16, "nn_lr": 0.01,
              "nn_warmup": 5, "nn_eval_interval": 10, "nn_steps": 40, "nn_dropout": 0.2}
    cfg = make_run_config(values)
    whole = run_grid(cfg, tmp_path / "whole", Progress(quiet=True), "test", figures=False)["results"][1]
    cut = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        run_grid(cfg, cut, StopAtScore(method, 2), "test")
    assert [r["status"] for r in load_results(cut)["results"]] == ["ok", "interrupted"]
    assert main(["run", "--resume", str(cut), "--quiet", "--no-figures"]) == 0
    resumed = load_results(cut)["results"][1]
    assert resumed["status"] == "ok" and resumed["resumed_from"] == 20
    assert resumed["train_losses"] == whole["train_losses"]  # exactly, dropout on
    assert [c["dev_nll"] for c in resumed["dev_curve"]] == [c["dev_nll"] for c in whole["dev_curve"]]
    for key in ("dev_nll", "test_nll", "train_nll", "samples", "tokens_trained", "best_step"):
        assert resumed[key] == whole[key], key


def test_neural_keys_default_to_neural_settings_and_sweep():
    settings = NeuralSettings()
    assert DEFAULTS.nn_lr == (settings.lr,) and DEFAULTS.nn_batch_size == (settings.batch_size,)
    assert DEFAULTS.nn_steps == settings.steps and DEFAULTS.time_budget == settings.time_budget_seconds
    cfg = make_run_config({"methods": "count,mlp,gru", "orders": "2,3", "nn_lr": "0.001,0.01", "nn_dropout": [0.0, 0.1]})
    grid = grid_of(cfg)
    neural = [p for p in grid if p["method"] != "count"]
    assert [p["method"] for p in grid[:2]] == ["count", "count"]  # one count model per order, then the neural ones once
    assert len(neural) == 2 * 2 * 2 and all(p["order"] is None for p in neural)
    assert {(p["nn"]["nn_lr"], p["nn"]["nn_dropout"]) for p in neural if p["method"] == "mlp"} == {
        (0.001, 0.0), (0.001, 0.1), (0.01, 0.0), (0.01, 0.1)}


@pytest.mark.parametrize("args, fragment", [
    (["--nn-lr", "0"], "nn_lr (--nn-lr) must be > 0"),
    (["--nn-embd", "0"], "nn_embd (--nn-embd) must be >= 1"),
    (["--nn-steps", "2.5"], "nn_steps (--nn-steps) must be a whole number"),
    (["--nn-dropout", "1"], "nn_dropout (--nn-dropout) must be below 1"),
    (["--time-budget", "-1"], "time_budget (--time-budget) must be >= 0"),
    (["--nn-embd", "10", "--nn-head", "4"], "nn_embd (--nn-embd) 10 is not a multiple of nn_head (--nn-head) 4"),
    (["--nn-batch-size", ""], "nn_batch_size (--nn-batch-size) is empty"),
])
def test_bad_neural_flags_are_one_line_exit_2(capsys, args, fragment):
    assert_clean_error_in_process(capsys, ["run", "--methods", "transformer", *args], fragment)


@pytest.mark.parametrize("toml, fragment", [
    ("nn_lr = 0", "nn_lr (--nn-lr) must be > 0"),
    ("nn_embd = [8, 0]", "nn_embd (--nn-embd) must be >= 1"),
    ("nn_patience = -1", "nn_patience (--nn-patience) must be >= 0"),
    ("nn_width = 3", "unknown configuration key 'nn_width'"),
    ('nn_compile = "yes"', "nn_compile (--nn-compile) must be true or false"),
    ('mix = "yes"', "mix (--mix) must be true or false"),
    ("mix = true", "mix (--mix) mixes the run's best count model with its best neural one"),
])
def test_bad_neural_toml_keys_are_one_line_exit_2(capsys, tmp_path, toml, fragment):
    grid = tmp_path / "grid.toml"
    grid.write_text(f'methods = ["mlp"]\n{toml}\n')
    assert_clean_error_in_process(capsys, ["run", "--config", str(grid)], fragment)
