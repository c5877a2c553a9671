"""A linear mixture of two language models: p(t | prefix) = λ p_a(t | prefix) + (1 - λ) p_b(t | prefix).

`run --mix` mixes the run's best count model (lowest dev NLL) with its best neural model. The two
err differently (an n-gram forgets everything past its order; a small network smooths what it saw
rarely), so a per-token mixture can beat both. λ is tuned on dev by EM (`fit_lambda_em`): for a
two-component mixture with fixed components the dev log-likelihood is concave in λ and EM climbs it
monotonically to the maximum.

The mixture answers the model protocol from its components' answers alone, so it mixes any two
families: `token_log_probs` mixes their per-token log-probabilities (in log space, so a token one
component gives probability 0 keeps the other's share), `prefix_next_probs` their next-token rows
(so the one batched sampler draws from the mixture). It has no dense table: its context is the
neural component's, the whole prefix.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from harness.core.errors import HarnessError
from harness.data.corpus import Corpus
from harness.models.protocol import LanguageModel

EM_TOLERANCE = 1e-6  # stop when λ moves less than this in one iteration
EM_MAX_ITERATIONS = 100


def mixed_log_probs(log_probs_a: torch.Tensor, log_probs_b: torch.Tensor, lam: float) -> torch.Tensor:
    """log(λ exp(a) + (1 - λ) exp(b)) elementwise, float64; λ = 1 gives a exactly, λ = 0 gives b exactly."""
    a, b = log_probs_a.to(torch.float64), log_probs_b.to(torch.float64)
    if lam == 1.0:
        return a.clone()
    if lam == 0.0:
        return b.clone()
    return torch.logaddexp(a + math.log(lam), b + math.log1p(-lam))


@dataclass(frozen=True)
class EMFit:
    """λ tuned by EM and how it got there: λ after each iteration (`path`, the start not included)."""

    lam: float
    iterations: int
    converged: bool
    path: list[float]


def fit_lambda_em(log_probs_a: torch.Tensor, log_probs_b: torch.Tensor, weight: torch.Tensor | None = None,
                  start: float = 0.5, tolerance: float = EM_TOLERANCE, max_iterations: int = EM_MAX_ITERATIONS) -> EMFit:
    """The λ maximising sum_t w_t log(λ p_a(t) + (1 - λ) p_b(t)) over tokens t, by EM.

    log_probs_a / log_probs_b: (N,) log-probabilities of the same tokens under the two components;
    weight: (N,) each token's weight (its item's copies; None = 1 each). One iteration sets λ to the
    weighted mean of the posterior λ p_a / (λ p_a + (1 - λ) p_b); it stops when λ moves less than
    `tolerance` or after `max_iterations`. A token both components give probability 0 carries no
    information about λ and is left out; one only a component gives 0 pulls λ toward the other.
    """
    if not 0.0 < start < 1.0:
        raise HarnessError(f"the EM start of λ must lie strictly between 0 and 1, got {start!r}")
    a, b = log_probs_a.to(torch.float64), log_probs_b.to(torch.float64)
    if a.shape != b.shape or a.dim() != 1:
        raise HarnessError(f"mixture components scored different tokens ({tuple(a.shape)} vs {tuple(b.shape)})")
    w = torch.ones_like(a) if weight is None else weight.to(device=a.device, dtype=torch.float64)
    informative = torch.isfinite(a) | torch.isfinite(b)
    a, b, w = a[informative], b[informative], w[informative]
    total = w.sum()
    if float(total) == 0:
        raise HarnessError("no dev token to tune the mixture weight on; give a split with a dev part")
    lam, path, converged = start, [], False
    for _ in range(max_iterations):
        # posterior share of component a, in log space: exp(log λ + a - log(λ e^a + (1 - λ) e^b))
        share = torch.exp(a + math.log(lam) - mixed_log_probs(a, b, lam))
        new = float((w * share).sum() / total)
        path.append(new)
        moved = abs(new - lam)
        lam = new
        if moved < tolerance or lam in (0.0, 1.0):
            converged = True
            break
    return EMFit(lam, len(path), converged, path)


class MixtureModel(LanguageModel):
    """λ `a` + (1 - λ) `b`, token by token, through the components' protocol methods.

    Both components must share the vocabulary. `order` is None (the context is whatever the
    components see; the neural one sees the whole prefix).
    """

    order = None

    def __init__(self, a: LanguageModel, b: LanguageModel, lam: float, names: tuple[str, str] = ("a", "b")):
        if a.vocab_size != b.vocab_size:
            raise HarnessError(f"cannot mix models of {a.vocab_size} and {b.vocab_size} tokens; mix models of one run")
        if not (isinstance(lam, (int, float)) and 0.0 <= lam <= 1.0):
            raise HarnessError(f"the mixture weight λ must lie in [0, 1], got {lam!r}")
        self.a, self.b, self.lam, self.names = a, b, float(lam), names
        self.vocab_size = a.vocab_size

    def token_log_probs(self, corpus: Corpus) -> torch.Tensor:
        return mixed_log_probs(self.a.token_log_probs(corpus), self.b.token_log_probs(corpus), self.lam)

    def prefix_next_probs(self, prefix: torch.Tensor) -> torch.Tensor:
        pa = self.a.prefix_next_probs(prefix).to(torch.float64)
        pb = self.b.prefix_next_probs(prefix).to(pa.device, torch.float64)
        mixed = self.lam * pa + (1.0 - self.lam) * pb
        return (mixed / mixed.sum(dim=1, keepdim=True)).float()  # each component's float32 rows sum to 1 to rounding

    def settings(self) -> dict:
        return {"lambda": self.lam, "mixed": list(self.names)}
