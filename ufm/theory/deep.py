"""Closed forms for deep UFMs: deep linear MSE, the extended (two-layer ReLU) UFM, the ReLU DUFM
and the deep CE DNC candidate (THEORY.md §4, §5, §9, §10.4).

Convention:
    The library objective: F = mean_i ℓ(W_L σ(⋯σ(W_1 h_i)) + b, y_i) + (λ_H/2)‖H_1‖²
    + Σ_l (λ_l/2)‖W_l‖², the H_1 penalty a sum over samples. Súkeník et al., Dang et al., Garrod &
    Keating and Tirer & Bruna use the same normalisation (THEORY.md §0). Code layout is
    sample-major: the class means of layer l are M_l [K, d_l] (the paper's H̄_lᵀ), W_l is
    [d_{l+1}, d_l] in both layouts, and every K×K Gram below is a class-space matrix
    (``M_l @ M_l.T``, ``W_L @ W_L.T``, ``W_L @ M_L.T``).

    With L weight matrices, τ_L = (n λ_H Π λ_l)^{1/(L+1)}, κ = K τ_L and p = 2/(L+1). Each singular
    value of the class-mean output solves the scalar problem
    ψ(σ) = (1 − σ)²/2 + ((L+1)/2) κ σ^p, whose global minimiser σ* is found by the bracketing of
    THEORY.md §9; θ = (κ/K) σ*^p sets every scale (λ_l‖W_l‖² = λ_H‖H_1‖² = rθ).

Which problems have a prediction (``predict_deep``):
    * identity, MSE, bias-free (any counts) or free bias (balanced), widths ≥ the output rank;
    * ReLU, MSE, bias-free, balanced, with K = 2 (any L; Súkeník et al. 2023) or L = 2 (any K;
      the extended UFM, derived); L = 1 has no activation and is the linear case;
    * identity, CE, bias-free, balanced, L ≤ 2 (the DNC candidate; the best value found at L = 2).
    Everything else raises :class:`NoClosedForm` naming why. In particular, where collapse is
    known *not* to be optimal (ReLU with K ≥ 3 and L ≥ 3, deep CE with L ≥ 3), ``predict`` refuses
    rather than report the collapsed value as the optimum; :func:`collapsed_configuration`
    returns that value and structure explicitly, with the regime
    ``"collapsed configuration, not necessarily global"``.

References:
    Tirer & Bruna, "Extended unconstrained features model for exploring deep neural collapse",
    ICML 2022. Dang et al., "Neural collapse in deep linear networks", ICML 2023. Súkeník, Mondelli
    & Lampert, "Deep neural collapse is provably optimal for the deep unconstrained features
    model", NeurIPS 2023; "Neural collapse versus low-rank bias", 2024. Garrod & Keating, "The
    persistence of neural collapse despite low-rank bias", 2024.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ufm.theory._prediction import NoClosedForm, Prediction
from ufm.theory.frames import centering, random_orthonormal
from ufm.theory.scalar import argmin_zero_or_root, bisect_decreasing

NOT_GLOBAL = "collapsed configuration, not necessarily global"

# ---------------------------------------------------------------------------------------------
# The deep-linear scalar problem ψ (THEORY.md §4.1, §9)
# ---------------------------------------------------------------------------------------------


def _check_depth(L) -> int:
    if isinstance(L, bool) or not isinstance(L, (int, np.integer)) or L < 1:
        raise ValueError(f"depth L must be an integer >= 1, got {L!r}")
    return int(L)


def tau_L(n: float, lambda_H: float, lambdas: Sequence[float]) -> float:
    """τ_L = (n λ_H Π_l λ_l)^{1/(L+1)} (THEORY.md §0); τ_1 = τ of the plain UFM."""
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
    """h(σ) = σ^{1−p}(1 − σ): ψ'(σ) = σ^{p−1}(κ − h(σ)) (THEORY.md §9)."""
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
    """Global minimiser σ* of ψ on [0, ∞) by the bracketing of THEORY.md §9 (0 or the larger root).

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
    problem (THEORY.md §10.4; R = K bias-free, K−1 with a free bias). Without a nonzero local
    minimum only f_0 = R/(2K) remains.
    """
    R = K - 1 if bias else K
    s = sigma_local(kappa, L)
    if math.isnan(s):
        return np.array([R / (2 * K)])
    return np.array([(r * psi(s, kappa, L) + (R - r) / 2) / K for r in range(R + 1)])


