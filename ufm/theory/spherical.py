"""Closed form of the spherical UFM (docs/theory/spherical.md; Yaras et al., NeurIPS 2022).

Convention:
    F(W, H, b) = (1/N) Σ_i CE(W h_i / T + b, y_i) with ‖w_k‖ = r_W and ‖h_i‖ = r_H, no weight
    decay. Code layout: W [K, d] (rows are classes), H [N, d], class means M [K, d]; the paper's
    h_{k,i} = (r_h/r_w) w_k reads M = (r_H/r_W) W here. The problem depends on the radii and T
    only through the inverse temperature s = r_W r_H / T.

    Yaras et al. write CE(Wᵀh/τ) with unit columns of W ∈ ℝ^{d×K}: their τ is our T. Their
    repository's ``tau`` *multiplies* the logits, so code-tau = 1/T (and s = r_W r_H · code-tau).

References:
    Yaras, Wang, Zhu, Balzano, Qu, "Neural collapse with normalized features: a geometric
    analysis over the Riemannian manifold", NeurIPS 2022, Theorem 1 (global minimisers) and
    Theorem 2 (strict saddles). docs/theory/spherical.md and §10.3.
"""

from __future__ import annotations

import math

import numpy as np

from ufm.theory._prediction import NoClosedForm, Prediction
from ufm.theory.frames import centering, simplex_etf

_NC_ZERO = ("nc1", "nc2_W", "nc2_means", "equinorm_W", "equinorm_means", "equiangle_W",
            "equiangle_means", "nc3_duality", "nc3_zhu", "nc4", "max_sphere_error")


def _softplus(x: float) -> float:
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


def inverse_temperature(radius_W: float, radius_H: float, temperature: float) -> float:
    """s = r_W r_H / T."""
    return radius_W * radius_H / temperature


def spherical_value(K: int, s: float) -> float:
    """F* = log(1 + (K−1) exp(−sK/(K−1))), evaluated as softplus(log(K−1) − sK/(K−1)).

    Examples:
        >>> round(spherical_value(2, 0.0), 12) == round(math.log(2), 12)
        True
    """
    return _softplus(math.log(K - 1) - s * K / (K - 1))


def antipodal_value(K: int, s: float) -> float:
    """Value at the antipodal strict saddle h_{k,i} = −(r_H/r_W) w_k with W an ETF (docs/theory/
    §10.3): log(1 + (K−1) exp(sK/(K−1)))."""
    return _softplus(math.log(K - 1) + s * K / (K - 1))


def zero_eigenvalue_count(K: int, d: int) -> int:
    """Number of zero Riemannian-Hessian eigenvalues (tangent basis) at the global minimum, the
    dimension of the O(d)-orbit: d(d−1)/2 − (d−K+1)(d−K)/2 (docs/theory/spherical.md; bias-free)."""
    return d * (d - 1) // 2 - (d - K + 1) * (d - K) // 2


def predict_spherical(*, num_classes: int, num_per_class: int, dim: int, radius_W: float,
                      radius_H: float, temperature: float, bias: bool = False) -> Prediction:
    """Global minimiser of the balanced spherical CE UFM for d ≥ K−1 (docs/theory/spherical.md).

    W Wᵀ = r_W² (K/(K−1)) C_K (simplex ETF), M = (r_H/r_W) W (NC1 and self-duality), so
    M Mᵀ = r_H² (K/(K−1)) C_K and W Mᵀ = r_W r_H (K/(K−1)) C_K; the logit margin (true minus the
    mean of the others) is sK/(K−1); F* = log(1 + (K−1) exp(−sK/(K−1))). No threshold.

    With an unregularised bias [derived; verified numerically in tests/test_spherical.py], the
    minimum value is the same and b − mean(b) = 0: in the Jensen lower bound of the bias-free proof,
    CE(z, k) ≥ log(1 + (K−1) exp(mean_{j≠k}(z_j − z_k))) and the average over balanced samples of
    the bias part (Σ_j b_j − K b_k)/(K−1) is 0, so the bound does not depend on b; equality needs
    equal off-diagonal logit gaps, i.e. b ∝ 1.

    Raises:
        NoClosedForm: for d < K−1 (the ETF does not fit; the minimiser is open).

    Examples:
        >>> p = predict_spherical(num_classes=4, num_per_class=3, dim=3, radius_W=1.0,
        ...                       radius_H=1.0, temperature=0.5)
        >>> abs(p.value - math.log(1 + 3 * math.exp(-2 * 4 / 3))) < 1e-15
        True
    """
    K, n, d = int(num_classes), int(num_per_class), int(dim)
    if d < K - 1:
        raise NoClosedForm(f"spherical UFM with d={d} < K-1={K - 1}: the simplex ETF does not fit "
                           "and the minimiser is an open problem (docs/theory/spherical.md)")
    s = inverse_temperature(radius_W, radius_H, temperature)
    value = spherical_value(K, s)
    etf_gram = K / (K - 1) * centering(K)
    ratio = radius_H / radius_W
    q = dict(value=value,
             gram_W=radius_W ** 2 * etf_gram,
             gram_means=radius_H ** 2 * etf_gram,
             W_means=radius_W * radius_H * etf_gram,
             margin=s * K / (K - 1))
    q.update({name: 0.0 for name in _NC_ZERO})
    if bias:
        q["bias_centred"] = np.zeros(K)

    def build(rng):
        W = radius_W * simplex_etf(K, d, rng)
        H = np.repeat(ratio * W, n, axis=0)
        return dict(W=W, H=H, b=np.zeros(K) if bias else None)

    notes = ["s = r_W r_H / T; Yaras et al.'s code-tau multiplies the logits: code-tau = 1/T"]
    if bias:
        notes.append("unregularised bias: mean(b) is a flat direction; b − mean(b) = 0 is compared")
    return Prediction(value=float(value), quantities=q, regime="collapse", geometry="etf",
                      notes=tuple(notes), params_builder=build,
                      scalars=dict(s=s, margin=s * K / (K - 1), ratio=ratio,
                                   zero_eigenvalues=float(zero_eigenvalue_count(K, d))))
