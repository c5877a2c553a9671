"""Test set-up: the Triton interpreter on machines without CUDA, and the lecture's names.txt."""
import os
from pathlib import Path

import pytest
import torch

# Triton reads TRITON_INTERPRET when it is imported, so this must run before any test module
# imports triton. With CUDA present the kernels are compiled for real instead.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# The tests check results, not speed. One intra-op thread keeps the many small tensor ops of a
# test from stalling while torch's threads wait on each other on a busy 2-core machine (a
# trigram training test took 30 s with two threads under load, 1.4 s with one); subprocesses
# started by tests inherit the same setting.
torch.set_num_threads(1)
os.environ["OMP_NUM_THREADS"] = "1"

REPO = Path(__file__).resolve().parent.parent


def names_txt_path() -> Path | None:
    """names.txt from $MAKEMORE_NAMES or ../shared/data/names.txt, or None where absent."""
    env = os.environ.get("MAKEMORE_NAMES")
    candidates = [Path(env)] if env else []
    candidates.append(REPO.parent / "shared" / "data" / "names.txt")
    for path in candidates:
        if path.is_file():
            return path
    return None


@pytest.fixture(scope="session")
def names_path() -> Path:
    path = names_txt_path()
    if path is None:
        pytest.skip("names.txt not found: set MAKEMORE_NAMES or place it at ../shared/data/names.txt")
    return path


@pytest.fixture(scope="session")
def reference_split(names_path, tmp_path_factory):
    """REFERENCE.md's split convention written to files: random.seed(42), shuffle the lines of names.txt,
    80/10/10. Returns the folder (train/dev/test .txt, and .sp with characters separated by spaces, as KenLM
    reads them) and the test lines."""
    import random

    words = names_path.read_text().splitlines()
    random.seed(42)
    random.shuffle(words)
    a, b = int(0.8 * len(words)), int(0.9 * len(words))
    folder = tmp_path_factory.mktemp("reference-split")
    for name, part in (("train", words[:a]), ("dev", words[a:b]), ("test", words[b:])):
        (folder / f"{name}.txt").write_text("\n".join(part) + "\n")
        (folder / f"{name}.sp").write_text("\n".join(" ".join(w) for w in part) + "\n")
    return folder, words[b:]


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device; this machine has none")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
