"""Multi-label neural-collapse metrics (docs/theory/metrics.md) and ``measure`` for MultiLabelUFM.

Every function takes plain arrays (NumPy or JAX; computed in NumPy float64): features H [N, d],
classifier W [K, d] and the label sets as a multi-hot matrix Y [N, K] (or a sequence of label
sets together with ``num_classes``). At the exact minimiser of the PAL UFM (docs/theory/multilabel.md) every
metric vanishes, and ρ̂_m equals the tag-wise factor ρ_m = m β_m/β_1.

* ``nc1_single``: NC1 (§11.1) on the samples with one label.
* ``nc2_classifier``: ETF distance of W_c W_cᵀ, W_c = W − mean_k w_k.
* ``nc3_single``: ETF distance of W_c M1ᵀ, M1 the single-label means centred by their own mean.
* ``nc1_sets``: NC1 with the distinct label sets as the classes (within-set collapse).
* ``set_angles``: the angle between h̄_S and Σ_{k∈S} h̄_{k} for 2 ≤ |S| < K (direction only).
* ``rho_hat``: ρ̂_m = mean_{|S|=m} ⟨h̄_S, ā_S⟩/‖ā_S‖², ā_S = mean_{k∈S} h̄_{k}.

Sets with |S| = K are left out of the angle and the scale: at the ETF optimum both h̄_S and
Σ_k h̄_{k} vanish.

Examples:
    >>> import numpy as np
    >>> from ufm.theory import simplex_etf
    >>> W = simplex_etf(3, 3); Y = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]])
    >>> H = np.array([1.0, 1.0, 1.0, 0.8])[:, None] * (Y @ W)
    >>> m = multilabel_metrics(W, H, Y)
    >>> round(m["rho_2"], 12), m["nc1_sets"] < 1e-20, m["angle_sets"] < 1e-12
    (1.6, True, True)
"""

from __future__ import annotations

import jax
import numpy as np

from ufm._types import check_int
from ufm.labels import multi_hot, normalise_label_sets
from ufm.metrics._registry import measure
from ufm.problems.multilabel import MultiLabelUFM


def as_multi_hot(targets, num_classes: int | None = None) -> np.ndarray:
    """Multi-hot float64 matrix [N, K] from a multi-hot array or a sequence of label sets.

    Raises:
        ValueError: for a matrix that is not [N, K] with N ≥ 1 and K ≥ 2, entries outside {0, 1},
            an empty row (a sample without a label), or label sets with labels outside [0, K).
    """
    if num_classes is not None:
        check_int("num_classes", num_classes, low=2)
    if hasattr(targets, "shape") and np.ndim(targets) == 2:
        Y = np.asarray(targets)
        if Y.dtype.kind not in "biuf":
            raise ValueError(f"targets must be a multi-hot matrix of zeros and ones, got dtype {Y.dtype}")
        Y = Y.astype(np.float64)
        if num_classes is not None and Y.shape[1] != num_classes:
            raise ValueError(f"targets must have num_classes={num_classes} columns, got {Y.shape}")
        if Y.shape[0] < 1 or Y.shape[1] < 2:
            raise ValueError(f"targets must be a multi-hot matrix [N, K] with N >= 1 and K >= 2, "
                             f"got shape {Y.shape}")
        if not np.all((Y == 0) | (Y == 1)):
            raise ValueError("targets must be a multi-hot matrix of zeros and ones")
        empty = np.flatnonzero(Y.sum(axis=1) == 0)
        if empty.size:
            raise ValueError(f"targets row {int(empty[0])} is empty: every sample needs at least one label")
        return Y
    if num_classes is None:
        raise ValueError("num_classes is needed when the targets are given as label sets")
    return multi_hot(normalise_label_sets(targets, num_classes), num_classes)


def _features(H, Y: np.ndarray, name: str = "H") -> np.ndarray:
    """Finite real features [N, d] with one row per target row, as float64 (else ValueError)."""
    arr = np.asarray(H)
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if arr.ndim != 2 or arr.shape[1] < 1:
        raise ValueError(f"{name} must be a 2-D array [N, d], got shape {arr.shape}")
    if arr.shape[0] != Y.shape[0]:
        raise ValueError(f"{name} must have one row per sample of the targets ({Y.shape[0]}), got "
                         f"shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} has non-finite entries (NaN or inf): metrics of such arrays are undefined")
    return arr.astype(np.float64)


