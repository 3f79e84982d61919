"""Closed forms for deep UFMs: deep linear MSE, the extended (two-layer ReLU) UFM, the ReLU DUFM
and the deep CE DNC candidate (docs/theory/deep.md, docs/theory/conventions.md).

Convention:
    The library objective: F = mean_i ℓ(W_L σ(⋯σ(W_1 h_i)) + b, y_i) + (λ_H/2)‖H_1‖²
    + Σ_l (λ_l/2)‖W_l‖², the H_1 penalty a sum over samples. Súkeník et al., Dang et al., Garrod &
    Keating and Tirer & Bruna use the same normalisation (docs/theory/conventions.md). Code layout is
    sample-major: the class means of layer l are M_l [K, d_l] (the paper's H̄_lᵀ), W_l is
    [d_{l+1}, d_l] in both layouts, and every K×K Gram below is a class-space matrix
    (``M_l @ M_l.T``, ``W_L @ W_L.T``, ``W_L @ M_L.T``).

    With L weight matrices, τ_L = (n λ_H Π λ_l)^{1/(L+1)}, κ = K τ_L and p = 2/(L+1). Each singular
    value of the class-mean output solves the scalar problem
    ψ(σ) = (1 − σ)²/2 + ((L+1)/2) κ σ^p, whose global minimiser σ* is found by the bracketing of
    docs/theory/conventions.md; θ = (κ/K) σ*^p sets every scale (λ_l‖W_l‖² = λ_H‖H_1‖² = rθ).

Which problems have a prediction (``predict_deep``):
    * identity, MSE, bias-free (any counts: Dang et al.'s general orthogonal frame when
      imbalanced) or free bias (balanced), widths ≥ the output rank;
    * ReLU, MSE, bias-free, balanced, with K = 2 (any L; Súkeník et al. 2023) or L = 2 (any K;
      the extended UFM, derived); L = 1 has no activation and is the linear case;
    * L = 1 with CE, LS or FL (balanced, d_1 ≥ K−1, with or without a bias): the CE-family UFM of
      docs/theory/ce-family.md.
    Everything else raises :class:`NoClosedForm` naming why: deep CE at L ≥ 2 (no theorem; DNC is
    not optimal at L = 2 for K ≥ 5, nor at any L ≥ 3, docs/theory/deep.md), deep LS/FL at L ≥ 2, ReLU
    with K ≥ 3 and L ≥ 3, ReLU with a bias or imbalanced classes. :func:`collapsed_configuration`
    returns the DNC value and structure (an upper bound on F*) with the note :data:`NOT_GLOBAL`.
    :func:`threshold_deep` gives the critical decay product P* = λ_H Π λ_l where a theorem does.

References:
    Tirer & Bruna, "Extended unconstrained features model for exploring deep neural collapse",
    ICML 2022. Dang et al., "Neural collapse in deep linear networks", ICML 2023. Súkeník, Mondelli
    & Lampert, "Deep neural collapse is provably optimal for the deep unconstrained features
    model", NeurIPS 2023; "Neural collapse versus low-rank bias", 2024. Garrod & Keating, "The
    persistence of neural collapse despite low-rank bias", 2024.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np

from ufm.theory import plain
from ufm.theory._prediction import COLLAPSE, PARTIAL_RANK, ZERO, NoClosedForm, Prediction
from ufm.theory.frames import centering, random_orthonormal
from ufm.theory.scalar import argmin_zero_or_root, bisect_decreasing

# ---------------------------------------------------------------------------------------------
# The deep-linear scalar problem ψ (docs/theory/deep.md, docs/theory/conventions.md)
# ---------------------------------------------------------------------------------------------


def _check_depth(L) -> int:
    if isinstance(L, bool) or not isinstance(L, (int, np.integer)) or L < 1:
        raise ValueError(f"depth L must be an integer >= 1, got {L!r}")
    return int(L)


def tau_L(n: float, lambda_H: float, lambdas: Sequence[float]) -> float:
    """τ_L = (n λ_H Π_l λ_l)^{1/(L+1)} (docs/theory/conventions.md); τ_1 = τ of the plain UFM."""
    lambdas = [float(x) for x in lambdas]
    L = len(lambdas)
    return float(np.exp((math.log(n) + math.log(lambda_H) + sum(map(math.log, lambdas))) / (L + 1)))


def kappa(K: int, n: float, lambda_H: float, lambdas: Sequence[float]) -> float:
    """κ = K τ_L, the one parameter of the balanced deep-linear MSE problem.

    Examples:
        >>> round(kappa(4, 2, 1e-2, [1e-2, 1e-2]), 6)  # 4·(2e-6)^{1/3}
        0.050397
    """
    return K * tau_L(n, lambda_H, lambdas)


def psi(sigma: float, kappa: float, L: int) -> float:
    """ψ(σ) = (1 − σ)²/2 + ((L+1)/2) κ σ^{2/(L+1)}: the balanced objective per output direction."""
    p = 2.0 / (L + 1)
    return 0.5 * (1.0 - sigma) ** 2 + 0.5 * (L + 1) * kappa * sigma ** p


def h(sigma: float, L: int) -> float:
    """h(σ) = σ^{1−p}(1 − σ): ψ'(σ) = σ^{p−1}(κ − h(σ)) (docs/theory/conventions.md)."""
    p = 2.0 / (L + 1)
    return sigma ** (1.0 - p) * (1.0 - sigma)