# ---------------------------------------------------------------------------------------------
# Deep CE (THEORY.md §5)
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
    """Global minimiser m* ≥ 0 of g (THEORY.md §9 row "deep CE"); g'(m) = m^{p−1}((K−1)τ_L − h(m))
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
    """Prediction for the balanced-factor construction of THEORY.md §4.1.

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
            # First-layer caveat (THEORY.md §4.2): only DNC1 and the norms are determined.
            q["means_norms_sq_1"] = np.diag(gram(c[0] ** 2))
            continue
        q[f"gram_means_{l + 1}"] = gram(c[l] ** 2)
        q[f"W{l + 1}_spectrum"] = _spectrum(theta / lam[l], min(dims[l], dims[l + 1]))
    if bias_vec is not None:
        q["bias"] = np.asarray(bias_vec, float)
    full = r == (K - 1 if geometry == "etf" else K) and r > 0
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
            if relu and l >= 1:  # O_l = [I; 0]: every pre-activation is ≥ 0 (THEORY.md §4.1)
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
                           f"{tuple(widths)} (narrow layers are not covered by THEORY.md §4.1)")


def deep_linear_mse(counts: Sequence[int], widths: Sequence[int], lambda_H: float,
                    lambdas: Sequence[float], bias: bool = False, activation: str = "identity"
                    ) -> Prediction:
    """Deep linear MSE UFM (THEORY.md §4.1), bias-free (any counts) or with a free bias (balanced).

    Balanced: F* = ψ(σ*) bias-free (r = K output directions, an OF at every layer) and
    ((K−1)/K) ψ(σ*) with a free bias (r = K−1, b = 1/K, an ETF). Imbalanced (bias-free): class k solves
    ψ_k(s) = (s − √n_k)²/(2N) + ((L+1)/2) ρ s^p, ρ = (λ_H Π λ_l)^{1/(L+1)}, i.e. ψ with
    κ_k = N ρ n_k^{−L/(L+1)} scaled by n_k/N; a minority class collapses to 0 when ψ_k prefers
    s = 0. ``activation="relu"`` builds the nonnegative construction (same value) and leaves out
    the first-layer Gram and spectrum (THEORY.md §4.2 caveat); use it only where §4.2 says the
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
            raise NoClosedForm("deep MSE with a bias and imbalanced classes: not covered by THEORY.md §4")
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
        regime = "collapse" if s > 0 else "zero"
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
        regime = "zero" if zero.all() else ("minority collapse" if zero.any() else "collapse")
        if zero.any() and not zero.all():
            notes.append(f"classes {np.flatnonzero(zero).tolist()} collapse to 0 (minority collapse)")
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
    """Deep CE DNC candidate (THEORY.md §5): class-mean logits m*(e_k − 1/K), F = g(m*).

    Each factor has K−1 equal singular values; θ = τ_L m*^p, W_L W_Lᵀ = (θ/λ_L) C_K,
    M_1 M_1ᵀ = (θ/(nλ_H)) C_K. This is the DNC *candidate* at every depth: :func:`predict_deep`
    returns it as the optimum only for L ≤ 2.
    """
    counts = np.asarray(counts, int)
    K, L = len(counts), len(widths)
    if not np.all(counts == counts[0]):
        raise NoClosedForm("deep CE with imbalanced classes: not covered by THEORY.md §5")
    n = int(counts[0])
    t = tau_L(n, lambda_H, lambdas)
    m = ce_margin(K, t, L)
    value = ce_g(m, K, t, L)
    theta = t * m ** (2.0 / (L + 1))
    evals, evecs = np.linalg.eigh(centering(K))
    V = evecs[:, evals > 0.5]
    _require_widths(widths, K - 1 if m > 0 else 0, "deep CE")
    return _assemble(counts=counts, widths=widths, lambda_H=lambda_H, lambdas=lambdas, V=V,
                     theta=np.full(K - 1, theta), nvec=np.full(K - 1, n), bias_vec=None, value=value,
                     regime="collapse" if m > 0 else "zero", geometry="etf", activation="identity",
                     scalars=dict(tau_L=t, margin=m, theta=theta))


def collapsed_configuration(*, counts: Sequence[int], widths: Sequence[int], activation: str,
                            loss: str, lambda_H: float, lambdas: Sequence[float],
                            bias: bool = False) -> Prediction:
    """The deep-neural-collapse configuration and its value, whether or not it is the optimum.

    For MSE this is the deep-linear minimiser (with ReLU, its nonnegative construction, an upper
    bound on the ReLU optimum, THEORY.md §4.2); for CE the DNC candidate of §5. Use it where
    :func:`predict_deep` refuses because collapse is not optimal in general (ReLU with K ≥ 3 and
    L ≥ 3, deep CE with L ≥ 3): the regime is then ``"collapsed configuration, not necessarily
    global"``, and a solver may legitimately find lower values.
    """
    if loss == "ce":
        pred = deep_ce(counts, widths, lambda_H, lambdas)
    elif loss == "mse":
        if activation == "relu" and bias and len(widths) >= 2:
            raise NoClosedForm("ReLU with a bias: the deep-linear construction is not nonnegative "
                               "(its class means span 1^⊥)")
        pred = deep_linear_mse(counts, widths, lambda_H, lambdas, bias=bias, activation=activation)
    else:
        raise NoClosedForm(f"no deep closed form for loss {loss!r}")
    regime = pred.regime if pred.regime == "zero" else NOT_GLOBAL
    return Prediction(value=pred.value, quantities=pred.quantities, regime=regime,
                      geometry=pred.geometry,
                      notes=pred.notes + ("the DNC value is an upper bound; the optimum may be lower",),
                      params_builder=pred.params_builder, scalars=pred.scalars)


def predict_deep(*, counts: Sequence[int], widths: Sequence[int], activation: str, loss: str,
                 lambda_H: float, lambdas: Sequence[float], bias: bool = False,
                 lambda_b: float = 0.0) -> Prediction:
    """Dispatch the deep closed forms (numbers in, Prediction out); see the module docstring.

    Raises:
        NoClosedForm: outside the theorems, and where collapse is not optimal (the message names
            :func:`collapsed_configuration` for the DNC value).
    """
    counts = [int(c) for c in counts]
    K, L = len(counts), len(widths)
    balanced = len(set(counts)) == 1
    if lambda_H <= 0 or min(lambdas) <= 0:
        raise NoClosedForm("the deep closed forms need lambda_H > 0 and every lambda_l > 0 "
                           "(with a zero decay the minimum is not attained or not unique)")
    if bias and lambda_b != 0.0:
        raise NoClosedForm("deep UFM with a regularised bias (lambda_b > 0): only the free bias is "
                           "covered (THEORY.md §4.1)")
    relu = activation == "relu" and L >= 2
    if loss == "ce":
        if relu:
            raise NoClosedForm("deep CE with ReLU: no closed form in THEORY.md")
        if bias:
            raise NoClosedForm("deep CE with a bias: THEORY.md §5 is bias-free")
        if L >= 3:
            raise NoClosedForm(f"deep CE with L={L} >= 3: DNC is not optimal in general (low-rank "
                               "solutions are lower; Garrod & Keating 2024, THEORY.md §5). "
                               "ufm.theory.deep.collapsed_configuration gives the DNC candidate")
        pred = deep_ce(counts, widths, lambda_H, lambdas)
        if L == 2:
            pred = Prediction(value=pred.value, quantities=pred.quantities, regime=pred.regime,
                              geometry=pred.geometry, params_builder=pred.params_builder,
                              scalars=pred.scalars,
                              notes=pred.notes + ("L = 2 deep CE: F_DNC is the best value found "
                                                  "numerically (THEORY.md §5), not a theorem",))
        return pred
    if loss != "mse":
        raise NoClosedForm(f"no deep closed form for loss {loss!r}")
    if not relu:
        return deep_linear_mse(counts, widths, lambda_H, lambdas, bias=bias)
    if bias:
        raise NoClosedForm("ReLU deep UFM with a bias: not covered by THEORY.md §4.2")
    if not balanced:
        raise NoClosedForm("ReLU deep UFM with imbalanced classes: not covered by THEORY.md §4.2 "
                           "(the linear value is only an upper bound)")
    if K >= 3 and L >= 3:
        raise NoClosedForm(f"ReLU deep UFM with K={K} >= 3 and L={L} >= 3: deep neural collapse is "
                           "not optimal in general (low-rank solutions are lower; Súkeník et al. "
                           "2024, THEORY.md §4.2). ufm.theory.deep.collapsed_configuration gives "
                           "the DNC value, an upper bound")
    if min(widths) < K:
        raise NoClosedForm(f"ReLU deep UFM with widths {tuple(widths)} < K={K}: the nonnegative "
                           "construction needs d_l >= K")
    pred = deep_linear_mse(counts, widths, lambda_H, lambdas, bias=False, activation="relu")
    why = ("K = 2: Súkeník et al. 2023" if K == 2 else "extended UFM, L = 2: derived, THEORY.md §4.2")
    return Prediction(value=pred.value, quantities=pred.quantities, regime=pred.regime,
                      geometry=pred.geometry, params_builder=pred.params_builder, scalars=pred.scalars,
                      notes=pred.notes + (f"ReLU optimum = deep-linear value ({why}); the first layer "
                                          "is determined only up to its norms and NC1",))
