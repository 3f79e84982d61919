"""Deep recursive feature machines (Deep RFM) with the average gradient outer product (AGOP).

Beaglehole, Súkeník, Mondelli and Belkin ("Average gradient outer product as a mechanism for deep
neural collapse", NeurIPS 2024) build a deep network without back-propagation: each layer fits a
Laplace-kernel ridge regression to the labels, takes the AGOP of the fitted predictor, projects the
data by the AGOP's symmetric square root and applies a random-feature ReLU layer. Features collapse
with depth (NC1 falls layer by layer), driven by the AGOP projection rather than the nonlinearity.
The recipe here is the one of docs/real-networks.md (reconstructed from the authors' public code).

Layout is sample-major: data X [N, d], targets Y [N, K], kernel matrices [N_x, N_z], Jacobians
[P, K, d]. Everything that touches N×N is blocked over rows of the evaluation points (``block_size``
rows at a time, one ``lax.scan``), so memory is O(N² + block_size·N·K) (the kernel matrix of the
ridge solve) and never O(N²·d).

Examples:
    >>> import jax, jax.numpy as jnp
    >>> A = jnp.array([[1.0, 2.0], [0.0, 3.0]])
    >>> X = jax.random.normal(jax.random.key(0), (7, 2))
    >>> bool(jnp.allclose(agop(lambda x: A @ x, X, block_size=3), A.T @ A))   # f(x) = Ax: AᵀA
    True

    Deep RFM itself (a few seconds: the toy check of docs/real-networks.md)::

        X, y = gaussian_mixture(jax.random.key(1), 3, 25, 30)
        res = deep_rfm(X, y, 3, num_layers=5, width=200, key=jax.random.key(2))
        [m["nc1_data"] for m in res.metrics]       # decreasing layer by layer
"""

from __future__ import annotations

from functools import partial
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ufm._types import Array, ArrayLike, check_int, check_scalar
from ufm.labels import check_labels
from ufm.metrics.classification import class_means, nc1_trace

# Two rows closer than this (relative to their squared norms) count as the same point: the
# expansion ‖x‖² + ‖z‖² − 2x·z has rounding error of a few eps·(‖x‖² + ‖z‖²), and the Laplace
# gradient's 1/‖x − z‖ would turn that rounding into a huge, arbitrary term.
_COINCIDENT = 64.0


def _check_matrix(name: str, X, cols: int | None = None) -> Array:
    if X is None or isinstance(X, (str, bytes, bool)):
        raise ValueError(f"{name} must be a 2-D float array, got {X!r}")
    arr = jnp.asarray(X)
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"{name} must be a non-empty 2-D array, got shape {tuple(arr.shape)}")
    if not jnp.issubdtype(arr.dtype, jnp.floating):
        arr = arr.astype(jnp.asarray(0.0).dtype)
    if cols is not None and arr.shape[1] != cols:
        raise ValueError(f"{name} must have {cols} columns, got shape {tuple(arr.shape)}")
    if not bool(jnp.all(jnp.isfinite(arr))):
        raise ValueError(f"{name} has non-finite entries (NaN or inf)")
    return arr


def _check_bandwidth(bandwidth) -> None:
    check_scalar("bandwidth", bandwidth, low=0.0, low_open=True, high=None,
                 allowed="a real number > 0")


def _check_block(block_size) -> int:
    return check_int("block_size", block_size, low=1)


def _sq_dist(X: Array, Z: Array) -> tuple[Array, Array]:
    """Squared distances [N_x, N_z] (clipped at 0) and the mask of coincident pairs."""
    nx, nz = jnp.sum(X * X, axis=1)[:, None], jnp.sum(Z * Z, axis=1)[None, :]
    d2 = nx + nz - 2.0 * (X @ Z.T)
    tol = _COINCIDENT * jnp.finfo(X.dtype).eps * (nx + nz)
    return jnp.maximum(d2, 0.0), d2 <= tol


@jax.jit
def _laplace(X, Z, bandwidth):
    d2, same = _sq_dist(X, Z)
    return jnp.exp(-jnp.where(same, 0.0, jnp.sqrt(d2)) / bandwidth)