def sigma_peak(L: int) -> float:
    """Argmax of h on [0, 1]: σ₀ = (L − 1)/(2L)."""
    L = _check_depth(L)
    return (L - 1) / (2 * L)


def kappa_max(L: int) -> float:
    """Largest κ with a nonzero local minimum of ψ: h(σ₀) = σ₀^{(L−1)/(L+1)}(L+1)/(2L); 1 at L = 1.

    Examples:
        >>> abs(kappa_max(2) - 3 * 4 ** (-4 / 3)) < 1e-15
        True
    """
    L = _check_depth(L)
    s0 = sigma_peak(L)
    return s0 ** ((L - 1) / (L + 1)) * (L + 1) / (2 * L) if L > 1 else 1.0


def kappa_star(L: int) -> float:
    """The threshold: σ* > 0 iff κ < κ* = (1/L)((L−1)/L)^{(L−1)/(L+1)}; 1 at L = 1.

    For L ≥ 2 the transition is first order: σ* jumps from (L−1)/L to 0 at κ*.

    Examples:
        >>> abs(kappa_star(2) - 2 ** (-4 / 3)) < 1e-15
        True
    """
    L = _check_depth(L)
    return ((L - 1) / L) ** ((L - 1) / (L + 1)) / L if L > 1 else 1.0


def sigma_local(kappa: float, L: int) -> float:
    """The nonzero local minimiser of ψ (the larger root of h(σ) = κ), or NaN when none exists
    (κ ≥ κ_max; at L = 1, σ = 1 − κ for κ < 1)."""
    L = _check_depth(L)
    if kappa < 0:
        raise ValueError(f"kappa must be >= 0, got {kappa!r}")
    if L == 1:
        return 1.0 - kappa if kappa < 1 else math.nan
    s0 = sigma_peak(L)
    if h(s0, L) <= kappa:
        return math.nan
    return bisect_decreasing(lambda s: h(s, L), kappa, s0, 1.0)


def sigma_star(kappa: float, L: int) -> float:
    """Global minimiser σ* of ψ on [0, ∞) by the bracketing of docs/theory/conventions.md (0 or the larger root).

    Examples:
        >>> sigma_star(0.5, 1)
        0.5
        >>> sigma_star(0.40, 2)  # just past κ* = 0.39685: the global minimiser jumps to 0
        0.0
    """
    L = _check_depth(L)
    if kappa < 0:
        raise ValueError(f"kappa must be >= 0, got {kappa!r}")
    if L == 1:
        return max(1.0 - kappa, 0.0)
    return argmin_zero_or_root(lambda s: psi(s, kappa, L), lambda s: h(s, L), kappa,
                               sigma_peak(L), 1.0)


def polynomial_sigma(kappa: float, L: int) -> float:
    """Cross-check of :func:`sigma_local` by polynomial roots: ψ'(σ) = 0 with σ = t^{L+1} is
    t^{2L} − t^{L−1} + κ = 0 (L = 2: the quartic t⁴ − t + κ = 0). Returns σ = t^{L+1} of the largest
    positive real root t, or NaN when there is none (κ > κ_max)."""
    L = _check_depth(L)
    coeffs = np.zeros(2 * L + 1)
    coeffs[0] = 1.0  # t^{2L}
    coeffs[2 * L - (L - 1)] -= 1.0  # −t^{L−1}
    coeffs[-1] += kappa
    roots = np.roots(coeffs)
    real = roots[(np.abs(roots.imag) <= 1e-7 * np.maximum(1, np.abs(roots))) & (roots.real > 0)].real
    return float(np.max(real) ** (L + 1)) if real.size else math.nan


