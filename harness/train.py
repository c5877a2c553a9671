"""Fitting models: count models (with k tuned on dev), gradient models come later in this module."""
from __future__ import annotations

import time
from dataclasses import dataclass

from harness.evaluate import mean_nll
from harness.models import CountModel
from harness.ngrams import Windows


@dataclass
class FitResult:
    model: CountModel
    fit_seconds: float
    tuning: list[dict]  # [{"k": k, "dev_nll": nll}, ...] when k was tuned, else []


def fit_count(train: Windows, dev: Windows | None, k: float | None, k_grid) -> FitResult:
    """Count the training windows once; with k None pick k from `k_grid` by dev NLL (exercise E03).

    Ties go to the smaller k. The test split is never looked at here.
    """
    start = time.perf_counter()
    model = CountModel.fit(train, k if k is not None else 0.0)
    tuning = []
    if k is None:
        best = None
        for candidate in k_grid:
            nll = mean_nll(model.with_smoothing(candidate).log_probs(), dev)
            tuning.append({"k": float(candidate), "dev_nll": nll})
            if best is None or nll < best[1]:
                best = (candidate, nll)
        model = model.with_smoothing(best[0])
    return FitResult(model, time.perf_counter() - start, tuning)
