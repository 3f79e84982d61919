"""Invariant quantities of the plain UFM (docs/theory/mse.md, ce-family.md, metrics.md), registered with ``measure``.

The error kinds of these names are the shared table ``ufm.metrics._registry.KINDS``.
"""

from __future__ import annotations

import numpy as np

from ufm.metrics._registry import measure, objective
from ufm.metrics.classification import (bias_relation, class_means, equiangle, equinorm,
                                        frame_distance, frame_pair, nc1, nc3_duality, nc3_zhu, nc4)
from ufm.problems import UFM


def _spectrum(G):
    G = np.asarray(G)
    return np.sort(np.linalg.eigvalsh((G + G.T) / 2))[::-1]


@measure.register(UFM)
def _measure_ufm(problem: UFM, params) -> dict:
    # At W = H = 0 the frame metrics are undefined: they come out NaN (not compared there).
    with np.errstate(invalid="ignore", divide="ignore"):
        return _measure_ufm_arrays(problem, params)


def _measure_ufm_arrays(problem: UFM, params) -> dict:
    W, H = np.asarray(params.W), np.asarray(params.H)
    b = None if params.b is None else np.asarray(params.b)
    y, K = problem.labels, problem.num_classes
    geometry = problem.reference_geometry
    M_raw = np.asarray(class_means(H, y, K))
    counts = np.asarray(problem.counts)
    betas = np.sqrt(float(problem.lambda_W) / (counts * float(problem.lambda_H)))
    outputs = H @ W.T + (0.0 if b is None else b[None, :])
    true = outputs[np.arange(len(y)), y]
    others = (outputs.sum(axis=1) - true) / (K - 1)
    Wp, Mp = (np.asarray(a) for a in frame_pair(W, H, y, geometry))
    q = dict(
        value=float(objective(problem, params)),
        norm_W_sq=float(np.sum(W ** 2)), norm_H_sq=float(np.sum(H ** 2)),
        norm_W=float(np.linalg.norm(W)), norm_H=float(np.linalg.norm(H)),
        gram_W=W @ W.T, gram_W_spectrum=_spectrum(W @ W.T),
        gram_means=M_raw @ M_raw.T, W_means=W @ M_raw.T,
        W_means_spectrum=_spectrum(W @ M_raw.T),
        means_minus_beta_W=float(np.linalg.norm(M_raw - betas[:, None] * W) / max(np.linalg.norm(W), 1e-300)),
        margin=float(np.mean(true - others)),
        nc1=float(nc1(H, y, K)),
        nc2_W=float(frame_distance(Wp @ Wp.T, geometry)),
        nc2_means=float(frame_distance(Mp @ Mp.T, geometry)),
        equinorm_W=float(equinorm(Wp)), equinorm_means=float(equinorm(Mp)),
        equiangle_W=float(equiangle(Wp, geometry)), equiangle_means=float(equiangle(Mp, geometry)),
        nc3_duality=float(nc3_duality(W, H, y, geometry)), nc3_zhu=float(nc3_zhu(W, H, y, geometry)),
        nc4=float(nc4(H, W, b, y)),
        bias_relation=float(bias_relation(W, H, b, y)),
    )
    if b is not None:
        q.update(bias=b, bias_centred=b - b.mean())
    return q