def quartic_sigma(kappa: float) -> float:
    """Two-layer (L = 2) check: σ = t³ for the largest positive root of t⁴ − t + κ = 0."""
    return polynomial_sigma(kappa, 2)


def partial_rank_values(kappa: float, L: int, K: int, bias: bool = False) -> np.ndarray:
    """Critical values f_r = (r ψ(σ_loc) + (R − r)/2)/K, r = 0…R, of the balanced deep-linear MSE
    problem (docs/theory/deep.md; R = K bias-free, K−1 with a free bias). Without a nonzero local
    minimum only f_0 = R/(2K) remains.
    """
    R = K - 1 if bias else K
    s = sigma_local(kappa, L)
    if math.isnan(s):
        return np.array([R / (2 * K)])
    return np.array([(r * psi(s, kappa, L) + (R - r) / 2) / K for r in range(R + 1)])


# ---------------------------------------------------------------------------------------------
# Deep CE (docs/theory/deep.md)
# ---------------------------------------------------------------------------------------------


def _softplus(x: float) -> float:
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def ce_g(m: float, K: int, tau: float, L: int) -> float:
    """g(m) = log(1 + (K−1)e^{−m}) + ((L+1)/2)(K−1) τ_L m^p: the deep CE DNC objective."""
    p = 2.0 / (L + 1)
    return _softplus(math.log(K - 1) - m) + 0.5 * (L + 1) * (K - 1) * tau * m ** p


def ce_margin(K: int, tau: float, L: int) -> float:
    """Global minimiser m* ≥ 0 of g (docs/theory/conventions.md row "deep CE"); g'(m) = m^{p−1}((K−1)τ_L − h(m))
    with h(m) = q(m) m^{1−p}, q = sigmoid(log(K−1) − m)."""
    L = _check_depth(L)
    p = 2.0 / (L + 1)
    a = math.log(K - 1)

    def hh(m):
        return _sigmoid(a - m) * m ** (1.0 - p)

    if L == 1:
        peak = 0.0
    else:  # (1 − q(m)) m = 1 − p, the left side increasing
        lo, hi = 0.0, 1.0
        while (1 - _sigmoid(a - hi)) * hi < 1 - p:
            hi *= 2.0
        peak = bisect_decreasing(lambda m: -(1 - _sigmoid(a - m)) * m, -(1 - p), lo, hi)
    return argmin_zero_or_root(lambda m: ce_g(m, K, tau, L), hh, (K - 1) * tau, peak)


# ---------------------------------------------------------------------------------------------
# Predictions
# ---------------------------------------------------------------------------------------------


def _spectrum(values, length) -> np.ndarray:
    v = np.sort(np.asarray(values, float))[::-1]
    out = np.zeros(length)
    out[:min(length, v.size)] = v[:length]
    return out


