"""Closed forms for the plain UFM: MSE (docs/theory/mse.md) and the CE family (§3).

Convention:
    The library objective (Zhu et al. 2021): F = (1/N) Σ_i ℓ(W h_i + b, y_i) + (λ_W/2)‖W‖²
    + (λ_H/2)‖H‖² + (λ_b/2)‖b‖², the H penalty a sum over samples. Tirer & Bruna (2022) and
    Zhou et al. (2022) use the same normalisation. Arrays are sample-major: W [K, d], class means
    M [K, d], so the paper's H̄ = βWᵀ reads M = βW here.

References:
    Tirer & Bruna, "Extended unconstrained features model for exploring deep neural collapse",
    ICML 2022, §3. Zhou et al., "On the optimization landscape of neural collapse under MSE loss",
    ICML 2022. Zhu et al., "A geometric analysis of neural collapse with unconstrained features",
    NeurIPS 2021, Thm 3.1. Zhou et al., "Are all losses created equal?", NeurIPS 2022.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ufm.theory._prediction import NoClosedForm, Prediction
from ufm.theory.frames import centering, factor_from_gram
from ufm.theory.scalar import argmin_zero_or_root, bisect_decreasing, golden_max

_NC_ZERO = ("nc1", "nc2_W", "nc2_means", "equinorm_W", "equinorm_means", "equiangle_W",
            "equiangle_means", "nc3_duality", "nc3_zhu", "nc4")


def _softplus(x: float) -> float:
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def ce_hat(m: float, K: int) -> float:
    """CE of the logits m(e_k − 1/K): log(1 + (K−1)e^{−m}) (docs/theory/ce-family.md)."""
    return _softplus(math.log(K - 1) - m)


def focal_hat(m: float, K: int, gamma: float) -> float:
    """Focal loss of the logits m(e_k − 1/K): q^γ ℓ̂_CE(m), q = sigmoid(log(K−1) − m)."""
    return _sigmoid(math.log(K - 1) - m) ** gamma * ce_hat(m, K)


def ce_margin(K: int, tau: float) -> float:
    """Optimal CE margin m* = log(1/τ − (K−1)), or 0 when Kτ ≥ 1 (docs/theory/ce-family.md)."""
    return math.log(1.0 / tau - (K - 1)) if K * tau < 1 else 0.0


def ce_value(K: int, tau: float) -> float:
    """CE optimum F* = −log(1 − (K−1)τ) + (K−1)τ log((1 − (K−1)τ)/τ), or log K when Kτ ≥ 1."""
    if K * tau >= 1:
        return math.log(K)
    p = 1.0 - (K - 1) * tau
    return -math.log(p) + (K - 1) * tau * math.log(p / tau)


def focal_threshold(K: int, gamma: float) -> float:
    """g_FL = (1−1/K)^γ (1 + γ log K/(K−1)): the origin is a local minimum iff Kτ ≥ g_FL (§3, §10.1)."""
    return (1 - 1 / K) ** gamma * (1 + gamma * math.log(K) / (K - 1))


def focal_margin(K: int, tau: float, gamma: float) -> float:
    """Globally optimal focal-loss margin by the bracketing recipe of docs/theory/conventions.md."""
    c = (K - 1) * tau

    r = _focal_r(K, gamma)

    def f(m):
        return focal_hat(m, K, gamma) + c * m

    m_hi = math.log(K - 1) + 60.0
    peak = golden_max(r, 0.0, m_hi)
    if r(0.0) >= r(peak):
        peak = 0.0
    return argmin_zero_or_root(f, r, c, peak, None)


def focal_critical_c(K: int, gamma: float) -> float:
    """Global FL threshold c* on c = (K−1)τ: the minimiser is non-zero iff c < c* (docs/theory/ce-family.md, docs/theory/conventions.md).

    f_c(m) = ℓ̂_FL(m) + c m beats f_c(0) at some m > 0 iff c < S(m) = (ℓ̂_FL(0) − ℓ̂_FL(m))/m, so
    c* = sup_{m>0} S(m). S is the running mean of r = −ℓ̂_FL′ over [0, m]; with r unimodal, S peaks
    at 0⁺ (value r(0), the local test Kτ = g_FL) when r is decreasing, and otherwise where S = r,
    i.e. at the root m_s > argmax r of φ(m) = m r(m) − (ℓ̂_FL(0) − ℓ̂_FL(m)); then c* = r(m_s) (no
    cancellation in the value). At c = c* the zero and the ETF are both global minimisers.

    Examples:
        >>> K, g = 4, 2.0   # small K: r is decreasing, the local threshold is the global one
        >>> abs(K / (K - 1) * focal_critical_c(K, g) - focal_threshold(K, g)) < 1e-14
        True
        >>> K = 50   # the FL window: Kτ = 1.125 is above g_FL yet below the global threshold
        >>> focal_threshold(K, g) < 1.125 < K / (K - 1) * focal_critical_c(K, g)
        True
    """
    r = _focal_r(K, gamma)
    r0 = r(0.0)
    peak = golden_max(r, 0.0, math.log(K - 1) + 60.0)
    if r(peak) <= r0:
        return r0
    l0 = focal_hat(0.0, K, gamma)

    def phi(m):  # m (r(m) − S(m)): positive on (0, m_s), negative beyond
        return m * r(m) - (l0 - focal_hat(m, K, gamma))

    if phi(peak) <= 0.0:  # the window is narrower than rounding: S peaks at 0⁺
        return r0
    hi = max(2.0 * peak, 1.0)
    while phi(hi) > 0.0:
        hi *= 2.0
    m_s = bisect_decreasing(phi, 0.0, peak, hi)
    return max(r0, r(m_s))


def _focal_r(K: int, gamma: float):
    def r(m):  # −d/dm of q^γ ℓ̂_CE(m)
        q = _sigmoid(math.log(K - 1) - m)
        log_p = -_softplus(math.log(K - 1) - m)
        return q ** gamma * (q - gamma * (1 - q) * log_p)
    return r


def threshold_plain(*, counts: Sequence[int], dim: int, loss: str, bias: bool, lambda_b: float = 0.0,
                    alpha: float = 0.0, gamma: float = 0.0) -> float:
    """Critical decay product P* of the plain UFM: its global minimiser is non-zero iff
    P = λ_W λ_H < P* (docs/theory/mse.md, ce-family.md).

    * MSE (no bias, free bias, regularised bias), balanced: Kτ < 1, P* = 1/(K²n).
    * MSE without bias, imbalanced: the last class to vanish is the largest,
      s_k = (√n_k − N√P)_+ > 0 for some k iff P < n_max/N².
    * CE: 1/(K²n); LS_α: Kτ + α < 1, P* = (1 − α)²/(K²n); FL_γ: the global threshold
      c* = (K−1)τ of :func:`focal_critical_c` (the FL window included), P* = (c*/(K−1))²/n.

    The dimension d does not move these thresholds [derived]: below P* the origin is a strict
    saddle for every d ≥ 1 (docs/theory/ce-family.md; for FL below the local threshold); above it the zero
    solution is global for d ≥ K−1, and a smaller d only shrinks the set of attainable outputs
    Z = H Wᵀ (rank ≤ d) without changing the minimal penalty √(λ_Wλ_H)‖Z‖_* of a given Z, so zero
    stays global. Only the FL window (where the local and global thresholds differ) needs the
    ETF, hence d ≥ K−1.

    Raises:
        NoClosedForm: imbalanced classes with a bias or a CE-family loss; the FL window with
            d < K−1.

    Examples:
        >>> threshold_plain(counts=[5] * 4, dim=4, loss="ce", bias=True) == 1 / (16 * 5)
        True
        >>> threshold_plain(counts=[6, 3, 1], dim=3, loss="mse", bias=False) == 6 / 100
        True
    """
    counts = [int(c) for c in counts]
    K, N = len(counts), sum(counts)
    if loss == "mse" and not bias:
        return max(counts) / N ** 2
    if len(set(counts)) != 1:
        raise NoClosedForm(f"imbalanced classes with loss {loss!r}{' and a bias' if bias else ''}: "
                           "no threshold in docs/theory/ (minority collapse is open)")
    n = counts[0]
    if loss in ("mse", "ce"):
        return 1.0 / (K * K * n)
    if loss == "ls":
        return (1.0 - alpha) ** 2 / (K * K * n)
    if loss == "fl":
        c_star = focal_critical_c(K, gamma)
        r0 = _focal_r(K, gamma)(0.0)
        if dim < K - 1 and c_star > r0 * (1 + 1e-12):
            raise NoClosedForm(f"FL with d={dim} < K-1={K - 1} in the FL window (K={K}, γ={gamma}): the "
                               "global threshold needs the ETF, which d cannot hold (docs/theory/ce-family.md)")
        return (c_star / (K - 1)) ** 2 / n
    raise NoClosedForm(f"no plain-UFM threshold for loss {loss!r}")


def _spectrum(gram: np.ndarray) -> np.ndarray:
    return np.sort(np.linalg.eigvalsh((gram + gram.T) / 2))[::-1]


def _two_factor(*, counts, d, lambda_W, lambda_H, gram_W, bias_vec, value, regime, geometry,
                unique=True, extra=None, notes=(), nc_zero=_NC_ZERO, bias_flat=False, scalars=None):
    """Assemble a Prediction for a two-factor minimiser with M_raw[k] = β_k W[k]."""
    counts = np.asarray(counts)
    betas = np.sqrt(lambda_W / (counts * lambda_H))
    q = dict(value=value, norm_W_sq=float(np.trace(gram_W)),
             norm_H_sq=float(np.sum(counts * betas ** 2 * np.diag(gram_W))),
             gram_W_spectrum=_spectrum(gram_W))
    zero = geometry == "zero"
    if zero:
        q.update(norm_W=0.0, norm_H=0.0)
    else:
        q["means_minus_beta_W"] = 0.0
        q["W_means_spectrum"] = _spectrum(gram_W * betas[None, :])
        if unique:
            q.update(gram_W=gram_W, gram_means=betas[:, None] * gram_W * betas[None, :],
                     W_means=gram_W * betas[None, :])
        q.update({name: 0.0 for name in nc_zero})
    if bias_vec is not None:
        q["bias_centred" if bias_flat else "bias"] = bias_vec - bias_vec.mean() if bias_flat else bias_vec
    q.update(extra or {})

    def build(rng):
        W = factor_from_gram(gram_W, d, rng) if not zero else np.zeros((len(counts), d))
        M = betas[:, None] * W
        H = np.repeat(M, counts, axis=0)
        return dict(W=W, H=H, b=None if bias_vec is None else np.array(bias_vec, dtype=float))

    return Prediction(value=float(value), quantities=q, regime=regime, geometry=geometry,
                      notes=tuple(notes), params_builder=build, scalars=dict(scalars or {}))


def mse_no_bias(counts: Sequence[int], d: int, lambda_W: float, lambda_H: float) -> Prediction:
    """Bias-free MSE UFM (docs/theory/mse.md), for any per-class counts n_k and any d.

    The problem in Z = WH is (1/2N)‖Z − Y‖² + √(λ_Wλ_H)‖Z‖_* (tool T1), whose singular values are
    the soft-thresholded √n_k: s_k = (√n_k − N√(λ_Wλ_H))_+, keeping the d largest. Balanced, this
    is c = (1 − Kτ)_+, W Wᵀ = c√(nλ_H/λ_W) I_K and F* = a − a²/2 (a = Kτ) of §1.

    Examples:
        >>> p = mse_no_bias([5, 5, 5], d=3, lambda_W=1e-2, lambda_H=1e-2)
        >>> a = 3 * (5 * 1e-4) ** 0.5
        >>> abs(p.value - (a - a * a / 2)) < 1e-15
        True
    """
    counts = np.asarray(counts, dtype=int)
    K, N = len(counts), int(counts.sum())
    rho = math.sqrt(lambda_W * lambda_H)
    s_all = np.maximum(np.sqrt(counts) - N * rho, 0.0)
    order = np.argsort(-s_all, kind="stable")
    kept = np.zeros(K, bool)
    kept[order[:d]] = True
    s = np.where(kept, s_all, 0.0)
    value = float(np.sum(np.where(kept, (np.sqrt(counts) - s) ** 2 / (2 * N) + rho * s, counts / (2 * N))))
    gram_W = math.sqrt(lambda_H / lambda_W) * np.diag(s)
    positive = int(np.sum(s > 0))
    # W Wᵀ is unique unless d cuts through a group of equal positive s_k.
    s_sorted = s_all[order]
    tie = d < K and s_sorted[d - 1] > 0 and math.isclose(s_sorted[d - 1], s_sorted[d], rel_tol=1e-12)
    balanced = bool(np.all(counts == counts[0]))
    if positive == 0:
        regime, geometry = "zero", "zero"
    elif positive == K and balanced:
        regime, geometry = "collapse", "of"
    else:
        regime, geometry = ("partial-rank" if positive < K else "collapse"), "of-partial"
    nc = _NC_ZERO if geometry == "of" else ("nc1",)
    extra = {}
    if balanced and positive:
        extra["margin"] = float(s[kept][0] / math.sqrt(counts[0])) if positive == K else None
        extra = {k: v for k, v in extra.items() if v is not None}
    notes = []
    if tie:
        notes.append("d < K with equal singular values: W Wᵀ = ρ_W Π for an arbitrary rank-d "
                     "projector Π; only its spectrum is compared")
    return _two_factor(counts=counts, d=d, lambda_W=lambda_W, lambda_H=lambda_H, gram_W=gram_W,
                       bias_vec=None, value=value, regime=regime, geometry=geometry,
                       unique=not tie, extra=extra, notes=notes, nc_zero=nc if positive else (),
                       scalars=dict(tau=math.sqrt(counts[0] * lambda_W * lambda_H) if balanced else float("nan")))


def mse_free_bias(K: int, n: int, d: int, lambda_W: float, lambda_H: float) -> Prediction:
    """MSE UFM with an unregularised bias (docs/theory/mse.md, B1): a simplex ETF scaled by c = (1 − Kτ)_+.

    For d < K−1, W Wᵀ = ρ_W × (a rank-d projector inside 1^⊥), compared by its spectrum.
    """
    tau = math.sqrt(n * lambda_W * lambda_H)
    a = K * tau
    c = max(1.0 - a, 0.0)
    rho_W = c * math.sqrt(n * lambda_H / lambda_W)
    r = min(d, K - 1)
    value = (K - 1) / (2 * K) - r * c * c / (2 * K)
    C = centering(K)
    if r == K - 1:
        gram_W = rho_W * C
    else:  # one representative rank-d projector inside 1^⊥
        evals, evecs = np.linalg.eigh(C)
        U = evecs[:, evals > 0.5][:, :r]
        gram_W = rho_W * U @ U.T
    bias = np.full(K, 1.0 / K)
    zero = c == 0.0
    geometry = "zero" if zero else ("etf" if r == K - 1 else "etf-partial")
    extra = {"bias_relation": 1 / math.sqrt(K)}
    if not zero and r == K - 1:
        extra["margin"] = c
    notes = () if r == K - 1 or zero else (
        "d < K-1: W Wᵀ = ρ_W Π for an arbitrary rank-d projector Π inside 1^⊥; only its spectrum "
        "is compared",)
    return _two_factor(counts=[n] * K, d=d, lambda_W=lambda_W, lambda_H=lambda_H, gram_W=gram_W,
                       bias_vec=bias, value=value,
                       regime="zero" if zero else ("collapse" if r == K - 1 else "partial-rank"),
                       geometry=geometry, unique=r == K - 1 or zero, extra=extra, notes=notes,
                       nc_zero=_NC_ZERO if r == K - 1 else ("nc1",), scalars=dict(tau=tau, c=c))


def mse_regularised_bias(K: int, n: int, d: int, lambda_W: float, lambda_H: float,
                         lambda_b: float) -> Prediction:
    """MSE UFM with a regularised bias λ_b > 0 (docs/theory/mse.md, B2; derived), d ≥ K.

    Two regimes of the global-mean component u: u = 0 (b = 1/(K(1+λ_b))) when Kτ ≥ 1 or
    λ_b ≤ λ_b* = Kτ/(1 − Kτ); otherwise u = 1 − Kτ(1 + 1/λ_b) > 0 and b = τ/λ_b. The centred W
    and the centred means are a simplex ETF in both.
    """
    tau = math.sqrt(n * lambda_W * lambda_H)
    x = max(1.0 - K * tau, 0.0)
    if K * tau >= 1 or lambda_b <= K * tau / (1 - K * tau):
        u, b0 = 0.0, 1.0 / (K * (1 + lambda_b))
    else:
        u, b0 = 1.0 - K * tau * (1 + 1 / lambda_b), tau / lambda_b
    if d < K and not (d == K - 1 and u == 0.0):
        raise NoClosedForm(f"MSE with a regularised bias needs d >= K (or d = K-1 with no global-"
                           f"mean component); got d={d}, K={K}, u={u:.3g} (not analysed, docs/theory/mse.md)")
    C, J = centering(K), np.ones((K, K))
    gram_W = math.sqrt(n * lambda_H / lambda_W) * (x * C + u * J / K)
    value = ((K - 1) * (1 - x) ** 2 / (2 * K) + (K - 1) * tau * x
             + ((u + K * b0 - 1) ** 2 + lambda_b * K * K * b0 * b0) / (2 * K) + tau * u)
    zero = x == 0.0 and u == 0.0
    regime = "zero" if zero else "collapse"
    notes = ((f"global-mean component u = {u:.6g} > 0 (λ_b > λ_b* = {K * tau / (1 - K * tau):.6g}): "
              "b = τ/λ_b, the uncentred W Wᵀ is not an ETF (its centred part is)",) if u > 0 else ())
    extra = {"bias_relation": math.sqrt(K) * (u / K + b0)}
    if not zero:
        extra["margin"] = x
    return _two_factor(counts=[n] * K, d=d, lambda_W=lambda_W, lambda_H=lambda_H, gram_W=gram_W,
                       bias_vec=np.full(K, b0), value=value, regime=regime,
                       geometry="zero" if zero else "etf", extra=extra, notes=notes,
                       scalars=dict(tau=tau, x=x, u=u, b0=b0, lambda_b_star=K * tau / (1 - K * tau) if K * tau < 1 else math.inf))


def ce_family(K: int, n: int, d: int, lambda_W: float, lambda_H: float, lambda_b: float,
              bias: bool, loss: str, alpha: float = 0.0, gamma: float = 0.0) -> Prediction:
    """CE, label smoothing and focal loss UFM (docs/theory/ce-family.md): a simplex ETF with margin m*.

    The scalar reduction f(m) = ℓ̂(m) + (K−1)τm gives the margin; W Wᵀ = (m*/β) C_K,
    M = βW, b = 0 (b − mean(b) = 0 when λ_b = 0: mean(b) is flat). The bias-free problem has the
    same minimiser (b = 0 is optimal with a bias).

    Raises:
        NoClosedForm: for d < K−1 (the minimiser is an open problem, "softmax codes").

    Examples:
        >>> p = ce_family(4, 5, 4, 5e-3, 5e-3, 0.0, True, "ce")
        >>> tau = math.sqrt(5 * 5e-3 * 5e-3)
        >>> abs(p["margin"] - math.log(1 / tau - 3)) < 1e-15
        True
    """
    if d < K - 1:
        raise NoClosedForm(f"{loss.upper()} with d={d} < K-1={K - 1}: the ETF cannot be built and the "
                           "minimiser is an open problem (docs/theory/ce-family.md, caveats)")
    tau = math.sqrt(n * lambda_W * lambda_H)
    beta = math.sqrt(lambda_W / (n * lambda_H))
    if loss == "ce":
        m = ce_margin(K, tau)
        value = ce_value(K, tau)
    elif loss == "ls":
        tau_a = tau + alpha / K
        m = ce_margin(K, tau_a)
        value = ce_value(K, tau_a)
    elif loss == "fl":
        m = focal_margin(K, tau, gamma)
        value = focal_hat(m, K, gamma) + (K - 1) * tau * m
    else:
        raise NoClosedForm(f"no CE-family closed form for loss {loss!r}")
    gram_W = (m / beta) * centering(K)
    zero = m == 0.0
    extra = {} if zero else {"margin": m}
    b = np.zeros(K) if bias else None
    return _two_factor(counts=[n] * K, d=d, lambda_W=lambda_W, lambda_H=lambda_H, gram_W=gram_W,
                       bias_vec=b, value=value, regime="zero" if zero else "collapse",
                       geometry="zero" if zero else "etf", extra=extra,
                       bias_flat=bias and lambda_b == 0.0, scalars=dict(tau=tau, beta=beta, margin=m),
                       notes=("mean(b) is a flat direction (λ_b = 0): b − mean(b) is compared",)
                       if bias and lambda_b == 0.0 else ())


def predict_plain(*, counts: Sequence[int], dim: int, loss: str, lambda_W: float, lambda_H: float,
                  lambda_b: float, bias: bool, alpha: float = 0.0, gamma: float = 0.0) -> Prediction:
    """Dispatch the plain-UFM closed forms on loss and bias setting (numbers in, Prediction out)."""
    counts = [int(c) for c in counts]
    K = len(counts)
    balanced = len(set(counts)) == 1
    if lambda_W <= 0 or lambda_H <= 0:
        raise NoClosedForm("the closed forms need lambda_W > 0 and lambda_H > 0 (with λ = 0 the "
                           "minimum is not attained or not unique)")
    if loss == "mse" and not bias:
        return mse_no_bias(counts, dim, lambda_W, lambda_H)
    if not balanced:
        raise NoClosedForm(f"imbalanced classes with loss {loss!r}{' and a bias' if bias else ''}: "
                           "no closed form in docs/theory/ (minority collapse is open)")
    n = counts[0]
    if loss == "mse":
        if lambda_b == 0.0:
            return mse_free_bias(K, n, dim, lambda_W, lambda_H)
        return mse_regularised_bias(K, n, dim, lambda_W, lambda_H, lambda_b)
    return ce_family(K, n, dim, lambda_W, lambda_H, lambda_b, bias, loss, alpha=alpha, gamma=gamma)