def _classifier(W, K: int | None = None, d: int | None = None) -> np.ndarray:
    """Finite real classifier rows W [K, d], K ≥ 2, as float64 (else ValueError)."""
    arr = np.asarray(W)
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"W must hold real numbers, got dtype {arr.dtype}")
    if arr.ndim != 2 or arr.shape[0] < 2 or arr.shape[1] < 1:
        raise ValueError(f"W must be a 2-D array [K, d] with K >= 2 classes, got shape {arr.shape}")
    if K is not None and arr.shape[0] != K:
        raise ValueError(f"W must have one row per class (K={K}), got shape {arr.shape}")
    if d is not None and arr.shape[1] != d:
        raise ValueError(f"W [K, d] and H [N, d] must share d={d}, got W of shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("W has non-finite entries (NaN or inf): metrics of such arrays are undefined")
    return arr.astype(np.float64)


def _targets_for(W, targets, num_classes):
    """Multi-hot targets; label sets take K from ``num_classes`` or else from the rows of W."""
    if num_classes is None and not (hasattr(targets, "shape") and np.ndim(targets) == 2):
        num_classes = np.shape(W)[0] if np.ndim(W) == 2 else None
    return as_multi_hot(targets, num_classes)


def _nc1(H: np.ndarray, ids: np.ndarray, C: int, rtol: float = 1e-10) -> float:
    """trace(Sw Sb⁺)/C with Sw over 1/N and Sb of the centred means (docs/theory/metrics.md)."""
    if C < 2:
        raise ValueError("NC1 needs at least two classes (or label sets) with samples; got one")
    counts = np.bincount(ids, minlength=C)
    M_raw = np.zeros((C, H.shape[1]))
    np.add.at(M_raw, ids, H)
    M_raw /= counts[:, None]
    dev = H - M_raw[ids]
    Sw = dev.T @ dev / H.shape[0]
    M = M_raw - M_raw.mean(axis=0, keepdims=True)
    Sb = M.T @ M / C
    return float(np.trace(Sw @ np.linalg.pinv(Sb, rtol=rtol, hermitian=True)) / C)


def _etf_distance(G: np.ndarray) -> float:
    K = G.shape[0]
    E = (np.eye(K) - np.ones((K, K)) / K) / np.sqrt(K - 1.0)
    return float(np.linalg.norm(G / np.linalg.norm(G) - E))


def single_label_means(H, targets, num_classes: int | None = None) -> np.ndarray:
    """Uncentred means [K, d] of the samples whose label set is {k}.

    Raises:
        ValueError: if some class has no single-label sample.
    """
    Y = as_multi_hot(targets, num_classes)
    H = _features(H, Y)
    single = Y.sum(axis=1) == 1
    counts = Y[single].sum(axis=0)
    if np.any(counts == 0):
        raise ValueError(f"classes {np.flatnonzero(counts == 0).tolist()} have no single-label "
                         "samples: single-label means are undefined")
    return (Y[single].T @ H[single]) / counts[:, None]


def nc1_single(H, targets, num_classes: int | None = None) -> float:
    """NC1 of the single-label samples, with their label as the class."""
    Y = as_multi_hot(targets, num_classes)
    single_label_means(H, Y)  # validates H and that every class has single-label samples
    single = Y.sum(axis=1) == 1
    return _nc1(_features(H, Y)[single], np.argmax(Y[single], axis=1), Y.shape[1])


def nc2_classifier(W) -> float:
    """ETF distance of W_c W_cᵀ (docs/theory/metrics.md) with W_c the centred classifier rows."""
    W = _classifier(W)
    Wc = W - W.mean(axis=0, keepdims=True)
    return _etf_distance(Wc @ Wc.T)


def nc3_single(W, H, targets, num_classes: int | None = None) -> float:
    """ETF distance of A = W_c M1ᵀ, M1 the single-label means centred by their own mean."""
    Y = _targets_for(W, targets, num_classes)
    M1 = single_label_means(H, Y)
    W = _classifier(W, Y.shape[1], M1.shape[1])
    Wc = W - W.mean(axis=0, keepdims=True)
    return _etf_distance(Wc @ (M1 - M1.mean(axis=0, keepdims=True)).T)


def set_index(targets, num_classes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(ids [N], sets [S, K]): each sample's index into the distinct label sets (multi-hot rows)."""
    Y = as_multi_hot(targets, num_classes)
    sets, ids = np.unique(Y, axis=0, return_inverse=True)
    return ids.reshape(-1), sets


def nc1_sets(H, targets, num_classes: int | None = None) -> float:
    """NC1 with the distinct label sets as classes: 0 under within-set collapse."""
    ids, sets = set_index(targets, num_classes)
    return _nc1(_features(H, sets[ids]), ids, len(sets))


def _set_means(H, Y):
    ids, sets = set_index(Y)
    H = _features(H, Y)
    means = np.zeros((len(sets), H.shape[1]))
    np.add.at(means, ids, H)
    return sets, means / np.bincount(ids)[:, None]


def set_angles(H, targets, num_classes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(sets [S, K], angles [S]): the angle between h̄_S and Σ_{k∈S} h̄_{k} for 2 ≤ |S| < K.

    Computed as 2·atan2(‖u − v‖, ‖u + v‖) of the unit vectors, accurate near 0 (arccos is not).
    """
    Y = as_multi_hot(targets, num_classes)
    K = Y.shape[1]
    M1 = single_label_means(H, Y)
    sets, means = _set_means(H, Y)
    keep = (sets.sum(axis=1) >= 2) & (sets.sum(axis=1) < K)
    sets, means = sets[keep], means[keep]
    sums = sets @ M1
    with np.errstate(invalid="ignore", divide="ignore"):
        u = means / np.linalg.norm(means, axis=1, keepdims=True)
        v = sums / np.linalg.norm(sums, axis=1, keepdims=True)
        angles = 2.0 * np.arctan2(np.linalg.norm(u - v, axis=1), np.linalg.norm(u + v, axis=1))
    return sets, angles


def rho_hat(H, targets, num_classes: int | None = None) -> dict[int, float]:
    """{m: ρ̂_m} for the sizes 2 ≤ m < K present: mean_{|S|=m} ⟨h̄_S, ā_S⟩/‖ā_S‖²."""
    Y = as_multi_hot(targets, num_classes)
    K = Y.shape[1]
    M1 = single_label_means(H, Y)
    sets, means = _set_means(H, Y)
    sizes = sets.sum(axis=1).astype(int)
    out = {}
    for m in sorted(set(sizes.tolist())):
        if not 2 <= m < K:
            continue
        rows = sizes == m
        abar = sets[rows] @ M1 / m
        with np.errstate(invalid="ignore", divide="ignore"):
            out[m] = float(np.mean(np.sum(means[rows] * abar, axis=1) / np.sum(abar * abar, axis=1)))
    return out


def multilabel_metrics(W, H, targets, num_classes: int | None = None) -> dict[str, float]:
    """All multi-label metrics: nc2_W, nc1_sets, and when every class has single-label samples
    nc1_single, nc3_single, angle_sets (the largest angle) and rho_{m}."""
    Y = _targets_for(W, targets, num_classes)
    W = _classifier(W, Y.shape[1], _features(H, Y).shape[1])
    out = dict(nc2_W=nc2_classifier(W), nc1_sets=nc1_sets(H, Y))
    single = Y[Y.sum(axis=1) == 1]
    if single.shape[0] and np.all(single.sum(axis=0) > 0):
        out.update(nc1_single=nc1_single(H, Y), nc3_single=nc3_single(W, H, Y))
        _, angles = set_angles(H, Y)
        if angles.size:
            out["angle_sets"] = float(np.max(angles))
        out.update({f"rho_{m}": r for m, r in rho_hat(H, Y).items()})
    return out


# Tolerances for the names above, to pass to ufm.compare (the NC1 metrics are quadratic in the
# distance from collapse, hence far below the solver's 1e-6 on Grams).
TOLERANCES = {
    "value": (1e-9, "rel"),
    "nc1_single": (1e-10, "abs"), "nc1_sets": (1e-10, "abs"),
    "nc2_W": (1e-6, "abs"), "nc3_single": (1e-6, "abs"), "angle_sets": (1e-6, "abs"),
    "logits_centred": (1e-6, "rel"), "feature_norms_sq": (1e-6, "rel"),
    "W_means_single": (1e-6, "rel"), "gram_means_single": (1e-6, "rel"),
}


@jax.jit
def _objective(problem, params):
    # compiled once per problem structure; eager evaluation would compile primitive by primitive
    return problem.value(params)


@measure.register(MultiLabelUFM)
def _measure_multilabel(problem: MultiLabelUFM, params) -> dict:
    W, H = np.asarray(params.W, dtype=np.float64), np.asarray(params.H, dtype=np.float64)
    b = None if params.b is None else np.asarray(params.b)
    Y = problem.multi_hot
    sizes = problem.set_sizes
    outputs = H @ W.T + (0.0 if b is None else b[None, :])
    feat = np.sum(H ** 2, axis=1)
    q = dict(value=float(_objective(problem, params)),
             norm_W_sq=float(np.sum(W ** 2)), norm_H_sq=float(np.sum(feat)),
             norm_W=float(np.linalg.norm(W)), norm_H=float(np.linalg.norm(H)),
             gram_W=W @ W.T, gram_W_spectrum=np.sort(np.linalg.eigvalsh(W @ W.T))[::-1],
             logits_centred=outputs - outputs.mean(axis=1, keepdims=True),
             feature_norms_sq=feat)
    for m in sorted(set(sizes.tolist())):
        q[f"h_norm_sq_m{m}"] = float(np.mean(feat[sizes == m]))
    with np.errstate(invalid="ignore", divide="ignore"):
        q.update(multilabel_metrics(W, H, Y))
    if "nc1_single" in q:
        M1 = single_label_means(H, Y)
        q.update(W_means_single=W @ M1.T, gram_means_single=M1 @ M1.T)
    if b is not None:
        q.update(bias=b, bias_centred=b - b.mean())
    return q


__all__ = ["as_multi_hot", "single_label_means", "nc1_single", "nc2_classifier", "nc3_single",
           "set_index", "nc1_sets", "set_angles", "rho_hat", "multilabel_metrics", "TOLERANCES"]