def _assemble(*, counts, widths, lambda_H, lambdas, V, theta, nvec, bias_vec, value, regime,
              geometry, activation, notes=(), scalars=None, output_offset=None) -> Prediction:
    """Prediction for the balanced-factor construction of docs/theory/deep.md.

    Directions j = 1…r are the columns of V [K, r] (class space) with scale θ_j and sample count
    n_j: M_1 = V diag(√(θ/(nλ_H))) O_1ᵀ, W_l = O_{l+1} diag(√(θ/λ_l)) O_lᵀ, W_L = V diag(√(θ/λ_L)) O_Lᵀ.
    """
    counts = np.asarray(counts, int)
    K, L = len(counts), len(widths)
    theta, nvec = np.asarray(theta, float), np.asarray(nvec, float)
    active = theta > 0
    V, theta, nvec = V[:, active], theta[active], nvec[active]
    r = int(active.sum())
    relu = activation == "relu" and L >= 2
    lam = np.asarray(lambdas, float)
    dims = tuple(widths) + (K,)

    c = [np.sqrt(theta / (nvec * lambda_H))]  # class-mean scales per direction, layer 1…L
    for l in range(L - 1):
        c.append(c[-1] * np.sqrt(theta / lam[l]))
    w_L = np.sqrt(theta / lam[-1])
    out_scale = w_L * c[-1]
    gram = lambda d: (V * d) @ V.T  # noqa: E731
    q = dict(value=float(value), norm_H1_sq=float(np.sum(nvec * c[0] ** 2)))
    if r > 0:  # λ_l‖W_l‖² = λ_H‖H_1‖² (a relative spread: undefined at the origin)
        q["balancedness"] = 0.0
    for l in range(L):
        q[f"norm_W{l + 1}_sq"] = float(np.sum(theta) / lam[l])
    q["gram_W"] = gram(w_L ** 2)
    q["W_means"] = gram(w_L * c[-1])
    offset = np.zeros((K, K)) if output_offset is None else output_offset
    q["output_means"] = gram(out_scale) + offset
    for l in range(L):
        if l == 0 and relu:
            # First-layer caveat (docs/theory/deep.md): only DNC1 and the norms are determined.
            q["means_norms_sq_1"] = np.diag(gram(c[0] ** 2))
            continue
        q[f"gram_means_{l + 1}"] = gram(c[l] ** 2)
        q[f"W{l + 1}_spectrum"] = _spectrum(theta / lam[l], min(dims[l], dims[l + 1]))
    if bias_vec is not None:
        q["bias"] = np.asarray(bias_vec, float)
    # Equal scales in every direction (balanced classes, full rank): the frames are an OF/ETF, the
    # spectra flat and the last layer self-dual. Imbalanced classes have per-class scales
    # (Dang et al.'s general orthogonal frame): only the Grams, spectra and norms above hold.
    equal = theta.size > 0 and np.allclose(theta, theta[0], rtol=1e-12) and np.allclose(nvec, nvec[0])
    full = r == (K - 1 if geometry == "etf" else K) and r > 0 and equal
    if r > 0:
        for l in range(L):
            q[f"dnc1_{l + 1}"] = 0.0
    if full:
        q["dnc2_W"] = 0.0
        q["nc3_duality"] = 0.0
        for l in range(L):
            q[f"equinorm_means_{l + 1}"] = 0.0
            if not (l == 0 and relu):
                q[f"dnc2_means_{l + 1}"] = 0.0
                q[f"dnc3_spread_{l + 1}"] = 0.0

    def build(rng):
        O = []
        for l in range(L):
            if relu and l >= 1:  # O_l = [I; 0]: every pre-activation is ≥ 0 (docs/theory/deep.md)
                O.append(np.eye(dims[l])[:, :r])
            else:
                O.append(random_orthonormal(dims[l], r, rng))
        M1 = (V * c[0]) @ O[0].T
        Ws = [(O[l + 1] * np.sqrt(theta / lam[l])) @ O[l].T for l in range(L - 1)]
        Ws.append((V * w_L) @ O[-1].T)
        H = np.repeat(M1, counts, axis=0)
        return dict(H=H, Ws=Ws, b=None if bias_vec is None else np.asarray(bias_vec, float))

    sc = dict(scalars or {})
    sc.setdefault("rank", r)
    return Prediction(value=float(value), quantities=q, regime=regime,
                      geometry=geometry if r > 0 else "zero", notes=tuple(notes),
                      params_builder=build, scalars=sc)


def _require_widths(widths, r, what):
    if r > 0 and min(widths) < r:
        raise NoClosedForm(f"{what} needs every width d_l >= {r} (the output rank); got widths="
                           f"{tuple(widths)} (narrow layers are not covered by docs/theory/deep.md)")


