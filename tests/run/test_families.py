"""A family named in FAMILIES runs through the runner with nothing else taught about it, even one
whose context is the whole prefix (order None, as issue 15's GRU or Transformer)."""
import math

import pytest
import torch

from harness.evaluation.evaluate import token_items
from harness.models import families
from harness.models.families import Family, Fitted
from harness.models.protocol import LanguageModel
from harness.run.config import RunConfig
from harness.run.runner import Runner, config_key, grid_of


class PositionModel(LanguageModel):
    """P(end | prefix of t characters) = 1 / (t + 2), the other tokens uniform: a model no n-gram
    context id can express, since it counts the whole prefix."""

    order = None

    def __init__(self, vocab_size: int):
        self.vocab_size = vocab_size

    def _end(self, t: torch.Tensor) -> torch.Tensor:
        return 1.0 / (t.to(torch.float64) + 2)

    def token_log_probs(self, corpus):
        item = token_items(corpus)
        first = torch.cumsum(corpus.lengths + 1, 0) - (corpus.lengths + 1)
        t = torch.arange(len(item)) - first[item]
        end = self._end(t)
        is_end = t == corpus.lengths[item]
        return torch.where(is_end, end.log(), ((1 - end) / (self.vocab_size - 1)).log())

    def prefix_next_probs(self, prefix):
        B, t = prefix.shape
        end = float(self._end(torch.tensor(t)))
        rows = torch.full((B, self.vocab_size), (1 - end) / (self.vocab_size - 1), dtype=torch.float32)
        rows[:, 0] = end
        return rows


@pytest.fixture
def position_family(monkeypatch):
    family = Family(
        points=lambda cfg, order: [{"order": order, "method": "position", "loss": None, "smoothing_spec": None, "reg": None}],
        key=lambda p: f"order={p['order']} position",
        fields=lambda point, cfg: {"smoothing": None},
        fit=lambda point, data: Fitted(PositionModel(data.train.vocab_size), {"fit_seconds": 0.0}),
    )
    monkeypatch.setitem(families.FAMILIES, "position", family)


def test_a_new_family_is_one_entry(position_family, tmp_path):
    corpus = tmp_path / "names.txt"
    corpus.write_text("\n".join(["emma", "ava", "olivia", "mia", "isabella", "zoe", "amelia", "ella", "harper", "ivy"] * 3))
    cfg = RunConfig(corpus=str(corpus), orders=(2,), methods=("position",), samples=7, device="cpu")
    runner = Runner(cfg, torch.device("cpu"))
    (point,) = grid_of(cfg)
    record = runner.evaluate(point)
    assert record["key"] == config_key(point) == "order=2 position"
    V = runner.corpus.vocab.size
    for split in ("train", "dev", "test"):
        items = runner.splits[split].items
        weights = runner.splits[split].item_weights().tolist()
        nats = chars = 0.0
        for name, w in zip(items, weights):  # by hand, item by item
            for t in range(len(name) + 1):
                end = 1 / (t + 2)
                nats -= w * math.log(end if t == len(name) else (1 - end) / (V - 1))
            chars += w * (len(name) + 1)
        assert record[f"{split}_nll"] == pytest.approx(nats / chars, rel=1e-12)
    assert len(record["samples"]) == 7 and all(len(s) <= 64 for s in record["samples"])