def laplace_kernel(X: ArrayLike, Z: ArrayLike, bandwidth: float = 2.0) -> Array:
    """Laplace kernel matrix k(x_i, z_j) = exp(−‖x_i − z_j‖ / bandwidth), [N_x, N_z].

    Args:
        X: points [N_x, d].
        Z: points [N_z, d].
        bandwidth: the kernel bandwidth (> 0).

    Examples:
        >>> import jax.numpy as jnp
        >>> K = laplace_kernel(jnp.array([[0.0, 0.0], [3.0, 4.0]]), jnp.array([[0.0, 0.0]]), 5.0)
        >>> [round(float(v), 12) for v in K[:, 0]]
        [1.0, 0.367879441171]
    """
    X = _check_matrix("X", X)
    Z = _check_matrix("Z", Z, cols=X.shape[1])
    _check_bandwidth(bandwidth)
    c = _origin(Z)
    return _laplace(X - c, Z.astype(X.dtype) - c, jnp.asarray(bandwidth, X.dtype))


def _origin(Z: Array) -> Array:
    """A common reference point (the mean of Z) [1, d]. The kernel and its gradient depend only on
    differences x − z, but the expansion ‖x‖² + ‖z‖² − 2x·z (and Σ ω α x_j − (Σ ω α) x) cancel
    catastrophically for data far from the origin (an offset of 1e6 made the kernel wrong by 1e-4
    and the AGOP by 1e-3): every public entry point translates its points by this first."""
    return jnp.mean(Z, axis=0, keepdims=True)


@jax.jit
def _ridge(X, Y, bandwidth, ridge):
    A = _laplace(X, X, bandwidth) + ridge * jnp.eye(X.shape[0], dtype=X.dtype)
    return jax.scipy.linalg.solve(A, Y, assume_a="pos")


def kernel_ridge(X: ArrayLike, Y: ArrayLike, bandwidth: float = 2.0, ridge: float = 1e-3) -> Array:
    """Coefficients α = (K_XX + ridge·I)⁻¹ Y [N, K] of Laplace-kernel ridge regression.

    The fitted predictor is f(x) = Σ_j k(x, x_j) α_j (α_j the rows of α). The Laplace kernel is
    positive definite on distinct points, so ``ridge = 0`` interpolates (and raises ValueError on
    repeated rows: the system is singular).

    Args:
        X: training points [N, d].
        Y: targets [N, K].
        bandwidth: the Laplace bandwidth (> 0).
        ridge: the ridge μ ≥ 0.

    Examples:
        >>> import jax.numpy as jnp
        >>> X = jnp.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]); Y = jnp.array([[1.0], [-1.0], [0.5]])
        >>> alpha = kernel_ridge(X, Y, ridge=0.0)
        >>> bool(jnp.allclose(laplace_kernel(X, X) @ alpha, Y))     # μ = 0 interpolates
        True
    """
    X = _check_matrix("X", X)
    Y = _check_matrix("Y", Y)
    if Y.shape[0] != X.shape[0]:
        raise ValueError(f"X and Y need the same number of rows, got {X.shape} and {Y.shape}")
    _check_bandwidth(bandwidth)
    check_scalar("ridge", ridge, low=0.0, high=None, allowed="a real number >= 0")
    alpha = _ridge(X - _origin(X), Y.astype(X.dtype), jnp.asarray(bandwidth, X.dtype),
                   jnp.asarray(ridge, X.dtype))
    _check_solved(alpha, ridge)
    return alpha


def _check_solved(alpha, ridge) -> None:
    if not bool(jnp.all(jnp.isfinite(alpha))):
        raise ValueError(f"the kernel ridge system K + ridge·I is singular (ridge = {ridge!r}): "
                         "repeated rows with ridge = 0? Use ridge > 0")