def deep_linear_mse(counts: Sequence[int], widths: Sequence[int], lambda_H: float,
                    lambdas: Sequence[float], bias: bool = False, activation: str = "identity"
                    ) -> Prediction:
    """Deep linear MSE UFM (docs/theory/deep.md), bias-free (any counts) or with a free bias (balanced).

    Balanced: F* = ψ(σ*) bias-free (r = K output directions, an OF at every layer) and
    ((K−1)/K) ψ(σ*) with a free bias (r = K−1, b = 1/K, an ETF). Imbalanced (bias-free): class k solves
    ψ_k(s) = (s − √n_k)²/(2N) + ((L+1)/2) ρ s^p, ρ = (λ_H Π λ_l)^{1/(L+1)}, i.e. ψ with
    κ_k = N ρ n_k^{−L/(L+1)} scaled by n_k/N; a minority class collapses to 0 when ψ_k prefers
    s = 0. ``activation="relu"`` builds the nonnegative construction (same value) and leaves out
    the first-layer Gram and spectrum (docs/theory/deep.md caveat); use it only where §4.2 says the
    linear value is the ReLU optimum.

    Examples:
        >>> p = deep_linear_mse([3, 3, 3], (4, 4), 1e-3, [1e-3, 1e-3])
        >>> k = 3 * (3e-9) ** (1 / 3)
        >>> abs(p.value - psi(p.scalars["sigma_star"], k, 2)) < 1e-15
        True
    """
    counts = np.asarray(counts, int)
    K, N, L = len(counts), int(counts.sum()), len(widths)
    p = 2.0 / (L + 1)
    rho = float(np.exp((math.log(lambda_H) + sum(math.log(x) for x in lambdas)) / (L + 1)))
    balanced = bool(np.all(counts == counts[0]))
    notes = []
    if bias:
        if not balanced:
            raise NoClosedForm("deep MSE with a bias and imbalanced classes: not covered by docs/theory/deep.md")
        n = int(counts[0])
        k = kappa(K, n, lambda_H, lambdas)
        s = sigma_star(k, L)
        value = (K - 1) / K * psi(s, k, L)
        theta = np.full(K - 1, k / K * s ** p)
        evals, evecs = np.linalg.eigh(centering(K))
        V = evecs[:, evals > 0.5]
        nvec = np.full(K - 1, n)
        bias_vec = np.full(K, 1.0 / K)
        offset = np.outer(np.ones(K), bias_vec)
        geometry = "etf"
        regime = COLLAPSE if s > 0 else ZERO
        scalars = dict(kappa=k, tau_L=k / K, sigma_star=s, theta=float(theta[0]),
                       sigma_local=sigma_local(k, L), kappa_star=kappa_star(L), kappa_max=kappa_max(L))
        _require_widths(widths, K - 1 if s > 0 else 0, "deep MSE with a free bias")
    else:
        kappas = N * rho * counts.astype(float) ** (-L / (L + 1))
        sig = np.array([sigma_star(kk, L) for kk in kappas])
        value = float(np.sum(counts / N * np.array([psi(s_, kk, L) for s_, kk in zip(sig, kappas)])))
        svals = np.sqrt(counts) * sig
        theta = rho * svals ** p
        V = np.eye(K)
        nvec = counts.astype(float)
        bias_vec, offset, geometry = None, None, "of"
        zero = sig == 0
        regime = ZERO if zero.all() else (PARTIAL_RANK if zero.any() else COLLAPSE)
        if zero.any() and not zero.all():
            notes.append(f"minority collapse: classes {np.flatnonzero(zero).tolist()} vanish (their "
                         "features and outputs are 0)")
        if not balanced:
            notes.append("imbalanced classes: a general orthogonal frame (per-class scales "
                         "s_k/√n_k), not equinorm; only Grams, spectra, norms and NC1 are predicted")
        scalars = dict(rho=rho, kappa_star=kappa_star(L), kappa_max=kappa_max(L))
        if balanced:
            scalars.update(kappa=float(kappas[0]), tau_L=float(kappas[0]) / K, sigma_star=float(sig[0]),
                           theta=float(theta[0]), sigma_local=sigma_local(float(kappas[0]), L))
        else:
            scalars.update({f"kappa_{j}": float(kk) for j, kk in enumerate(kappas)})
            scalars.update({f"sigma_{j}": float(s_) for j, s_ in enumerate(sig)})
        _require_widths(widths, int((~zero).sum()), "deep MSE")
    return _assemble(counts=counts, widths=widths, lambda_H=lambda_H, lambdas=lambdas, V=V,
                     theta=theta, nvec=nvec, bias_vec=bias_vec, value=value, regime=regime,
                     geometry=geometry, activation=activation, notes=notes, scalars=scalars,
                     output_offset=offset)


def deep_ce(counts: Sequence[int], widths: Sequence[int], lambda_H: float,
            lambdas: Sequence[float]) -> Prediction:
    """Deep CE DNC candidate (docs/theory/deep.md): class-mean logits m*(e_k − 1/K), F = g(m*).

    Each factor has K−1 equal singular values; θ = τ_L m*^p, W_L W_Lᵀ = (θ/λ_L) C_K,
    M_1 M_1ᵀ = (θ/(nλ_H)) C_K. At L = 1 this is the CE UFM minimiser (Zhu et al. 2021); at L ≥ 2
    it is only a critical point and an upper bound on F* (docs/theory/deep.md: lower points exist at
    L = 2 for K ≥ 5, and at every L ≥ 3): :func:`predict_deep` refuses there.
    """
    return _ce_family(counts, widths, lambda_H, lambdas, "ce")


