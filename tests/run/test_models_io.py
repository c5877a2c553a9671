"""Saved models: score/sample --model on a finished run give the run's own NLLs and samples, fitting nothing."""
import json

import pytest

import harness.cli
import harness.models.families
from harness.cli import main
from harness.run.config import parse_smoothing


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("saved") / "run"
    assert main(["run", "--corpus", "ssa:1900", "--orders", "2,3", "--smoothing", "auto,kn,wb,interp,0.5",
                 "--methods", "count,gradient", "--steps", "5", "--samples", "7", "--quiet", "--no-figures", "--device", "cpu",
                 "--out", str(out)]) == 0
    return out


@pytest.fixture
def no_fitting(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a model was fitted")

    monkeypatch.setattr(harness.models.families, "fit_configuration", refuse)
    monkeypatch.setattr(harness.cli, "fit_full", refuse)


def records(run_dir):
    return json.loads((run_dir / "results.json").read_text())["results"]


def test_every_configuration_is_saved(run_dir):
    for r in records(run_dir):
        assert (run_dir / r["model_file"]).is_file(), r["key"]


@pytest.mark.parametrize("order", [2, 3])
@pytest.mark.parametrize("smoothing", ["auto", "kn", "wb", "interp", "0.5"])
def test_score_and_sample_with_model_equal_the_run(run_dir, order, smoothing, no_fitting, capsys):
    spec = parse_smoothing(smoothing)
    (record,) = [r for r in records(run_dir) if r["order"] == order and r["smoothing_spec"] == spec]
    capsys.readouterr()
    assert main(["score", "--model", str(run_dir), "--order", str(order), "--smoothing", smoothing, "--device", "cpu",
                 "--file", str(run_dir / "split" / "test.txt")]) == 0
    out, err = capsys.readouterr()
    assert f"mean NLL {record['test_nll']:.6f} nats/char" in out
    assert err.startswith("model: loaded ") and record["model_file"] in err
    assert main(["sample", "--model", str(run_dir), "--order", str(order), "--smoothing", smoothing, "--device", "cpu",
                 "--num", "7", "--seed", str(json.loads((run_dir / "results.json").read_text())["run"]["config"]["seed"])]) == 0
    assert [s.removesuffix(".") for s in capsys.readouterr().out.split()] == record["samples"]


def test_a_gradient_model_file(run_dir, no_fitting, capsys):
    (record,) = [r for r in records(run_dir) if r["order"] == 3 and r["method"] == "gradient"]
    capsys.readouterr()
    assert main(["score", "--model", str(run_dir / record["model_file"]), "--device", "cpu",
                 "--file", str(run_dir / "split" / "test.txt")]) == 0
    assert f"mean NLL {record['test_nll']:.6f} nats/char" in capsys.readouterr().out


@pytest.mark.parametrize("args, fragments", [
    (["--model", "no/such/run"], ["no/such/run", "does not exist"]),
    (["--order", "5", "--smoothing", "kn"], ["no model of order 5", "saved:"]),
    (["--order", "2", "--smoothing", "kn", "xyz!"], ["'!'", "not in the corpus vocabulary"]),
])
def test_bad_model_arguments_are_one_line_errors(run_dir, args, fragments, capsys):
    from tests.test_cli import assert_clean_error_in_process

    full = ["score", "--device", "cpu", *args] if "--model" in args else ["score", "--device", "cpu", "--model", str(run_dir), *args]
    if "xyz!" not in args:
        full.append("abc")
    assert_clean_error_in_process(capsys, full, *fragments)


def test_a_file_that_is_no_model(tmp_path, capsys):
    from tests.test_cli import assert_clean_error_in_process

    bad = tmp_path / "x.pt"
    bad.write_bytes(b"not a model")
    assert_clean_error_in_process(capsys, ["score", "--model", str(bad), "abc"], "cannot be read as a saved model")


@pytest.mark.parametrize("where, says", [("missing folder", "does not exist; create it"), ("a folder", "is a directory"),
                                         ("under a file", "is a file, not a folder")])
def test_export_to_a_path_it_cannot_write_is_one_line(run_dir, tmp_path, capsys, where, says):
    from tests.test_cli import assert_clean_error_in_process

    (tmp_path / "file").write_text("x")
    out = {"missing folder": tmp_path / "nope" / "m.arpa", "a folder": tmp_path,
           "under a file": tmp_path / "file" / "m.arpa"}[where]
    assert_clean_error_in_process(capsys, ["export", str(run_dir), "--order", "3", "--smoothing", "kn", "--arpa", str(out)],
                                  says)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # no half-written file left behind


def test_export_names_a_model_file_given_as_the_run_folder(run_dir, tmp_path, capsys):
    from tests.test_cli import assert_clean_error_in_process

    (model,) = (run_dir / "models").glob("order=3_count_smoothing=kn.pt")
    assert_clean_error_in_process(capsys, ["export", str(model), "--order", "3", "--smoothing", "kn", "--arpa",
                                           str(tmp_path / "m.arpa")], "is a file", "run folder that holds it")


@pytest.mark.parametrize("folder, says", [("run", "has no model of order 5 smoothing kn (saved: "), ("empty", "has no models/ folder")])
def test_export_errors_name_export_not_a_flag_it_has_not(run_dir, tmp_path, capsys, folder, says):
    """export takes a run folder, not --model; its errors said '--model ...' and offered 'or its file'."""
    given = str(run_dir) if folder == "run" else str(tmp_path)
    order = "5" if folder == "run" else "3"
    capsys.readouterr()
    assert main(["export", given, "--order", order, "--smoothing", "kn", "--arpa", str(tmp_path / "m.arpa")]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: export: run folder {given!r} {says}") and "--model" not in line and "file" not in line.split(";")[1]


def test_export_prints_the_counts_its_file_declares(run_dir, tmp_path, capsys):
    out = tmp_path / "m.arpa"
    capsys.readouterr()
    assert main(["export", str(run_dir), "--order", "3", "--smoothing", "kn", "--arpa", str(out)]) == 0
    printed = capsys.readouterr().out.split("ARPA (")[1].split(" n-grams per order")[0]
    declared = [line.split("=")[1] for line in out.read_text().splitlines()[1:4]]
    assert [p.replace(",", "") for p in printed.split(", ")] == declared


def _damaged(payload: dict, damage: str) -> dict:
    import copy

    import torch

    payload = copy.deepcopy(payload)
    state = payload["state"]
    if damage == "no state":
        payload.pop("state")
    elif damage == "vocab None":
        payload["vocab"] = None
    elif damage == "meta None":
        payload["meta"] = None
    elif damage == "cells out of range":
        state["cells"] = torch.tensor([10**9])
    elif damage == "cells as floats":
        state["cells"] = state["cells"].double()
    elif damage == "vocab_size huge":
        state["vocab_size"] = 10**6
    elif damage.startswith("k "):
        state["k"] = {"k negative": -5.0, "k NaN": float("nan"), "k inf": float("inf")}[damage]
    elif damage == "order mislabelled":
        payload["order"] = 3
    elif damage == "vocab without the boundary":
        payload["vocab"] = ["a", *payload["vocab"][1:]]
    elif damage == "vocab repeats a character":
        payload["vocab"] = [*payload["vocab"][:-1], "a"]
    elif damage == "negative count":
        state["values"][0] = -3.0
    elif damage == "inf count":
        state["values"][0] = float("inf")
    return payload


DAMAGE = {"no state": "lacks state", "vocab None": "not a list", "meta None": "not a list", "cells out of range": "does not rebuild",
          "cells as floats": "does not rebuild", "vocab_size huge": "does not rebuild",
          # these loaded and scored without a word before (a hostile sweep): NaN, -inf or another model's order
          "k negative": "smoothing k is -5.0", "k NaN": "holds NaN", "k inf": "smoothing k is inf",
          "order mislabelled": "says order 3 but holds an order-2 model",
          "vocab without the boundary": "vocabulary is not '.' then distinct", "vocab repeats a character": "distinct single",
          "negative count": "negative values", "inf count": "not finite, non-negative and summing to 1"}


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_model_file_is_one_line(run_dir, tmp_path, capsys, damage):
    """A hostile sweep found the first six tracebacks (KeyError, TypeError, AttributeError, RuntimeError, IndexError)."""
    import torch

    from tests.test_cli import assert_clean_error_in_process

    (good,) = (run_dir / "models").glob("order=2_count_smoothing=0.5.pt")
    bad = tmp_path / "bad.pt"
    torch.save(_damaged(torch.load(good, weights_only=True), damage), bad)
    assert_clean_error_in_process(capsys, ["score", "--corpus", "ssa:1900", "--device", "cpu", "--model", str(bad), "emma"],
                                  "is damaged", DAMAGE[damage])


def test_export_to_gz_is_gzipped_and_scores_as_the_plain_file(run_dir, tmp_path, capsys):
    """export --arpa x.arpa.gz wrote plain text before, which score --arpa then refused as 'not gzipped'."""
    import gzip

    plain, packed = tmp_path / "m.arpa", tmp_path / "m.arpa.gz"
    for out in (plain, packed):
        assert main(["export", str(run_dir), "--order", "3", "--smoothing", "kn", "--arpa", str(out)]) == 0
    assert gzip.decompress(packed.read_bytes()) == plain.read_bytes()
    capsys.readouterr()
    printed = []
    for out in (plain, packed):
        assert main(["score", "--arpa", str(out), "emma", "olivia"]) == 0
        printed.append(capsys.readouterr().out)
    assert printed[0] == printed[1] and "mean NLL" in printed[0]
