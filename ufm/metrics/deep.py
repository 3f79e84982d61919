"""Deep neural collapse (DNC) metrics, per layer (docs/theory/metrics.md), and ``measure`` for DeepUFM.

Layer l has input features H_l [N, d_l] (post-activation for l ≥ 2; H_1 is free) and weight
W_l [d_{l+1}, d_l]. Per layer:

* DNC1: NC1 of H_l (:func:`ufm.metrics.nc1`), at every layer, H_1 included;
* DNC2: the frame distance of the class-mean Gram of H_l (uncentred means and the OF for a
  bias-free MSE model, centred means and the simplex ETF with a free bias or CE), and of
  W_L W_Lᵀ;
* DNC3: the singular-value spread (σ_1 − σ_r)/σ_1 of W_l over its top r = K (OF) or K − 1 (ETF)
  singular values, and NC3(a) (self-duality) between W_L and the class means of H_L.

**Layer-1 caveat** (docs/theory/deep.md): in ReLU models the first layer is not determined by the
optimum. The class means of H_1 have equal norms but an arbitrary angle, and W_1 has unequal
singular values (K = 2 DUFM; the extended UFM has global minima with negative pre-activations
W_1 H̄_1). So for ReLU models only DNC1 and the norms (equinorm) apply to H_1; DNC2/DNC3 are
meaningful for l ≥ 2 only. In deep *linear* models every layer, the first included, is an OF/ETF.

Examples:
    >>> import numpy as np
    >>> y = np.repeat(np.arange(3), 2)
    >>> feats = [np.repeat(np.eye(3), 2, axis=0), np.repeat(2 * np.eye(3), 2, axis=0)]
    >>> m = dnc_metrics(feats, [2 * np.eye(3), np.eye(3)], y, 3, "of")
    >>> max(abs(v) for v in m.values()) < 1e-12
    True
"""

from __future__ import annotations

from typing import Sequence

import jax
import numpy as np

from ufm.metrics.classification import (class_means, equinorm, frame_distance, nc1, nc1_trace,
                                        nc3_duality)


def singular_value_spread(W, r: int) -> float:
    """(σ_1 − σ_r)/σ_1 over the top r singular values of W: 0 for r equal singular values.

    Examples:
        >>> singular_value_spread(np.diag([2.0, 2.0, 1.0]), 2), singular_value_spread(np.diag([2.0, 1.0]), 2)
        (0.0, 0.5)
    """
    s = np.linalg.svd(np.asarray(W, dtype=float), compute_uv=False)
    if s.size < r or s[0] == 0:
        return float("nan") if s.size < r else 0.0
    return float((s[0] - s[r - 1]) / s[0])


def _means_pair(H, labels, K, geometry):
    M_raw = np.asarray(class_means(H, labels, K))
    return M_raw if geometry == "of" else M_raw - M_raw.mean(axis=0)


def dnc_metrics(features: Sequence, weights: Sequence, labels, num_classes: int,
                geometry: str) -> dict:
    """DNC1-3 at every layer of a deep network's features (NumPy in, floats out).

    Args:
        features: (H_1, ..., H_L), the input [N, d_l] of every weight layer.
        weights: (W_1, ..., W_L), W_l [d_{l+1}, d_l]; W_L [K, d_L] is the classifier.
        labels: integer labels [N].
        num_classes: K.
        geometry: ``"of"`` (bias-free MSE) or ``"etf"`` (free bias, CE).

    Returns:
        ``dnc1_l`` (NC1), ``dnc1_trace_l`` (trace variant), ``dnc2_means_l`` (frame distance of
        the class-mean Gram), ``equinorm_means_l``, ``dnc3_spread_l`` (singular-value spread of
        W_l), for l = 1…L; ``dnc2_W`` (frame distance of W_L W_Lᵀ, centred for the ETF) and
        ``nc3_duality`` (W_L against the means of H_L). See the module docstring for the layer-1
        caveat of ReLU models.
    """
    K = num_classes
    y = np.asarray(labels)
    r = K if geometry == "of" else K - 1
    out = {}
    with np.errstate(invalid="ignore", divide="ignore"):  # 0/0 at the origin gives NaN, not a warning
        _layers(out, features, weights, y, K, geometry, r)
    return out