def _ce_family(counts, widths, lambda_H, lambdas, loss, alpha=0.0, gamma=0.0, bias=False,
               lambda_b=0.0) -> Prediction:
    """The collapsed CE-family configuration: CE at any depth (the DNC candidate), LS and FL at
    L = 1 (docs/theory/ce-family.md through the margins of :mod:`ufm.theory.plain`)."""
    counts = np.asarray(counts, int)
    K, L = len(counts), len(widths)
    if not np.all(counts == counts[0]):
        raise NoClosedForm(f"deep {loss.upper()} with imbalanced classes: not covered by docs/theory/ce-family.md/§5")
    n = int(counts[0])
    t = tau_L(n, lambda_H, lambdas)
    if loss == "ce":
        m = ce_margin(K, t, L)
        value = ce_g(m, K, t, L)
    elif loss == "ls" and L == 1:  # CE with τ_α = τ + α/K, plus the α(K−1)m/K of ℓ̂_LS (§3)
        m = plain.ce_margin(K, t + alpha / K)
        value = plain.ce_value(K, t + alpha / K)
    elif loss == "fl" and L == 1:
        m = plain.focal_margin(K, t, gamma)
        value = plain.focal_hat(m, K, gamma) + (K - 1) * t * m
    else:
        raise NoClosedForm(f"deep {loss!r} at L={L}: no closed form")
    theta = t * m ** (2.0 / (L + 1))
    evals, evecs = np.linalg.eigh(centering(K))
    V = evecs[:, evals > 0.5]
    _require_widths(widths, K - 1 if m > 0 else 0, f"deep {loss.upper()}")
    notes, bias_vec, flat = [], None, False
    if bias:  # b = 0 is optimal (docs/theory/ce-family.md); with λ_b = 0, mean(b) is a flat direction
        bias_vec = np.zeros(K)
        flat = lambda_b == 0.0
        if flat:
            notes.append("mean(b) is a flat direction (λ_b = 0): b − mean(b) is compared")
    pred = _assemble(counts=counts, widths=widths, lambda_H=lambda_H, lambdas=lambdas, V=V,
                     theta=np.full(K - 1, theta), nvec=np.full(K - 1, n), bias_vec=bias_vec,
                     value=value, regime=COLLAPSE if m > 0 else ZERO, geometry="etf",
                     activation="identity", notes=notes, scalars=dict(tau_L=t, margin=m, theta=theta))
    if flat:
        q = dict(pred.quantities)
        q["bias_centred"] = q.pop("bias")
        pred = dataclasses.replace(pred, quantities=q)
    return pred


NOT_GLOBAL = "collapsed configuration, not necessarily global: an upper bound on F*"
CE_REFUSAL = ("no theorem covers deep CE at L >= 2; the DNC value is an upper bound: see "
              "dnc_candidate()")


def collapsed_configuration(*, counts: Sequence[int], widths: Sequence[int], activation: str,
                            loss: str, lambda_H: float, lambdas: Sequence[float],
                            bias: bool = False, lambda_b: float = 0.0, **_) -> Prediction:
    """The deep-neural-collapse configuration and its value, whether or not it is the optimum.

    For MSE this is the deep-linear minimiser (with ReLU, its nonnegative construction, an upper
    bound on the ReLU optimum, docs/theory/deep.md); for CE the DNC candidate of §5 (bias-free). Use it
    where :func:`predict_deep` refuses because no theorem says collapse is optimal (deep CE at
    L ≥ 2, ReLU with K ≥ 3 and L ≥ 3): the regime is that of the configuration, the note
    :data:`NOT_GLOBAL` says that a solver may legitimately find lower values.
    """
    if loss == "ce":
        if bias:
            raise NoClosedForm("deep CE DNC candidate with a bias: docs/theory/deep.md is bias-free")
        pred = deep_ce(counts, widths, lambda_H, lambdas)
    elif loss == "mse":
        if activation == "relu" and bias and len(widths) >= 2:
            raise NoClosedForm("ReLU with a bias: the deep-linear construction is not nonnegative "
                               "(its class means span 1^⊥)")
        if bias and lambda_b != 0.0:
            raise NoClosedForm("deep MSE with a regularised bias (lambda_b > 0): only the free bias "
                               "is covered (docs/theory/deep.md)")
        pred = deep_linear_mse(counts, widths, lambda_H, lambdas, bias=bias, activation=activation)
    else:
        raise NoClosedForm(f"no deep collapsed configuration for loss {loss!r} (MSE and CE only)")
    return dataclasses.replace(pred, notes=pred.notes + (NOT_GLOBAL,),
                               scalars={**pred.scalars, "upper_bound": 1.0})


