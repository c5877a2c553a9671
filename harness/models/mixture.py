"""A linear mixture of two language models: p(t | prefix) = λ p_a(t | prefix) + (1 - λ) p_b(t | prefix).

`run --mix` mixes the run's best count model (lowest dev NLL) with its best neural model. The two
err differently (an n-gram forgets everything past its order; a small network smooths what it saw
rarely), so a per-token mixture can beat both. λ is tuned on dev by EM (`fit_lambda_em`): for a
two-component mixture with fixed components the dev log-likelihood is concave in λ and EM climbs it
monotonically toward the maximum, but only linearly: near it each step shrinks by a constant factor,
so a step under 1e-6 may still lie far more than 1e-6 from the maximum (and on names EM ran out of
its 100 iterations). Newton's method on the same objective, kept inside a bracket, finishes the
climb to float64 precision in a few steps.

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
NEWTON_TOLERANCE = 1e-12  # the Newton finish stops when λ moves less than this
NEWTON_MAX_STEPS = 100  # a bisection halves the bracket each step, so 100 reach float64 in any case


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
    """λ tuned by EM and how it got there: λ after each EM iteration (`path`, the start not included),
    then `newton_steps` of the Newton finish; `converged`: the last step moved λ less than its tolerance."""

    lam: float
    iterations: int
    converged: bool
    path: list[float]
    newton_steps: int = 0


def newton_finish(a: torch.Tensor, b: torch.Tensor, w: torch.Tensor, lam: float, tolerance: float = NEWTON_TOLERANCE,
                  max_steps: int = NEWTON_MAX_STEPS) -> tuple[float, int, bool]:
    """The λ in [0, 1] maximising f(λ) = sum_t w_t log(λ p_a + (1 - λ) p_b), from `lam`: (λ, steps, converged).

    f is concave, so its slope g(λ) = sum_t w_t (p_a - p_b) / p_mix falls with λ: the maximum is 1 where
    g(1) >= 0, 0 where g(0) <= 0, else the root of g. Newton steps λ - g / g' (g' = -sum_t w_t ((p_a - p_b) /
    p_mix)^2) inside a bracket [lo, hi] around the root that every step narrows; a step out of it bisects
    instead. a, b: log-probabilities (float64, at least one finite per token), w: token weights."""
    def slope(at: float) -> tuple[float, float]:
        mixed = mixed_log_probs(a, b, at)
        if not torch.isfinite(mixed).all():  # a token the mixture gives probability 0: f is -inf there
            return (-math.inf if at == 1.0 else math.inf), -math.inf
        r = torch.exp(a - mixed) - torch.exp(b - mixed)  # (p_a - p_b) / p_mix, in log space
        return float((w * r).sum()), -float((w * r * r).sum())

    lam = min(max(lam, 0.0), 1.0)
    if slope(lam)[0] == 0:  # equal components, or λ already at the root: nothing moves it
        return lam, 0, True
    if slope(1.0)[0] >= 0:
        return 1.0, 0, True
    if slope(0.0)[0] <= 0:
        return 0.0, 0, True
    lo, hi = 0.0, 1.0
    for step in range(1, max_steps + 1):
        g, dg = slope(lam)
        if g == 0:
            return lam, step, True
        lo, hi = (lam, hi) if g > 0 else (lo, lam)
        new = lam - g / dg if dg < 0 else math.nan
        if not lo <= new <= hi:  # (NaN too) at the root a Newton step rounds to λ itself, on the bracket's edge
            new = 0.5 * (lo + hi)
        moved, lam = abs(new - lam), new
        if moved < tolerance:
            return lam, step, True
    return lam, max_steps, False


def fit_lambda_em(log_probs_a: torch.Tensor, log_probs_b: torch.Tensor, weight: torch.Tensor | None = None,
                  start: float = 0.5, tolerance: float = EM_TOLERANCE, max_iterations: int = EM_MAX_ITERATIONS,
                  finish: bool = True) -> EMFit:
    """The λ maximising sum_t w_t log(λ p_a(t) + (1 - λ) p_b(t)) over tokens t, by EM, then `newton_finish`.

    log_probs_a / log_probs_b: (N,) log-probabilities of the same tokens under the two components;
    weight: (N,) each token's weight (its item's copies; None = 1 each). One iteration sets λ to the
    weighted mean of the posterior λ p_a / (λ p_a + (1 - λ) p_b); it stops when λ moves less than
    `tolerance` or after `max_iterations`; with `finish` (the default) Newton's method then takes λ to
    the maximum itself. A token both components give probability 0 carries no information about λ and
    is left out; one only a component gives 0 pulls λ toward the other.
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
    if not finish or lam in (0.0, 1.0):
        return EMFit(lam, len(path), converged, path)
    lam, steps, converged = newton_finish(a, b, w, lam)
    return EMFit(lam, len(path), converged, path, steps)


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