def _layers(out, features, weights, y, K, geometry, r):
    for l, (H, W) in enumerate(zip(features, weights), start=1):
        H = np.asarray(H, dtype=float)
        M = _means_pair(H, y, K, geometry)
        out[f"dnc1_{l}"] = float(nc1(H, y, K))
        out[f"dnc1_trace_{l}"] = float(nc1_trace(H, y, K))
        out[f"dnc2_means_{l}"] = float(frame_distance(M @ M.T, geometry))
        out[f"equinorm_means_{l}"] = float(equinorm(M))
        out[f"dnc3_spread_{l}"] = singular_value_spread(W, r)
    W_L = np.asarray(weights[-1], dtype=float)
    Wp = W_L if geometry == "of" else W_L - W_L.mean(axis=0)
    out["dnc2_W"] = float(frame_distance(Wp @ Wp.T, geometry))
    out["nc3_duality"] = float(nc3_duality(W_L, np.asarray(features[-1], dtype=float), y, geometry))


@jax.jit
def _forward(problem, params):
    """(value, features, outputs), compiled once per problem structure (eager evaluation would
    dispatch every primitive separately)."""
    return problem.value(params), problem.features(params), problem.outputs(params)


def _register():
    from ufm.metrics._registry import measure
    from ufm.problems.deep import DeepUFM

    @measure.register(DeepUFM)
    def _measure_deep(problem: DeepUFM, params) -> dict:
        """Invariant quantities of a DeepUFM point, keyed as in ``ufm.theory.deep`` predictions."""
        K, L = problem.num_classes, problem.depth
        y = problem.labels
        value, feats, outputs = _forward(problem, params)
        feats = [np.asarray(H) for H in feats]
        outputs = np.asarray(outputs)
        Ws = [np.asarray(W) for W in params.Ws]
        b = None if params.b is None else np.asarray(params.b)
        lam = np.broadcast_to(np.asarray(problem.lambda_W, dtype=float), (L,))
        lam_H = float(problem.lambda_H)
        q = dict(value=float(value), norm_H1_sq=float(np.sum(feats[0] ** 2)))
        penalties = [lam_H * q["norm_H1_sq"]]
        for l, W in enumerate(Ws, start=1):
            q[f"norm_W{l}_sq"] = float(np.sum(W ** 2))
            penalties.append(lam[l - 1] * q[f"norm_W{l}_sq"])
            s = np.linalg.svd(W, compute_uv=False)
            q[f"W{l}_spectrum"] = s ** 2
        pen = np.asarray(penalties)
        # Balancedness λ_l‖W_l‖² = λ_H‖H_1‖²: relative spread, 0 at every critical point.
        q["balancedness"] = float((pen.max() - pen.min()) / max(pen.mean(), 1e-300))
        means = [np.asarray(class_means(H, y, K)) for H in feats]
        for l, M in enumerate(means, start=1):
            q[f"gram_means_{l}"] = M @ M.T
            q[f"means_norms_sq_{l}"] = np.sum(M ** 2, axis=1)
        q["gram_W"] = Ws[-1] @ Ws[-1].T
        q["W_means"] = Ws[-1] @ means[-1].T
        q["output_means"] = np.asarray(class_means(outputs, y, K))
        if b is not None:
            q.update(bias=b, bias_centred=b - b.mean())
        q.update(dnc_metrics(feats, Ws, y, K, problem.reference_geometry))
        return q

    return _measure_deep


_measure_deep = _register()

__all__ = ["dnc_metrics", "singular_value_spread"]