def _refusal(*, counts, widths, activation, loss, lambda_H, lambdas, bias, lambda_b) -> str | None:
    """Why no theorem covers the problem (None when one does)."""
    K, L = len(counts), len(widths)
    balanced = len(set(counts)) == 1
    relu = activation == "relu" and L >= 2
    if lambda_H <= 0 or min(lambdas) <= 0:
        return ("the deep closed forms need lambda_H > 0 and every lambda_l > 0 (with a zero decay "
                "the minimum is not attained or not unique)")
    if loss in ("ce", "ls", "fl"):
        if L == 1:
            return None if balanced else (f"{loss.upper()} with imbalanced classes: no closed form "
                                          "in docs/theory/ (minority collapse is open)")
        if loss == "ce":
            return CE_REFUSAL + (" (and none at all with ReLU or a bias)" if relu or bias else "")
        return (f"deep {'label smoothing' if loss == 'ls' else 'focal loss'} at L={L} >= 2: no "
                "theorem (docs/theory/ce-family.md covers L = 1 only)")
    if loss != "mse":
        return f"no deep closed form for loss {loss!r}"
    if bias and lambda_b != 0.0:
        return ("deep UFM with a regularised bias (lambda_b > 0): only the free bias is covered "
                "(docs/theory/deep.md)")
    if bias and not balanced:
        return "deep MSE with a bias and imbalanced classes: not covered by docs/theory/deep.md"
    if not relu:
        return None
    if bias:
        return "ReLU deep UFM with a bias: not covered by docs/theory/deep.md"
    if not balanced:
        return ("ReLU deep UFM with imbalanced classes: not covered by docs/theory/deep.md (the linear "
                "value is only an upper bound)")
    if K >= 3 and L >= 3:
        return (f"ReLU deep UFM with K={K} >= 3 and L={L} >= 3: deep neural collapse is not optimal "
                "in general (low-rank solutions are lower; Súkeník et al. 2024, docs/theory/deep.md); "
                "the DNC value is an upper bound: see dnc_candidate()")
    if min(widths) < K:
        return (f"ReLU deep UFM with widths {tuple(widths)} < K={K}: the nonnegative construction "
                "needs d_l >= K")
    return None


def predict_deep(*, counts: Sequence[int], widths: Sequence[int], activation: str, loss: str,
                 lambda_H: float, lambdas: Sequence[float], bias: bool = False,
                 lambda_b: float = 0.0, alpha: float = 0.0, gamma: float = 0.0) -> Prediction:
    """Dispatch the deep closed forms (numbers in, Prediction out); see the module docstring.

    Raises:
        NoClosedForm: outside the theorems, naming why (deep CE at L ≥ 2: the DNC value is only an
            upper bound, :func:`collapsed_configuration`).
    """
    counts = [int(c) for c in counts]
    K, L = len(counts), len(widths)
    try:
        return _predict_deep(counts, widths, activation, loss, lambda_H, lambdas, bias, lambda_b,
                             alpha, gamma)
    except NoClosedForm as exc:
        if L == 1 and _plain_covers(counts, widths[0], loss, lambda_H, lambdas[0], bias, lambda_b,
                                    alpha, gamma):
            raise NoClosedForm(f"{exc}; at depth 1 this is the plain UFM, whose closed form covers it: "
                               f"use ufm.UFM(..., dim={widths[0]}, ...) (docs/theory/mse.md)") from None
        raise


def _plain_covers(counts, dim, loss, lambda_H, lambda_W, bias, lambda_b, alpha, gamma) -> bool:
    """Whether the plain UFM (the same objective as a depth-1 DeepUFM) has a closed form here."""
    try:
        plain.predict_plain(counts=counts, dim=dim, loss=loss, lambda_W=lambda_W, lambda_H=lambda_H,
                            lambda_b=lambda_b, bias=bias, alpha=alpha, gamma=gamma)
    except NoClosedForm:
        return False
    return True


