"""Smoothed n-gram count models that never build the V^(n-1) x V table.

Three methods, all interpolating every order down to the uniform distribution over the V
tokens, so no target is ever given probability 0:

    kn      interpolated modified Kneser-Ney (Chen & Goodman 1998): three discounts per order
            (D1, D2, D3+) from that order's count-of-counts, raw counts at the highest order,
            continuation counts (distinct left extensions) below it
    wb      interpolated Witten-Bell: raw counts at every order, the weight of the lower order
            is the number of distinct next tokens of a context over its count plus that number
    interp  a linear mixture of the uniform and the add-k models of orders 1..n, the mixture
            weights (and k) tuned on dev by EM

Only observed n-grams are stored, one sorted id tensor per order: an n-gram of k tokens is a
base-V number with the oldest token most significant (the context id of harness.data.ngrams times V
plus the target): of the 27^6 = 387 M possible 6-grams of names only those that occur are
kept (61 K in names.txt's 80 % train split). Lookups are `torch.searchsorted` on those sorted
ids; fitting is `torch.unique` plus segment sums. Loops run over orders only, never over
n-grams or characters, and everything stays on the device of the training windows.

The boundary token at the start. An order-n model pads every item with n-1 boundary tokens,
and the boundary occurs in a context only as that padding (the end token is only ever a
target). Taken as ordinary tokens, the padding breaks two things Kneser-Ney relies on: a
lower-order n-gram that begins with the boundary (the bigram `.e` in a trigram model) can only
be extended on the left by more padding, so its continuation count is 1 whatever its frequency;
and `...em` and `..em` are the same event counted again at each order. The default rule,
padding="single", counts as KenLM does with a single <s>:

  - an n-gram whose first two tokens are both boundary is skipped at its order (its context is
    absent there, so the order passes P through from the order below): it is a copy of the
    n-gram with one boundary fewer, which is kept one order down;
  - an n-gram that begins with exactly one boundary token is the start of a name, and has no
    left extension: it keeps its raw count at every order (KenLM: n-grams beginning with <s>);
  - every other n-gram below the highest order takes its continuation count.

So the start of `emma` in an order-6 model is predicted from `.e` (raw) then `e` (continuation),
exactly as a model over `<s> e m m a </s>` would. Since the boundary token is part of the
context, each context uses one kind of count for all its targets. padding="continuation" treats
the padding as ordinary tokens (continuation counts at every lower order), which is nltk's rule.
On names.txt (REFERENCE.md's split) the two differ by about 0.001 nats at orders 4-6
(continuation the lower); plain raw counts at the start without skipping the copies do worse
(order 6: dev 1.998 against 1.975), because the same sparse counts are discounted again at
every order.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from harness.data.corpus import BOUNDARY
from harness.core.errors import HarnessError
from harness.data.ngrams import Windows
from harness.models.protocol import NGramModel

METHODS = ("kn", "wb", "interp")
# what reports call each method: in a table's smoothing cell, and (short) in a figure's legend
LABELS = {"kn": "Kneser-Ney (modified)", "wb": "Witten-Bell", "interp": "interpolated add-k"}
SHORT_LABELS = {"kn": "Kneser-Ney", "wb": "Witten-Bell", "interp": "interpolated add-k"}
# KenLM's --discount_fallback defaults: used for an order whose count-of-counts leave the
# closed-form discounts undefined or out of range (e.g. unigram continuation counts of 27 tokens)
FALLBACK_DISCOUNTS = (0.5, 1.0, 1.5)
INTERP_K_GRID = (0.0, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
INT64_MAX = 2**63 - 1


# ---------------------------------------------------------------------------------------------
# counting


@dataclass(frozen=True)
class NgramCounts:
    """The observed n-grams of one order k as sorted ids with their counts.

    ids:          (M,) int64, sorted, unique; k tokens in base V, the oldest most significant
    counts:       (M,) float64 weighted number of occurrences (raw counts)
    continuation: (M,) float64 number of distinct tokens seen before the n-gram, i.e. distinct
                  (k+1)-grams it ends; None at the model's own order, which has no longer n-grams
    """

    order: int
    ids: torch.Tensor
    counts: torch.Tensor
    continuation: torch.Tensor | None


def count_orders(train: Windows) -> list[NgramCounts]:
    """Counts of every order 1..n from the order-n training windows (index k-1 holds order k).

    The order-k n-grams are the k-token suffixes of the order-n windows, id % V^k; the
    padding makes those exactly the windows an order-k model would see, so each lower order's
    raw counts are the group sums of the order above and its continuation counts the group
    sizes (each n-gram of the order above is distinct and observed).
    """
    n, V = train.order, train.vocab_size
    if V**n > INT64_MAX:
        raise HarnessError(
            f"order-{n} n-gram ids over {V} tokens do not fit int64 (V^n = {V}^{n}); use a lower --order"
        )
    keep = train.weight > 0
    ids = train.context[keep] * V + train.target[keep]
    top, inverse = torch.unique(ids, sorted=True, return_inverse=True)
    counts = torch.zeros(top.numel(), dtype=torch.float64, device=ids.device)
    counts.index_add_(0, inverse, train.weight[keep].to(torch.float64))
    levels = [NgramCounts(n, top, counts, None)]
    for k in range(n - 1, 0, -1):
        above = levels[0]
        ids_k, inverse = torch.unique(above.ids % V**k, sorted=True, return_inverse=True)
        raw = torch.zeros(ids_k.numel(), dtype=torch.float64, device=ids.device).index_add_(0, inverse, above.counts)
        continuation = torch.bincount(inverse, minlength=ids_k.numel()).to(torch.float64)
        levels.insert(0, NgramCounts(k, ids_k, raw, continuation))
    return levels


def _contexts(ids: torch.Tensor, V: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Unique context ids (sorted) of sorted n-gram ids, and each n-gram's context index."""
    context, inverse = torch.unique_consecutive(ids // V, return_inverse=True)
    return context, inverse


def _segment_sum(values: torch.Tensor, inverse: torch.Tensor, size: int) -> torch.Tensor:
    return torch.zeros(size, dtype=values.dtype, device=values.device).index_add_(0, inverse, values)


def _find(sorted_ids: torch.Tensor, query: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(found (N,) bool, index (N,) int64) of each query id in a non-empty sorted id tensor."""
    index = torch.searchsorted(sorted_ids, query).clamp_(max=sorted_ids.numel() - 1)
    return sorted_ids[index] == query, index


# ---------------------------------------------------------------------------------------------
# one order of an interpolated model


@dataclass(frozen=True)
class Level:
    """One order k of an interpolated model: P_k(w|h) = alpha(h,w) + gamma(h) * lower(w|h').

    ngram: (M,) sorted int64 ids of observed (h, w);  alpha: (M,) float64
    context: (C,) sorted int64 ids of observed h;     gamma: (C,) float64
    An unobserved h gives P_k = lower (alpha 0, gamma 1); an unobserved (h, w) of an observed
    h gives alpha 0.
    """

    order: int
    ngram: torch.Tensor
    alpha: torch.Tensor
    context: torch.Tensor
    gamma: torch.Tensor

    def lookup(self, context: torch.Tensor, target: torch.Tensor, vocab_size: int):
        """(gamma (N,), alpha (N,)) float64 for the order-k suffixes of full order-n context ids."""
        h = context % vocab_size ** (self.order - 1)
        if self.context.numel() == 0:  # e.g. every n-gram of this order lies in the padding
            ones = torch.ones(h.shape, dtype=torch.float64, device=h.device)
            return ones, torch.zeros_like(ones)
        seen, ci = _find(self.context, h)
        gamma = torch.where(seen, self.gamma[ci], torch.ones_like(self.gamma[ci]))
        found, gi = _find(self.ngram, h * vocab_size + target)
        alpha = torch.where(found, self.alpha[gi], torch.zeros_like(self.alpha[gi]))
        return gamma, alpha


@dataclass
class SmoothedModel(NGramModel):
    """The smoothed models' side of the model protocol: score (log-probs) and next-token rows."""

    order: int
    vocab_size: int
    levels: list[Level]
    method: str = field(init=False, default="")

    def probs(self, context: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """(N,) float64 P(target | context) for order-n context ids (N,) and targets (N,)."""
        p = torch.full(context.shape, 1.0 / self.vocab_size, dtype=torch.float64, device=context.device)
        for level in self.levels:  # lowest order first: each order interpolates the one below
            gamma, alpha = level.lookup(context, target, self.vocab_size)
            p = alpha + gamma * p
        return p

    def settings(self) -> dict:
        return {"smoothing": None}  # kn and wb have no k (interp states its tuned one)

    def score(self, context: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """(N,) float64 natural-log probabilities of the targets (never -inf: nothing is zero)."""
        return self.probs(context, target).log()

    def next_token_probs(self, context: torch.Tensor) -> torch.Tensor:
        """(B, V) float32 rows, P(. | context) over all V tokens, each summing to 1 (for sampling)."""
        V = self.vocab_size
        B = context.numel()
        rows = self.probs(context.repeat_interleave(V), torch.arange(V, device=context.device).repeat(B)).view(B, V)
        return (rows / rows.sum(1, keepdim=True)).float()


# ---------------------------------------------------------------------------------------------
# interpolated modified Kneser-Ney


def modified_kn_discounts(counts: torch.Tensor) -> tuple[tuple[float, float, float], bool]:
    """(D1, D2, D3+) from count-of-counts n1..n4 (Chen & Goodman), and whether the fallback was used.

    Y = n1 / (n1 + 2 n2);  D1 = 1 - 2Y n2/n1;  D2 = 2 - 3Y n3/n2;  D3+ = 3 - 4Y n4/n3.
    When some n_i (i <= 4) is 0 the formulas are undefined, and a D_i <= 0 would leave no mass
    for the lower order: either way the order takes FALLBACK_DISCOUNTS (KenLM's defaults).
    """
    n1, n2, n3, n4 = (float((counts == i).sum()) for i in (1, 2, 3, 4))
    if min(n1, n2, n3, n4) > 0:
        Y = n1 / (n1 + 2 * n2)
        D = (1 - 2 * Y * n2 / n1, 2 - 3 * Y * n3 / n2, 3 - 4 * Y * n4 / n3)
        if min(D) > 0:
            return D, False
    return FALLBACK_DISCOUNTS, True


def _discount_of(counts: torch.Tensor, D: tuple[float, float, float]) -> torch.Tensor:
    """The discount each n-gram gives up: D1 for count 1, D2 for 2, D3+ for 3 or more, never more than its count."""
    bucket = (counts.round().clamp(1, 3) - 1).long()  # counts are integers (weights are copies)
    d = torch.tensor(D, dtype=counts.dtype, device=counts.device)[bucket]
    return torch.minimum(d, counts)


def _discounted_level(order: int, ids: torch.Tensor, counts: torch.Tensor, D, V: int) -> Level:
    """alpha = (a - D(a)) / A(h), gamma = sum_w D(a(h,w)) / A(h), with A(h) = sum_w a(h,w)."""
    context, inverse = _contexts(ids, V)
    total = _segment_sum(counts, inverse, context.numel())
    d = _discount_of(counts, D)
    alpha = (counts - d) / total[inverse]
    gamma = _segment_sum(d, inverse, context.numel()) / total
    return Level(order, ids, alpha, context, gamma)


def _per_order_discounts(discounts, n: int):
    """None, one float for every D of every order, or n triples (order 1 first); checked 0 <= D_i <= i."""
    if discounts is None:
        return [None] * n
    if isinstance(discounts, (int, float)):
        discounts = [(float(discounts),) * 3] * n
    discounts = [tuple(float(x) for x in triple) for triple in discounts]
    if len(discounts) != n or any(len(t) != 3 for t in discounts):
        raise HarnessError(f"Kneser-Ney discounts: give one float or {n} triples (D1, D2, D3+), one per order")
    for k, triple in enumerate(discounts, start=1):
        if not all(0 <= d <= i for i, d in zip((1, 2, 3), triple)):
            raise HarnessError(f"Kneser-Ney discounts of order {k} are {triple}; each D_i must lie in [0, i]")
    return discounts


PADDING_RULES = ("single", "continuation")


@dataclass
class KneserNeyModel(SmoothedModel):
    """Interpolated modified Kneser-Ney; `discounts[k-1]` is the (D1, D2, D3+) of order k.

    padding: how n-grams in the start padding are counted (module docstring): "single" (the
    default, KenLM's treatment of one <s>) or "continuation" (nltk's: padding is an ordinary token).
    """

    discounts: list[tuple[float, float, float]] = field(default_factory=list)
    fallback: list[bool] = field(default_factory=list)  # orders whose discounts are FALLBACK_DISCOUNTS
    padding: str = "single"

    def __post_init__(self):
        self.method = "kn"

    @classmethod
    def fit(cls, train: Windows, discounts=None, padding: str = "single") -> "KneserNeyModel":
        """Count the training windows and estimate each order's discounts (or take `discounts`).

        discounts: None (closed form from count-of-counts), a float (one discount everywhere,
        as nltk's), or one (D1, D2, D3+) triple per order, order 1 first.
        """
        if padding not in PADDING_RULES:
            raise HarnessError(f"unknown Kneser-Ney padding rule {padding!r}; choose one of {', '.join(PADDING_RULES)}")
        n, V = train.order, train.vocab_size
        given = _per_order_discounts(discounts, n)
        levels, used, fallback = [], [], []
        for g, D in zip(count_orders(train), given):
            k = g.order
            adjusted = g.counts if k == n else g.continuation
            ids = g.ids
            if padding == "single" and k >= 2:
                first = ids // V ** (k - 1)
                # one leading boundary: the n-gram starts the name and has no left extension
                adjusted = torch.where(first == BOUNDARY, g.counts, adjusted)
                if k >= 3:  # two or more: a copy of the same event one order down; skip it there
                    keep = (first != BOUNDARY) | (ids // V ** (k - 2) % V != BOUNDARY)
                    ids, adjusted = ids[keep], adjusted[keep]
            fell_back = False
            if D is None:
                D, fell_back = modified_kn_discounts(adjusted)
            used.append(D)
            fallback.append(fell_back)
            levels.append(_discounted_level(k, ids, adjusted, D, V))
        return cls(n, V, levels, discounts=used, fallback=fallback, padding=padding)


# ---------------------------------------------------------------------------------------------
# interpolated Witten-Bell


@dataclass
class WittenBellModel(SmoothedModel):
    """Interpolated Witten-Bell: P(w|h) = (c(h,w) + T(h) P_lower(w|h')) / (c(h) + T(h)),
    T(h) = number of distinct tokens seen after h; raw counts at every order."""

    def __post_init__(self):
        self.method = "wb"

    @classmethod
    def fit(cls, train: Windows) -> "WittenBellModel":
        V = train.vocab_size
        levels = []
        for g in count_orders(train):
            context, inverse = _contexts(g.ids, V)
            total = _segment_sum(g.counts, inverse, context.numel())
            types = torch.bincount(inverse, minlength=context.numel()).to(torch.float64)
            alpha = g.counts / (total + types)[inverse]
            levels.append(Level(g.order, g.ids, alpha, context, types / (total + types)))
        return cls(train.order, V, levels)


# ---------------------------------------------------------------------------------------------
# linear interpolation of add-k orders


@dataclass
class AddKInterpolationModel(SmoothedModel):
    """P(w|h) = weights[0] / V + sum_k weights[k] P_k(w|h_k), P_k the add-k model of order k.

    P_k(w|h) = (c(h,w) + k) / (c(h) + kV), and 1/V for a context never seen in training (also
    with k = 0, where add-k is undefined there). The uniform component keeps every target
    above zero. A Level here stores alpha = c/(c(h)+kV), gamma = kV/(c(h)+kV), so
    P_k = alpha + gamma/V.
    """

    k: float = 0.0
    weights: torch.Tensor | None = None  # (order + 1,) float64, sums to 1; index 0 is the uniform

    def __post_init__(self):
        self.method = "interp"

    def settings(self) -> dict:
        return {"smoothing": self.k}

    @classmethod
    def fit(cls, train: Windows, k: float, weights=None, counts: list[NgramCounts] | None = None) -> "AddKInterpolationModel":
        """Add-k components of orders 1..n; weights default to equal (fit_smoothed tunes them on dev with em_weights)."""
        if k < 0:
            raise HarnessError(f"smoothing k must be >= 0, got {k}")
        n, V = train.order, train.vocab_size
        levels = []
        for g in counts if counts is not None else count_orders(train):
            context, inverse = _contexts(g.ids, V)
            total = _segment_sum(g.counts, inverse, context.numel()) + k * V
            levels.append(Level(g.order, g.ids, g.counts / total[inverse], context, k * V / total))
        device = train.context.device
        if weights is None:
            weights = torch.full((n + 1,), 1.0 / (n + 1), dtype=torch.float64, device=device)
        weights = torch.as_tensor(weights, dtype=torch.float64, device=device)
        if weights.shape != (n + 1,) or (weights < 0).any() or abs(float(weights.sum()) - 1) > 1e-9:
            raise HarnessError(f"interpolation weights must be {n + 1} non-negative numbers summing to 1 (uniform, orders 1..{n})")
        return cls(n, V, levels, k=float(k), weights=weights)

    def component_probs(self, context: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """(N, n+1) float64: the uniform, then each order's add-k P_k(target | context suffix)."""
        uniform = 1.0 / self.vocab_size
        columns = [torch.full(context.shape, uniform, dtype=torch.float64, device=context.device)]
        for level in self.levels:
            gamma, alpha = level.lookup(context, target, self.vocab_size)
            columns.append(alpha + gamma * uniform)  # an unseen context has gamma 1, alpha 0
        return torch.stack(columns, 1)

    def probs(self, context: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.component_probs(context, target) @ self.weights

    def with_weights(self, weights: torch.Tensor) -> "AddKInterpolationModel":
        return AddKInterpolationModel(self.order, self.vocab_size, self.levels, k=self.k,
                                      weights=weights.to(torch.float64))


def em_weights(component_probs: torch.Tensor, weight: torch.Tensor, iterations: int = 1000,
               tol: float = 1e-9) -> tuple[torch.Tensor, int]:
    """Mixture weights that maximise the weighted held-out likelihood, by EM; (weights, steps run).

    component_probs: (N, m) float64 probability of each held-out target under each component;
    weight: (N,) float64. The EM step l_j <- sum_i w_i l_j p_ij / sum_j' l_j' p_ij' (with
    sum_i w_i = 1) is l * (P^T (w / (P l))): two matrix-vector products per step, which keeps it
    cheap on a busy CPU. The likelihood never decreases; EM stops when a step gains less than
    `tol` nats per predicted character.
    """
    P = component_probs
    lam = torch.full((P.shape[1],), 1.0 / P.shape[1], dtype=torch.float64, device=P.device)
    w = weight.to(torch.float64) / weight.sum()
    previous = -float("inf")
    for step in range(1, iterations + 1):
        mixture = P @ lam
        log_likelihood = float(w @ mixture.log())
        if log_likelihood - previous < tol:
            break
        previous = log_likelihood
        lam = lam * (P.T @ (w / mixture))
    return lam / lam.sum(), step


def _weighted_nll(probs: torch.Tensor, weight: torch.Tensor) -> float:
    return float(-(probs.log() * weight).sum() / weight.sum())


# ---------------------------------------------------------------------------------------------
# entry point


def fit_smoothed(method: str, train: Windows, dev: Windows | None,
                 k_grid=INTERP_K_GRID) -> tuple[SmoothedModel, list[dict]]:
    """Fit a smoothed model; tune on dev (never test) what the method has to tune.

    kn, wb: nothing to tune (Kneser-Ney's discounts come from count-of-counts; scaling them
            by 0.8-1.1 moved names.txt dev NLL by at most 0.001, so no scale is tuned).
    interp: for each k of `k_grid`, EM on dev for the weights of uniform + orders 1..n; the k
            with the lowest dev NLL wins (ties to the smaller k). Needs dev.
    tuning: for interp one dict per k tried ({"k", "weights", "em_iterations", "dev_nll",
            "chosen"}); [] for kn and wb.
    """
    if method == "kn":
        return KneserNeyModel.fit(train), []
    if method == "wb":
        return WittenBellModel.fit(train), []
    if method == "interp":
        if dev is None:
            raise HarnessError("--smoothing interp tunes its mixture weights on the dev split; run with a train/dev/test split")
        counts = count_orders(train)
        best, tuning = None, []
        for k in k_grid:
            model = AddKInterpolationModel.fit(train, k, counts=counts)
            components = model.component_probs(dev.context, dev.target)
            weights, steps = em_weights(components, dev.weight)
            nll = _weighted_nll(components @ weights, dev.weight)
            tuning.append({"k": float(k), "weights": [round(float(x), 6) for x in weights],
                           "em_iterations": steps, "dev_nll": nll, "chosen": False})
            if best is None or nll < best[1]:
                best = (model.with_weights(weights), nll, len(tuning) - 1)
        tuning[best[2]]["chosen"] = True
        return best[0], tuning
    raise HarnessError(f"unknown smoothing method {method!r}; choose one of {', '.join(METHODS)}")
