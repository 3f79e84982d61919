"""Neural-collapse metrics NC1-NC4 (docs/theory/metrics.md), on NumPy or JAX arrays, sample-major.

H is [N, d] features, W is [K, d] classifier rows, ``labels`` integer class labels [N]. Every metric
is 0 at the exact minimiser of the matching model and of order 1e-2 to 1e-1 after a perturbation.
Reference frames: ``"etf"`` metrics use the centred W_c = C_K W and centred means M; ``"of"``
metrics use the uncentred W and M_raw (bias-free MSE, deep MSE without bias).

Examples:
    >>> import numpy as np
    >>> from ufm.theory import simplex_etf
    >>> W = simplex_etf(4, 5); H = np.repeat(W, 3, axis=0); y = np.repeat(np.arange(4), 3)
    >>> float(nc1(H, y, 4)) < 1e-20, float(etf_distance(W @ W.T)) < 1e-12
    (True, True)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ufm._types import Array, ArrayLike, check_int, is_concrete
from ufm.labels import check_labels

_GEOMETRIES = ("etf", "of")


# Validation runs on concrete inputs only (NumPy arrays, concrete JAX arrays): under jit the
# arguments are tracers and the checks were made once, by the caller, on the real data.
def _check_array(name: str, X, ndim: int, rows: int | None = None, cols: int | None = None,
                 min_rows: int = 1):
    """``X`` as an array of ``ndim`` dimensions, finite, with the given sizes; else ValueError."""
    if X is None or isinstance(X, (str, bytes, bool)):
        raise ValueError(f"{name} must be a {ndim}-D float array, got {X!r}")
    xp = _xp(X)
    X = xp.asarray(X)
    what = "[N, d]" if ndim == 2 else "[K]"
    if X.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-D array {what}, got shape {tuple(X.shape)}")
    if X.dtype == jnp.bfloat16:
        X = X.astype(jnp.float32)
    if X.dtype.kind not in "iuf":
        raise ValueError(f"{name} must hold real numbers, got dtype {X.dtype}")
    if X.dtype.kind in "iu" or X.dtype.itemsize < 4:
        # Integer features would be summed in their own type (class means of int8 features
        # overflowed silently) and float16 overflows in a norm of values ~ 300 (a Gram's norm
        # came out inf and the ETF distance 1.0): compute in float64 (JAX: its default float).
        X = X.astype(np.float64 if xp is np else jnp.result_type(float))
    if X.shape[0] < min_rows or (ndim == 2 and X.shape[1] < 1):
        raise ValueError(f"{name} must have at least {min_rows} row(s) and one column, got shape "
                         f"{tuple(X.shape)}")
    if rows is not None and X.shape[0] != rows:
        raise ValueError(f"{name} must have {rows} {'rows' if ndim == 2 else 'entries'} (one per "
                         f"class), got shape {tuple(X.shape)}")
    if cols is not None and X.shape[-1] != cols:
        raise ValueError(f"{name} must have {cols} columns, got shape {tuple(X.shape)}")
    if is_concrete(X) and not np.all(np.isfinite(np.asarray(X))):
        raise ValueError(f"{name} has non-finite entries (NaN or inf): metrics of such arrays are "
                         "undefined")
    return X


def _check_classes(labels, num_classes, num_samples: int):
    """Labels [N] in [0, K) with every class present (a class mean needs one sample), K ≥ 2."""
    K = check_int("num_classes", num_classes, low=2)
    if isinstance(labels, jax.core.Tracer):
        return labels, K  # traced labels (under jit): the caller validated the data
    y = check_labels(labels, K)
    if y.shape[0] != num_samples:
        raise ValueError(f"labels must have one entry per row of H ({num_samples}), got {y.shape[0]}")
    missing = np.setdiff1d(np.arange(K), y)
    if missing.size:
        raise ValueError(f"labels have no sample of class {int(missing[0])} (num_classes={K}): "
                         "every class needs at least one sample")
    return y, K


def _check_gram(G):
    G = _check_array("G", G, 2, min_rows=2)
    if G.shape[0] != G.shape[1]:
        raise ValueError(f"G must be a square K x K Gram matrix with K >= 2, got shape {tuple(G.shape)}")
    return G


def _check_bias(b, K: int):
    return None if b is None else _check_array("b", b, 1, rows=K)


def _xp(*arrays):
    """NumPy for NumPy inputs (no dispatch or compilation cost), jax.numpy as soon as one input
    is a JAX array or tracer (so the metrics work under jit and grad)."""
    return jnp if any(isinstance(a, jax.Array) for a in arrays) else np


def _check_geometry(geometry: str) -> None:
    if geometry not in _GEOMETRIES:
        raise ValueError(f"geometry must be 'etf' or 'of', got {geometry!r}")


def class_means(H: ArrayLike, labels: ArrayLike, num_classes: int) -> Array:
    """Uncentred class means M_raw [K, d].

    Raises:
        ValueError: for features that are not a finite [N, d] array, labels outside [0, K) or not
            one per sample, a class without samples, or ``num_classes`` < 2.
    """
    H = _check_array("H", H, 2)
    labels, K = _check_classes(labels, num_classes, H.shape[0])
    return _class_means(H, labels, K)


def _class_means(H, labels, K):
    xp = _xp(H, labels)
    if isinstance(labels, np.ndarray):
        Y = xp.asarray(np.eye(K)[labels], dtype=H.dtype)
    else:  # traced labels (under jit): one-hot in the graph
        Y = jax.nn.one_hot(labels, K, dtype=H.dtype)
    return (Y.T @ H) / xp.sum(Y, axis=0)[:, None]


def _scatter(H, labels, num_classes):
    xp = _xp(H)
    H = _check_array("H", H, 2)
    labels, num_classes = _check_classes(labels, num_classes, H.shape[0])
    M_raw = _class_means(H, labels, num_classes)
    dev = H - M_raw[labels]
    Sw = dev.T @ dev / H.shape[0]
    M = M_raw - xp.mean(M_raw, axis=0, keepdims=True)
    Sb = M.T @ M / num_classes
    return Sw, Sb


def nc1(H: ArrayLike, labels: ArrayLike, num_classes: int, rtol: float | None = None) -> Array:
    """NC1 = trace(Sw Sb⁺)/K (Papyan 2020, Zhu 2021), Sw with 1/N, Sb of the centred means.

    ``rtol`` cuts the pseudo-inverse of Sb (rank ≤ K−1); by default max(1e-10, 100·eps), so that in
    float32 the rounding noise in Sb's null space is not inverted. When all class means coincide
    (Sb = 0) but the features vary (Sw ≠ 0) NC1 is inf (not the 0 of pinv(0) = 0); 0 when both vanish.
    """
    xp = _xp(H)
    Sw, Sb = _scatter(H, labels, num_classes)
    if rtol is None:
        rtol = max(1e-10, 100 * float(np.finfo(Sb.dtype).eps))
    value = xp.trace(Sw @ xp.linalg.pinv(Sb, rtol=rtol, hermitian=True)) / num_classes
    # all class means equal (Sb = 0) while the features vary (Sw ≠ 0): pinv(0) = 0 would report
    # perfect collapse; the value is the limit Sb → 0, inf (nc1_trace's tr(Sw)/0 likewise)
    return xp.where((xp.trace(Sb) == 0) & (xp.trace(Sw) > 0), xp.inf, value)


def nc1_trace(H: ArrayLike, labels: ArrayLike, num_classes: int) -> Array:
    """NC1 variant trace(Sw)/trace(Sb) (used for deep UFMs and Deep RFM)."""
    xp = _xp(H)
    Sw, Sb = _scatter(H, labels, num_classes)
    return xp.trace(Sw) / xp.trace(Sb)


def _unit(G):
    xp = _xp(G)
    G = xp.asarray(G)
    return G / xp.linalg.norm(G)


def etf_distance(G: ArrayLike) -> Array:
    """‖G/‖G‖ − C_K/√(K−1)‖_F: distance of a K×K Gram from the simplex ETF Gram."""
    xp = _xp(G)
    G = _check_gram(G)
    K = G.shape[0]
    E = (np.eye(K) - np.ones((K, K)) / K) / np.sqrt(K - 1.0)
    return xp.linalg.norm(_unit(G) - E)


def of_distance(G: ArrayLike) -> Array:
    """‖G/‖G‖ − I_K/√K‖_F: distance of a K×K Gram from the orthogonal-frame Gram."""
    xp = _xp(G)
    G = _check_gram(G)
    K = G.shape[0]
    return xp.linalg.norm(_unit(G) - np.eye(K) / np.sqrt(float(K)))


def frame_distance(G: ArrayLike, geometry: str) -> Array:
    """:func:`etf_distance` or :func:`of_distance` by ``geometry``."""
    _check_geometry(geometry)
    return etf_distance(G) if geometry == "etf" else of_distance(G)


def equinorm(V: ArrayLike) -> Array:
    """std_k ‖v_k‖ / mean_k ‖v_k‖ (population std) over the rows of V."""
    xp = _xp(V)
    norms = xp.linalg.norm(_check_array("V", V, 2, min_rows=2), axis=1)
    return xp.std(norms) / xp.mean(norms)


def equiangle(V: ArrayLike, geometry: str) -> Array:
    """mean_{k≠l} |cos(v_k, v_l) + 1/(K−1)| (ETF) or mean_{k≠l} |cos(v_k, v_l)| (OF)."""
    _check_geometry(geometry)
    xp = _xp(V)
    V = _check_array("V", V, 2, min_rows=2)
    K = V.shape[0]
    U = V / xp.linalg.norm(V, axis=1, keepdims=True)
    cos = U @ U.T
    target = -1.0 / (K - 1) if geometry == "etf" else 0.0
    off = ~np.eye(K, dtype=bool)
    return xp.mean(xp.abs(cos[off] - target))


def frame_pair(W: ArrayLike, H: ArrayLike, labels: ArrayLike, geometry: str):
    """(W', M') compared by NC2/NC3: (W_c, centred means) for ETF, (W, M_raw) for OF."""
    _check_geometry(geometry)
    xp = _xp(W, H)
    W, H = _check_WH(W, H)
    M_raw = class_means(H, labels, W.shape[0])
    if geometry == "of":
        return W, M_raw
    return W - xp.mean(W, axis=0, keepdims=True), M_raw - xp.mean(M_raw, axis=0, keepdims=True)


def _check_WH(W, H):
    W = _check_array("W", W, 2, min_rows=2)
    H = _check_array("H", H, 2, cols=W.shape[1])
    return W, H


def nc3_duality(W: ArrayLike, H: ArrayLike, labels: ArrayLike, geometry: str) -> Array:
    """NC3 (a), Papyan self-duality ‖W'/‖W'‖ − M'/‖M'‖‖_F (unsquared)."""
    Wp, Mp = frame_pair(W, H, labels, geometry)
    return _xp(Wp).linalg.norm(_unit(Wp) - _unit(Mp))


def nc3_zhu(W: ArrayLike, H: ArrayLike, labels: ArrayLike, geometry: str) -> Array:
    """NC3 (b), Zhu: distance of A = W' M'ᵀ from the ETF (or OF) Gram."""
    Wp, Mp = frame_pair(W, H, labels, geometry)
    return frame_distance(Wp @ Mp.T, geometry)


def nc4(H: ArrayLike, W: ArrayLike, b: ArrayLike | None, labels: ArrayLike) -> Array:
    """Fraction of samples where the classifier's argmax differs from the nearest class mean."""
    xp = _xp(H, W, b)
    W, H = _check_WH(W, H)
    b = _check_bias(b, W.shape[0])
    logits = H @ W.T + (0.0 if b is None else xp.asarray(b)[None, :])
    M_raw = class_means(H, labels, W.shape[0])
    dist = xp.sum((H[:, None, :] - M_raw[None, :, :]) ** 2, axis=-1)
    return xp.mean(xp.argmax(logits, axis=1) != xp.argmin(dist, axis=1))


def bias_relation(W: ArrayLike, H: ArrayLike, b: ArrayLike | None, labels: ArrayLike) -> Array:
    """‖W μ_G + b‖ with μ_G the mean of the class means: the output of the global mean."""
    xp = _xp(W, H, b)
    W, H = _check_WH(W, H)
    b = _check_bias(b, W.shape[0])
    mu_G = xp.mean(class_means(H, labels, W.shape[0]), axis=0)
    out = W @ mu_G
    return xp.linalg.norm(out if b is None else out + xp.asarray(b))