def _predict_deep(counts, widths, activation, loss, lambda_H, lambdas, bias, lambda_b, alpha, gamma):
    K, L = len(counts), len(widths)
    why = _refusal(counts=counts, widths=widths, activation=activation, loss=loss, lambda_H=lambda_H,
                   lambdas=lambdas, bias=bias, lambda_b=lambda_b)
    if why is not None:
        raise NoClosedForm(why)
    if loss != "mse":  # L = 1: the CE-family UFM (Zhu et al. 2021; Zhou et al. 2022)
        return _ce_family(counts, widths, lambda_H, lambdas, loss, alpha=alpha, gamma=gamma,
                          bias=bias, lambda_b=lambda_b)
    if not (activation == "relu" and L >= 2):
        return deep_linear_mse(counts, widths, lambda_H, lambdas, bias=bias)
    pred = deep_linear_mse(counts, widths, lambda_H, lambdas, bias=False, activation="relu")
    src = "K = 2: Súkeník et al. 2023" if K == 2 else "extended UFM, L = 2: derived, docs/theory/deep.md"
    return dataclasses.replace(pred, notes=pred.notes + (
        f"ReLU optimum = deep-linear value ({src}); the first layer is determined only up to its "
        "norms and NC1",))


def threshold_deep(*, counts: Sequence[int], widths: Sequence[int], activation: str, loss: str,
                   lambda_H: float, lambdas: Sequence[float], bias: bool = False,
                   lambda_b: float = 0.0, alpha: float = 0.0, gamma: float = 0.0,
                   focal_threshold=None) -> float:
    """The critical decay product P* of P = λ_H Π_l λ_l: the global minimiser is non-zero iff
    P < P* (docs/theory/deep.md, docs/theory/ce-family.md).

    * Balanced deep linear MSE (bias-free or free bias), and the ReLU cases of §4.2:
      κ = K (nP)^{1/(L+1)} < κ*, i.e. P* = (κ*/K)^{L+1}/n, with κ* = 1 at L = 1 (continuous) and
      κ* = (1/L)((L−1)/L)^{(L−1)/(L+1)} for L ≥ 2 (first order).
    * Imbalanced, bias-free: class k is non-zero iff κ_k = N P^{1/(L+1)} n_k^{−L/(L+1)} < κ*; the
      last class (the largest) vanishes at P* = (κ*/N)^{L+1} n_max^L.
    * L = 1, CE: Kτ < 1, P* = 1/(K²n); LS: Kτ + α < 1, P* = ((1−α)/K)²/n (the bias changes
      neither). Focal loss: ``focal_threshold()``, the plain UFM's global threshold (the DeepUFM
      registration passes ``ufm.theory.threshold`` of the equivalent UFM).

    The width condition of the prediction is not needed: P* is where the minimiser leaves 0.

    Raises:
        NoClosedForm: where there is no theorem (deep CE/LS/FL at L ≥ 2, ReLU outside §4.2, a
            regularised bias) or no threshold.

    Examples:
        >>> p = threshold_deep(counts=[2, 2, 2], widths=(4, 4), activation="identity", loss="mse",
        ...                    lambda_H=1.0, lambdas=[1.0, 1.0])
        >>> abs(p - (kappa_star(2) / 3) ** 3 / 2) < 1e-18
        True
    """
    counts = [int(c) for c in counts]
    K, L, N = len(counts), len(widths), sum(counts)
    why = _refusal(counts=counts, widths=widths, activation=activation,
                   loss=loss, lambda_H=1.0, lambdas=[1.0] * L, bias=bias, lambda_b=lambda_b)
    if why is not None:
        raise NoClosedForm(why)
    if loss == "fl":
        if focal_threshold is None:
            raise NoClosedForm("focal loss at L = 1: pass focal_threshold (the plain UFM's global "
                               "threshold, docs/theory/ce-family.md, docs/theory/conventions.md)")
        return float(focal_threshold())
    if loss == "ce":
        return 1.0 / (K * K * counts[0])
    if loss == "ls":
        return ((1.0 - alpha) / K) ** 2 / counts[0]
    return (kappa_star(L) / N) ** (L + 1) * max(counts) ** L