def _jacobian_block(P, centers, alpha, bandwidth):
    """J[p] = Σ_j ω_pj α_j (x_j − x_p)ᵀ [B, K, d], ω_pj = k(x_p, x_j)/(bw·‖x_p − x_j‖) (0 if equal)."""
    d2, same = _sq_dist(P, centers)
    dist = jnp.sqrt(jnp.where(same, 1.0, d2))
    omega = jnp.where(same, 0.0, jnp.exp(-dist / bandwidth) / (bandwidth * dist))     # [B, N]
    towards = jnp.einsum("bj,jk,jd->bkd", omega, alpha, centers)                      # Σ ω α xᵀ
    return towards - (omega @ alpha)[:, :, None] * P[:, None, :]


def _blocks(X: Array, block_size: int) -> tuple[Array, Array]:
    """X padded with zero rows to whole blocks [nb, B, d], and the mask of real rows [nb, B]."""
    N = X.shape[0]
    B = min(block_size, N)
    nb = -(-N // B)
    pad = nb * B - N
    Xp = jnp.concatenate([X, jnp.zeros((pad, X.shape[1]), X.dtype)]) if pad else X
    mask = jnp.arange(nb * B) < N
    return Xp.reshape(nb, B, X.shape[1]), mask.reshape(nb, B)


@partial(jax.jit, static_argnames="block_size")
def _laplace_jac(points, centers, alpha, bandwidth, block_size):
    blocks, _ = _blocks(points, block_size)
    J = jax.lax.map(lambda P: _jacobian_block(P, centers, alpha, bandwidth), blocks)
    return J.reshape(-1, *J.shape[2:])[: points.shape[0]]


def laplace_jacobian(points: ArrayLike, centers: ArrayLike, alpha: ArrayLike,
                     bandwidth: float = 2.0, *, block_size: int = 256) -> Array:
    """Jacobians [P, K, d] of the kernel predictor f(x) = Σ_j exp(−‖x − x_j‖/bw) α_j at ``points``.

    J(x) = Σ_j ω_j α_j (x_j − x)ᵀ with ω_j = k(x, x_j)/(bw·‖x − x_j‖), from
    ∇_x k(x, z) = −k(x, z)(x − z)/(bw‖x − z‖). A centre that coincides with x (the singular
    self-term at a training point) is left out, as in the reference code.

    Args:
        points: where to evaluate [P, d].
        centers: the training points x_j [N, d].
        alpha: the ridge coefficients [N, K] (:func:`kernel_ridge`).
        bandwidth: the Laplace bandwidth.
        block_size: points per block (memory O(block_size · N · K)).

    Examples:
        >>> import jax.numpy as jnp
        >>> J = laplace_jacobian(jnp.array([[0.0, 0.0]]), jnp.array([[3.0, 4.0]]), jnp.array([[1.0]]), 5.0)
        >>> [round(float(v), 10) for v in J[0, 0]]      # e^{-1}/25 · (3, 4)
        [0.0441455329, 0.0588607106]
    """
    points = _check_matrix("points", points)
    centers = _check_matrix("centers", centers, cols=points.shape[1])
    alpha = _check_matrix("alpha", alpha)
    if alpha.shape[0] != centers.shape[0]:
        raise ValueError(f"alpha needs one row per centre ({centers.shape[0]}), got shape {alpha.shape}")
    _check_bandwidth(bandwidth)
    B = _check_block(block_size)
    c = _origin(centers)
    return _laplace_jac(points - c, centers.astype(points.dtype) - c, alpha.astype(points.dtype),
                        jnp.asarray(bandwidth, points.dtype), B)


def _gop_sum(jac_block: Callable, X: Array, block_size: int) -> Array:
    """Σ_i J(x_i)ᵀ J(x_i) over the rows of X, one block of Jacobians at a time (padding masked)."""
    blocks, mask = _blocks(X, block_size)

    def body(acc, block):
        P, m = block
        J = jac_block(P) * m[:, None, None].astype(P.dtype)
        return acc + jnp.einsum("bkd,bke->de", J, J), None

    d = X.shape[1]
    acc, _ = jax.lax.scan(body, jnp.zeros((d, d), X.dtype), (blocks, mask))
    return acc


@partial(jax.jit, static_argnames="block_size")
def _laplace_agop(X, alpha, bandwidth, block_size):
    G = _gop_sum(lambda P: _jacobian_block(P, X, alpha, bandwidth), X, block_size)
    return G / X.shape[0]


def laplace_agop(X: ArrayLike, alpha: ArrayLike, bandwidth: float = 2.0, *,
                 block_size: int = 256) -> Array:
    """AGOP (1/N) Σ_i J_iᵀ J_i [d, d] of the Laplace predictor at its own training points.

    J_i is :func:`laplace_jacobian` at x_i (self-term left out). Unnormalised: Deep RFM divides it
    by its largest entry in absolute value. Blocked: ``block_size`` Jacobians at a time.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> X = jnp.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]); alpha = jnp.ones((3, 1))
        >>> G = laplace_agop(X, alpha, block_size=2)      # 2 blocks, the last one padded
        >>> bool(jnp.allclose(G, G.T)), bool(jnp.all(jnp.linalg.eigvalsh(G) >= -1e-15))
        (True, True)
    """
    X = _check_matrix("X", X)
    alpha = _check_matrix("alpha", alpha)
    if alpha.shape[0] != X.shape[0]:
        raise ValueError(f"alpha needs one row per row of X ({X.shape[0]}), got shape {alpha.shape}")
    _check_bandwidth(bandwidth)
    B = _check_block(block_size)
    return _laplace_agop(X - _origin(X), alpha.astype(X.dtype), jnp.asarray(bandwidth, X.dtype), B)


def agop(fn: Callable[[Array], Array], X: ArrayLike, *, block_size: int = 256) -> Array:
    """Average gradient outer product (1/N) Σ_i J_f(x_i)ᵀ J_f(x_i) [d, d] of any f: ℝ^d → ℝ^K.

    Jacobians come from ``jax.jacfwd``, vmapped over ``block_size`` points at a time, and their
    outer products are summed block by block (never N Jacobians at once). A scalar-valued f counts
    as K = 1.

    Args:
        fn: a JAX-traceable function of one point x [d].
        X: the points [N, d].
        block_size: points per block.

    Examples:
        >>> import jax.numpy as jnp
        >>> X = jnp.array([[1.0, 2.0], [3.0, -1.0]])
        >>> agop(lambda x: jnp.sum(x ** 2), X)       # ∇f = 2x: mean of 4 x xᵀ
        Array([[20., -2.],
               [-2., 10.]], dtype=float64)
    """
    if not callable(fn):
        raise TypeError(f"fn must be a callable f(x [d]) -> [K], got {fn!r}")
    X = _check_matrix("X", X)
    B = _check_block(block_size)

    def jac_block(P):
        J = jax.vmap(jax.jacfwd(fn))(P)
        return J.reshape(P.shape[0], -1, P.shape[1])  # scalar f: [B, d] -> [B, 1, d]

    return jax.jit(lambda X: _gop_sum(jac_block, X, B) / X.shape[0])(X)


def psd_sqrt(M: ArrayLike) -> Array:
    """Symmetric PSD square root of a symmetric matrix, negative eigenvalues clipped to 0.

    Examples:
        >>> import jax.numpy as jnp
        >>> psd_sqrt(jnp.array([[4.0, 0.0], [0.0, -1.0]]))
        Array([[2., 0.],
               [0., 0.]], dtype=float64)
    """
    M = _check_matrix("M", M)
    if M.shape[0] != M.shape[1]:
        raise ValueError(f"M must be square, got shape {tuple(M.shape)}")
    evals, evecs = jnp.linalg.eigh((M + M.T) / 2)
    return (evecs * jnp.sqrt(jnp.maximum(evals, 0.0))[None, :]) @ evecs.T


def nc2_rfm(H: ArrayLike, labels: ArrayLike, num_classes: int) -> float:
    """NC2 of Deep RFM: mean over the K² entries of (Ĝ − G')², G' = (K I − 11ᵀ)/(K−1).

    Ĝ is the Gram of the unit-normalised centred class means (docs/real-networks.md); 0 when the
    means form a simplex ETF.

    Examples:
        >>> import numpy as np
        >>> from ufm.theory import simplex_etf
        >>> M = simplex_etf(3, 4); H = np.repeat(M, 2, axis=0) + 5.0      # shifted ETF means
        >>> nc2_rfm(H, np.repeat(np.arange(3), 2), 3) < 1e-24
        True
    """
    K = check_int("num_classes", num_classes, low=2)
    M = np.asarray(class_means(np.asarray(H, np.float64), np.asarray(labels), K))
    M = M - M.mean(axis=0)
    norms = np.linalg.norm(M, axis=1, keepdims=True)
    U = M / np.where(norms > 0, norms, 1.0)
    target = (K * np.eye(K) - np.ones((K, K))) / (K - 1)
    return float(np.mean((U @ U.T - target) ** 2))


def gaussian_mixture(key, num_classes: int, num_per_class: int, dim: int, *,
                     noise: float = 1.4) -> tuple[Array, np.ndarray]:
    """A class-major Gaussian mixture: means N(0, I_d), samples mean + noise·N(0, I_d).

    Returns:
        (X [K·n, d], labels [K·n]). With noise 1.4 the data's nc1_trace is about 2 noise² ≈ 3 for
        K = 3 (the toy check of docs/real-networks.md).
    """
    K = check_int("num_classes", num_classes, low=2)
    n = check_int("num_per_class", num_per_class, low=1)
    d = check_int("dim", dim, low=1)
    check_scalar("noise", noise, low=0.0, high=None, allowed="a real number >= 0")
    k_mean, k_noise = jax.random.split(key)
    means = jax.random.normal(k_mean, (K, d))
    X = jnp.repeat(means, n, axis=0) + noise * jax.random.normal(k_noise, (K * n, d))
    return X, np.repeat(np.arange(K), n)


def standardize(X: ArrayLike) -> Array:
    """Columns centred and divided by their (population) std; constant columns left at 0."""
    X = _check_matrix("X", X)
    Xc = X - X.mean(axis=0, keepdims=True)
    std = Xc.std(axis=0, keepdims=True)
    return Xc / jnp.where(std > 0, std, 1.0)


def _unit_rows(X: Array) -> Array:
    norms = jnp.linalg.norm(X, axis=1, keepdims=True)
    return X / jnp.where(norms > 0, norms, 1.0)


@partial(jax.jit, static_argnames=("width", "block_size"))
def _layer(Xl, Y, key, bandwidth, ridge, width, block_size):
    """One Deep RFM layer, compiled as one program (one compilation per input width)."""
    Xn = _unit_rows(Xl)
    A = _laplace(Xn, Xn, bandwidth)
    alpha = jax.scipy.linalg.solve(A + ridge * jnp.eye(A.shape[0], dtype=A.dtype), Y, assume_a="pos")
    M = _laplace_agop(Xn, alpha, bandwidth, block_size)
    M = M / jnp.max(jnp.abs(M))
    evals, evecs = jnp.linalg.eigh((M + M.T) / 2)
    Xp = Xn @ ((evecs * jnp.sqrt(jnp.maximum(evals, 0.0))[None, :]) @ evecs.T)
    d_l = Xl.shape[1]
    lim = 1.0 / np.sqrt(d_l)
    W = jax.random.uniform(key, (width, d_l), Xl.dtype, -lim, lim)
    return Xp, jax.nn.relu(Xp @ W.T), M, W, alpha, A @ alpha


class DeepRFM(NamedTuple):
    """The layers of a Deep RFM run (L layers).

    Attributes:
        features: L + 1 arrays: X_1 (the standardised input) and X_{l+1} = ReLU(X̃_l W_lᵀ).
        projected: L arrays X̃_l = normalise(X_l) M_l^{1/2}.
        agops: L normalised AGOPs M_l [d_l, d_l] (largest entry in absolute value 1).
        weights: L random-feature matrices W_l [D, d_l].
        alphas: L ridge coefficient matrices [N, K].
        metrics: one dict per layer: nc1_trace and NC2_rfm of the data X_l (``nc1_data``,
            ``nc2_data``), after the AGOP projection (``nc1_agop``, ``nc2_agop``), after the
            nonlinearity (``nc1_relu``, ``nc2_relu``), and the kernel predictor's training accuracy
            (``train_accuracy``).
    """

    features: list
    projected: list
    agops: list
    weights: list
    alphas: list
    metrics: list


def deep_rfm(X: ArrayLike, labels: ArrayLike, num_classes: int, *, key, num_layers: int = 5,
             width: int = 512, bandwidth: float = 2.0, ridge: float = 1e-3,
             block_size: int = 256, standardize_input: bool = True) -> DeepRFM:
    """Deep RFM: per layer, Laplace ridge regression, its AGOP, projection and random ReLU features.

    For l = 1…L (docs/real-networks.md): rows of X_l normalised to unit norm; α = (K + μI)⁻¹ Y with
    Y = 2·onehot − 1; M_l = AGOP of the predictor at the training points, divided by its largest
    entry; X̃_l = X_l M_l^{1/2} (symmetric PSD root); X_{l+1} = ReLU(X̃_l W_lᵀ) with
    W_l ∈ ℝ^{D×d_l} i.i.d. U(−1/√d_l, 1/√d_l).

    Args:
        X: data [N, d_0].
        labels: integer labels [N] in [0, K); every class present.
        num_classes: K ≥ 2.
        key: a JAX PRNG key for the random features.
        num_layers: L ≥ 1.
        width: D, the random-feature width.
        bandwidth: the Laplace bandwidth (> 0).
        ridge: μ ≥ 0.
        block_size: rows per block of the AGOP computation.
        standardize_input: standardise the columns of X first (the recipe's input).

    Returns:
        :class:`DeepRFM` with the features, projections, AGOPs and per-layer metrics.
    """
    X = _check_matrix("X", X)
    K = check_int("num_classes", num_classes, low=2)
    y = check_labels(labels, K)
    if y.shape[0] != X.shape[0]:
        raise ValueError(f"labels must have one entry per row of X ({X.shape[0]}), got {y.shape[0]}")
    if np.setdiff1d(np.arange(K), y).size:
        raise ValueError(f"labels must contain every class 0..{K - 1}")
    L = check_int("num_layers", num_layers, low=1)
    D = check_int("width", width, low=1)
    _check_bandwidth(bandwidth)
    check_scalar("ridge", ridge, low=0.0, high=None, allowed="a real number >= 0")
    B = _check_block(block_size)
    if not isinstance(key, jax.Array):
        raise TypeError(f"key must be a JAX PRNG key (jax.random.key(seed)), got {key!r}")

    dtype = X.dtype
    Y = jnp.asarray(2.0 * np.eye(K)[y] - 1.0, dtype)
    bw, mu = jnp.asarray(bandwidth, dtype), jnp.asarray(ridge, dtype)
    Xl = standardize(X) if standardize_input else X
    out = DeepRFM([Xl], [], [], [], [], [])

    def stats(H):
        H = np.asarray(H, np.float64)
        return float(nc1_trace(H, y, K)), nc2_rfm(H, y, K)

    for key_l in jax.random.split(key, L):
        nc1_d, nc2_d = stats(Xl)
        Xp, Xnext, M, W, alpha, fit = _layer(Xl, Y, key_l, bw, mu, D, B)
        _check_solved(alpha, ridge)
        acc = float(np.mean(np.argmax(np.asarray(fit), axis=1) == y))
        nc1_a, nc2_a = stats(Xp)
        nc1_r, nc2_r = stats(Xnext)
        Xl = Xnext
        out.features.append(Xl)
        out.projected.append(Xp)
        out.agops.append(M)
        out.weights.append(W)
        out.alphas.append(alpha)
        out.metrics.append(dict(nc1_data=nc1_d, nc2_data=nc2_d, nc1_agop=nc1_a, nc2_agop=nc2_a,
                                nc1_relu=nc1_r, nc2_relu=nc2_r, train_accuracy=acc))
    return out


__all__ = ["laplace_kernel", "kernel_ridge", "laplace_jacobian", "laplace_agop", "agop", "psd_sqrt",
           "nc2_rfm", "gaussian_mixture", "standardize", "DeepRFM", "deep_rfm"]
