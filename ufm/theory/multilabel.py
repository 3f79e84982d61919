"""Closed form of the multi-label UFM under the pick-all-label loss (docs/theory/multilabel.md, docs/theory/conventions.md PAL recipe).

Data "balanced within each multiplicity": for every m in a set 𝕄, each of the C(K, m) label sets
of size m occurs n_m times; N_m = n_m C(K, m) and N = Σ_m N_m. Above the existence threshold the
global minimiser is

    W Wᵀ = a C_K,   h_S = β_{|S|} Σ_{k∈S} w_k,   b = 0 (b − mean(b) = 0 when λ_b = 0),

with logits z_j = aβ_m(1[j∈S] − m/K), where a > 0 and β_m > 0 solve

    (A_m)  N λ_H β_m (m e^{aβ_m} + K − m) = K       (m ∈ 𝕄)
    (B)    λ_W = λ_H Σ_m n_m C(K−2, m−1) β_m².

Convention:
    The library objective (Zhu et al. 2021 normalisation, identical to Li et al.'s):
    F = (1/N) Σ_i L_PAL(W h_i + b, S_i) + (λ_W/2)‖W‖² + (λ_H/2)‖H‖² + (λ_b/2)‖b‖², the H penalty a
    sum over samples, L_PAL(z, S) = |S| logsumexp(z) − Σ_{k∈S} z_k (not divided by |S|). Arrays
    are sample-major: W [K, d], H [N, d] (the paper's h_S are the rows of H).

Why the pair (A_m), (B) gives the global minimum within this structure: with t_m = aβ_m the
reduced objective is Σ_m (N_m/N) m log(m + (K−m)e^{−t_m}) + (K−1)√(λ_Wλ_H) √(Σ_m n_m C(K−2,m−1) t_m²)
after minimising over a, a convex problem in t, so the stationary point is its unique minimiser
and t = 0 (the zero solution) is optimal exactly when λ_Wλ_H ≥ Σ_m n_m C(K−2, m−1)/N².

References:
    Li, Li, Wang, Qu, "Neural collapse in multi-label learning with pick-all-label loss",
    arXiv 2310.15903 / ICML 2024 (structure, paraphrased in docs/theory/multilabel.md). The scalar system,
    F*, ρ_m and the threshold are derived in docs/theory/multilabel.md.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from typing import Mapping, Sequence

import numpy as np

from ufm.labels import _check_counts, balanced_counts, canonical_label_sets
from ufm.theory._prediction import NoClosedForm, Prediction
from ufm.theory.frames import centering, factor_from_gram
from ufm.theory.scalar import bisect_decreasing

# Metrics of ufm.metrics.multilabel that vanish at every exact non-zero minimiser.
_ZERO_METRICS_SETS = ("nc2_W", "nc1_sets")
_ZERO_METRICS_SINGLE = ("nc1_single", "nc3_single")


def pal_sizes(K: int, counts_by_size: Mapping[int, int]) -> tuple[dict[int, int], int]:
    """({m: N_m}, N) with N_m = n_m C(K, m) samples of multiplicity m and N = Σ_m N_m."""
    counts = _check_counts(K, counts_by_size)
    N_m = {m: n * math.comb(K, m) for m, n in counts.items()}
    return N_m, sum(N_m.values())


def pal_threshold(K: int, counts_by_size: Mapping[int, int]) -> float:
    """Critical product Σ_m n_m C(K−2, m−1)/N²: a non-zero minimiser exists iff λ_Wλ_H is below it.

    It is also ‖∇_Z loss(0)‖_op², the squared operator norm of the logit gradient at the origin, so
    the origin is a strict saddle exactly below it (docs/theory/multilabel.md, docs/theory/ce-family.md). For 𝕄 = {1} it is
    1/(K²n), i.e. Kτ < 1 of §3.

    Examples:
        >>> abs(pal_threshold(4, {1: 5}) - 1 / (16 * 5)) < 1e-18
        True
    """
    counts = _check_counts(K, counts_by_size)
    _, N = pal_sizes(K, counts)
    return sum(n * math.comb(K - 2, m - 1) for m, n in counts.items()) / N ** 2


def pal_beta(a: float, m: int, K: int, N: int, lambda_H: float) -> float:
    """Root β_m(a) of (A_m) N λ_H β (m e^{aβ} + K − m) = K, to machine precision (docs/theory/conventions.md).

    The left side increases in β and reaches ≥ K at β = 1/(Nλ_H), so the root is bracketed in
    (0, 1/(Nλ_H)]. The equation is bisected in the overflow-free form
    log(Nλ_Hβ) + logaddexp(log m + aβ, log(K − m)) − log K = 0.
    """
    hi = 1.0 / (N * lambda_H)
    if a == 0.0:
        return hi
    log_m, log_rest, log_K = math.log(m), (math.log(K - m) if m < K else -math.inf), math.log(K)

    def minus_g(beta):  # decreasing in β
        if beta <= 0.0:
            return math.inf
        return -(math.log(N * lambda_H * beta) + np.logaddexp(log_m + a * beta, log_rest) - log_K)

    return bisect_decreasing(minus_g, 0.0, 0.0, hi)


def pal_solve(K: int, counts_by_size: Mapping[int, int], lambda_W: float,
              lambda_H: float) -> tuple[float, dict[int, float]]:
    """Solve (A_m), (B) by nested bisection (docs/theory/conventions.md, PAL system).

    Returns:
        (a, {m: β_m}). In the zero regime (λ_Wλ_H ≥ threshold) a = 0 and β_m = 1/(Nλ_H), the
        a → 0⁺ limit of the roots of (A_m); W = H = 0 there.

    Examples:
        >>> a, beta = pal_solve(4, {1: 5}, 5e-3, 5e-3)   # 𝕄 = {1}: CE with margin aβ
        >>> tau = (5 * 5e-3 * 5e-3) ** 0.5
        >>> abs(a * beta[1] - math.log(1 / tau - 3)) < 1e-12
        True
    """
    counts = _check_counts(K, counts_by_size)
    if not (lambda_W > 0 and lambda_H > 0):
        raise ValueError(f"lambda_W and lambda_H must be > 0, got {lambda_W!r}, {lambda_H!r}")
    _, N = pal_sizes(K, counts)
    weights = {m: n * math.comb(K - 2, m - 1) for m, n in counts.items()}

    def betas(a):
        return {m: pal_beta(a, m, K, N, lambda_H) for m in counts}

    def rhs(a):  # λ_H Σ_m n_m C(K−2, m−1) β_m(a)², decreasing in a
        return lambda_H * sum(w * b * b for (m, w), b in zip(weights.items(), betas(a).values()))

    if lambda_W * lambda_H >= pal_threshold(K, counts):
        return 0.0, betas(0.0)
    a_hi = 1.0
    while rhs(a_hi) >= lambda_W:
        a_hi *= 2.0
        if a_hi > 1e300:
            raise ArithmeticError("no upper bracket for a in the PAL system")
    a = bisect_decreasing(rhs, lambda_W, 0.0, a_hi)
    return a, betas(a)


def pal_value(K: int, counts_by_size: Mapping[int, int], lambda_W: float, lambda_H: float,
              a: float, betas: Mapping[int, float]) -> float:
    """F at the PAL structure with scales (a, β):
    Σ_m (N_m/N) m log(m + (K−m)e^{−aβ_m}) + (λ_W/2)a(K−1) + (λ_H/2)Σ_m N_m aβ_m² m(K−m)/K.

    At a = 0 this is the zero-solution value Σ_m (N_m/N) m log K.
    """
    N_m, N = pal_sizes(K, counts_by_size)
    fit = sum(N_m[m] / N * m * math.log(m + (K - m) * math.exp(-a * betas[m])) for m in N_m)
    pen = 0.5 * lambda_W * a * (K - 1) + 0.5 * lambda_H * sum(
        N_m[m] * a * betas[m] ** 2 * m * (K - m) / K for m in N_m)
    return fit + pen


def pal_rho(betas: Mapping[int, float]) -> dict[int, float]:
    """Tag-wise scaling factors ρ_m = m β_m/β_1 (needs 1 ∈ 𝕄): h_S = ρ_m · mean_{k∈S} h_{{k}}."""
    if 1 not in betas:
        raise ValueError("ρ_m = m β_m/β_1 needs single-label sets (1 in the multiplicities)")
    return {m: m * b / betas[1] for m, b in betas.items()}


def pal_ufm(K: int, counts_by_size: Mapping[int, int], d: int, lambda_W: float, lambda_H: float,
            lambda_b: float = 0.0, bias: bool = True,
            label_sets: Sequence[Sequence[int]] | None = None) -> Prediction:
    """Closed-form global minimiser of the multi-label PAL UFM (docs/theory/multilabel.md).

    Args:
        K: number of classes.
        counts_by_size: {m: n_m}, every label set of size m occurs n_m times.
        d: feature dimension; needs d ≥ K−1 (the simplex ETF). the structure was verified for d ∈ {K, K+1};
            d = K−1 agrees with L-BFGS solves to ~1e-11 on Grams (tests/test_multilabel.py).
        lambda_W, lambda_H: weight decays > 0; lambda_b: bias decay ≥ 0; bias: whether there is b.
        label_sets: the samples' label sets in problem order (any order of the balanced data);
            default :func:`canonical_label_sets`. Per-sample quantities follow this order.

    Returns:
        A Prediction with value, norm_W_sq, norm_H_sq, gram_W, gram_W_spectrum, W_means_single
        (W M1ᵀ = aβ_1 C_K), gram_means_single, logits_centred [N, K], feature_norms_sq [N],
        h_norm_sq_m{m}, rho_{m} (m ≥ 2, m < K, 1 ∈ 𝕄), the metrics that vanish, and bias or
        bias_centred. ``scalars`` holds a, beta_{m}, margin_{m} = aβ_m, threshold.

    Raises:
        NoClosedForm: for d < K−1, or λ_W = 0 or λ_H = 0.

    Examples:
        >>> p = pal_ufm(4, {1: 2, 2: 1}, 4, 2e-3, 5e-3, 1e-2)
        >>> round(p["rho_2"], 5)
        1.77816
    """
    counts = _check_counts(K, counts_by_size)
    if not (lambda_W > 0 and lambda_H > 0):
        raise NoClosedForm("the PAL closed form needs lambda_W > 0 and lambda_H > 0 (with λ = 0 the "
                           "minimum is not attained)")
    if d < K - 1:
        raise NoClosedForm(f"PAL with d={d} < K-1={K - 1}: the simplex ETF cannot be built and no "
                           "theorem covers the minimiser (docs/theory/ce-family.md, docs/theory/multilabel.md)")
    if label_sets is None:
        label_sets = canonical_label_sets(K, counts)
    label_sets = tuple(tuple(sorted(int(k) for k in S)) for S in label_sets)
    if balanced_counts(K, label_sets) != counts:
        raise ValueError(f"label_sets are not the balanced data counts_by_size={counts}")
    N_m, N = pal_sizes(K, counts)
    threshold = pal_threshold(K, counts)
    a, betas = pal_solve(K, counts, lambda_W, lambda_H)
    value = pal_value(K, counts, lambda_W, lambda_H, a, betas)
    zero = a == 0.0
    C = centering(K)
    gram_W = a * C
    sizes = np.array([len(S) for S in label_sets])
    Y = np.zeros((N, K))
    for i, S in enumerate(label_sets):
        Y[i, list(S)] = 1.0
    beta_i = np.array([betas[m] for m in sizes]) * (0.0 if zero else 1.0)
    # Logits W h_i = aβ_m(1_S − m/K): already centred (their row sums vanish).
    logits = a * beta_i[:, None] * (Y - sizes[:, None] / K)
    feat_sq = a * beta_i ** 2 * sizes * (K - sizes) / K
    q = dict(value=value, norm_W_sq=a * (K - 1), norm_H_sq=float(np.sum(feat_sq)),
             gram_W=gram_W, gram_W_spectrum=np.sort(np.linalg.eigvalsh(gram_W))[::-1],
             logits_centred=logits, feature_norms_sq=feat_sq)
    for m in counts:
        q[f"h_norm_sq_m{m}"] = a * (0.0 if zero else betas[m] ** 2) * m * (K - m) / K
    notes = [f"λ_Wλ_H = {lambda_W * lambda_H:.6g} vs threshold Σ_m n_m C(K-2,m-1)/N² = {threshold:.6g}"]
    if zero:
        q.update(norm_W=0.0, norm_H=0.0)
        notes.append("zero solution: W = H = 0; at the origin b is constant whatever λ_b "
                     "(b = 0 when λ_b > 0), F* = Σ_m (N_m/N) m log K")
    else:
        q.update({name: 0.0 for name in _ZERO_METRICS_SETS})
        if 1 in counts:
            q["W_means_single"] = a * betas[1] * C
            q["gram_means_single"] = a * betas[1] ** 2 * C
            q.update({name: 0.0 for name in _ZERO_METRICS_SINGLE})
            multi = [m for m in counts if 2 <= m < K]
            for m, r in pal_rho(betas).items():
                if m in multi:
                    q[f"rho_{m}"] = r
            if multi:
                q["angle_sets"] = 0.0
        if K in counts:
            notes.append(f"the full label set (m = K = {K}) has h_S = 0: no ρ_K or angle for it")
        if 1 not in counts:
            notes.append("no single-label samples: NC1/NC3 on single-label means and ρ_m are undefined")
    if bias:
        if lambda_b > 0:
            q["bias"] = np.zeros(K)
        else:
            q["bias_centred"] = np.zeros(K)
            notes.append("mean(b) is a flat direction (λ_b = 0): b − mean(b) is compared")
    scalars = dict(a=a, threshold=threshold, lambda_product=lambda_W * lambda_H,
                   **{f"beta_{m}": b for m, b in betas.items()},
                   **{f"margin_{m}": a * b for m, b in betas.items()})
    if 1 in counts and not zero:
        scalars.update({f"rho_{m}": r for m, r in pal_rho(betas).items()})

    def build(rng):
        W = factor_from_gram(gram_W, d, rng) if not zero else np.zeros((K, d))
        H = beta_i[:, None] * (Y @ W)
        return dict(W=W, H=H, b=np.zeros(K) if bias else None)

    return Prediction(value=float(value), quantities=q, regime="zero" if zero else "collapse",
                      geometry="zero" if zero else "etf", notes=tuple(notes), params_builder=build,
                      scalars=scalars)


__all__ = ["canonical_label_sets", "balanced_counts", "pal_sizes", "pal_threshold", "pal_beta",
           "pal_solve", "pal_value", "pal_rho", "pal_ufm"]
