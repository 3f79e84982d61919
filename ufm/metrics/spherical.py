"""Invariant quantities of the spherical UFM (docs/theory/spherical.md, docs/theory/metrics.md): the names of
:func:`ufm.theory.spherical.predict_spherical`, plus ``max_sphere_error``.

``max_sphere_error`` = max over the rows of W and H of |‖row‖ − r|: 0 on the manifold, and a
retraction keeps it at rounding level (≈ r·1e-16), hence its tolerance of 1e-14 in
:data:`TOLERANCES` (pass it to :func:`ufm.compare`).

Examples:
    >>> import jax, ufm
    >>> p = ufm.SphericalUFM(3, 2, 3, ufm.losses.CrossEntropy())
    >>> pred = ufm.theory.predict(p)
    >>> ufm.compare(p, p.params(**pred.construct(seed=0)), pred, tolerances=TOLERANCES).ok
    True
"""

from __future__ import annotations

import numpy as np

from ufm.metrics._registry import measure
from ufm.metrics.classification import (class_means, equiangle, equinorm, frame_distance,
                                        frame_pair, nc1, nc3_duality, nc3_zhu, nc4)
from ufm.problems.spherical import SphericalUFM

# Tighter than the shared defaults: the verification standard of issue 5.
TOLERANCES = {
    "value": (1e-10, "rel"),
    "gram_W": (1e-7, "rel"), "gram_means": (1e-7, "rel"), "W_means": (1e-7, "rel"),
    "max_sphere_error": (1e-14, "abs"),
}


def sphere_error(X, radius) -> float:
    """max_i |‖X[i]‖ − r| over the rows of X."""
    X = np.asarray(X)
    return float(np.max(np.abs(np.linalg.norm(X, axis=1) - float(radius))))


@measure.register(SphericalUFM)
def _measure_spherical(problem: SphericalUFM, params) -> dict:
    W, H = np.asarray(params.W), np.asarray(params.H)
    b = None if params.b is None else np.asarray(params.b)
    y, K = problem.labels, problem.num_classes
    M_raw = np.asarray(class_means(H, y, K))
    outputs = np.asarray(problem.outputs(params))
    true = outputs[np.arange(len(y)), y]
    others = (outputs.sum(axis=1) - true) / (K - 1)
    Wp, Mp = (np.asarray(a) for a in frame_pair(W, H, y, "etf"))
    q = dict(
        value=float(problem.value(params)),
        gram_W=W @ W.T, gram_means=M_raw @ M_raw.T, W_means=W @ M_raw.T,
        margin=float(np.mean(true - others)),
        nc1=float(nc1(H, y, K)),
        nc2_W=float(frame_distance(Wp @ Wp.T, "etf")),
        nc2_means=float(frame_distance(Mp @ Mp.T, "etf")),
        equinorm_W=float(equinorm(Wp)), equinorm_means=float(equinorm(Mp)),
        equiangle_W=float(equiangle(Wp, "etf")), equiangle_means=float(equiangle(Mp, "etf")),
        nc3_duality=float(nc3_duality(W, H, y, "etf")), nc3_zhu=float(nc3_zhu(W, H, y, "etf")),
        nc4=float(nc4(H, W, b, y)),
        max_sphere_error=max(sphere_error(W, problem.radius_W), sphere_error(H, problem.radius_H)),
    )
    if b is not None:
        q.update(bias=b, bias_centred=b - b.mean())
    return q
