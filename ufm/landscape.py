"""Landscape tools: Hessian-vector products, dense Hessians, symmetry, certificates, saddles.

For a problem on a manifold the Hessian is the Riemannian one, Hess F(x)[v] =
``manifold.euclidean_to_riemannian_hessian(x, ∇F, ∇²F[v], v)`` with v projected onto the tangent
space. The dense matrix of P∘Hess∘P in ambient coordinates has one extra zero eigenvalue per normal
direction (K + N of them for the spherical UFM, docs/theory/spherical.md): :func:`hessian_eigenvalues`
removes them when ``tangent_only=True``.

Every model is invariant under a continuous group (rotations of the feature space, the flat
mean(b) of a free bias under softmax losses, ...): at a minimiser the orbit is a set of minimisers
and its tangent directions are Hessian null vectors. :func:`symmetry_directions` gives them in
closed form for every problem class, and :func:`certify` measures the curvature on their
orthogonal complement: the smallest eigenvalue μ there makes the point a strict minimiser modulo
symmetry, with distance ≲ g/μ to the minimiser set (g the gradient norm).

Examples:
    >>> import jax, ufm
    >>> p = ufm.UFM(3, 2, 3, ufm.losses.MSE(), 0.5, 0.5, bias=False)
    >>> zero = p.params(jax.numpy.zeros((3, 3)), jax.numpy.zeros((6, 3)))
    >>> float(hessian_eigenvalues(p, zero)[0]) > 0  # past the threshold the origin is a minimum
    True
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Optional

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np

from ufm._types import Array, PyTree
from ufm.losses import MSE
from ufm.problems import UFM
from ufm.problems.deep import DeepUFM
from ufm.problems.multilabel import MultiLabelUFM
from ufm.problems.regression import RegressionUFM
from ufm.problems.spherical import SphericalUFM
from ufm.solvers._common import riemannian_hessian_operator

# Above this many parameters the dense Hessian (P² floats, an O(P³) eigendecomposition) is refused;
# use the matrix-free path (certify(..., method="matrix-free") / smallest_eigenpairs).
DENSE_MAX = 3000


def _ravel(tree):
    return jax.flatten_util.ravel_pytree(tree)[0]


def hvp(problem, params: PyTree, v: PyTree) -> PyTree:
    """(Riemannian) Hessian-vector product at ``params`` along ``v`` (projected onto the tangent
    space first); the operator the second-order solvers use."""
    return riemannian_hessian_operator(problem, params)[1](v)


def _check_dense(params, what="the dense Hessian"):
    size = int(sum(np.size(x) for x in jax.tree.leaves(params)))
    if size > DENSE_MAX:
        raise ValueError(f"{what} of {size} parameters would need {8 * size * size / 1e9:.2g} GB and an "
                         f"O(P³) eigendecomposition (limit DENSE_MAX = {DENSE_MAX}): use the matrix-free "
                         f"path, ufm.landscape.certify(problem, params, method='matrix-free') or "
                         f"ufm.landscape.smallest_eigenpairs")
    return size


@jax.jit
def _dense_parts(problem, params):
    """(flat Riemannian gradient, dense P∘Hess∘P, dense tangent projector): compiled once per
    problem shape (λ's are leaves), not per call."""
    manifold = problem.manifold
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    egrad, hess = riemannian_hessian_operator(problem, params)  # linearised once for every column
    rgrad = manifold.euclidean_to_riemannian_gradient(params, egrad)
    eye = jnp.eye(flat.size, dtype=flat.dtype)
    H = jax.vmap(lambda e: _ravel(manifold.projection(params, hess(unravel(e)))))(eye)
    P = jax.vmap(lambda e: _ravel(manifold.projection(params, unravel(e))))(eye)
    return _ravel(rgrad), (H + H.T) / 2, (P + P.T) / 2


def hessian(problem, params: PyTree) -> Array:
    """Dense matrix of v ↦ P hvp(P v) in the flattened ambient coordinates (small problems; above
    :data:`DENSE_MAX` parameters it refuses and points to the matrix-free path)."""
    _check_dense(params)
    return _dense_parts(problem, params)[1]


def _tangent_basis(problem, P: np.ndarray) -> np.ndarray | None:
    """Orthonormal basis of the tangent space (None: Euclidean, the identity)."""
    if getattr(problem.manifold, "is_euclidean", False):
        return None
    evals, evecs = np.linalg.eigh(P)
    return evecs[:, evals > 0.5]


def hessian_eigenvalues(problem, params: PyTree, tangent_only: bool = True) -> np.ndarray:
    """Ascending eigenvalues of the (Riemannian) Hessian, dense.

    With ``tangent_only`` the eigenvalues belonging to normal directions of the manifold (where
    P∘Hess∘P is zero by construction) are dropped, leaving the spectrum on the tangent space.
    """
    _check_dense(params)
    _, Hm, P = (np.asarray(a) for a in _dense_parts(problem, params))
    basis = _tangent_basis(problem, P) if tangent_only else None
    return np.linalg.eigvalsh(Hm if basis is None else basis.T @ Hm @ basis)


def smallest_eigenpair(problem, params: PyTree) -> tuple[float, PyTree]:
    """Smallest eigenvalue of the dense tangent Hessian and its unit tangent eigenvector (pytree)."""
    _check_dense(params)
    _, unravel = jax.flatten_util.ravel_pytree(params)
    _, Hm, P = (np.asarray(a) for a in _dense_parts(problem, params))
    basis = _tangent_basis(problem, P)
    if basis is None:
        evals, evecs = np.linalg.eigh(Hm)
        v = evecs[:, 0]
    else:
        evals, evecs = np.linalg.eigh(basis.T @ Hm @ basis)
        v = basis @ evecs[:, 0]
    return float(evals[0]), unravel(jnp.asarray(v))


def classify_critical_point(problem, params: PyTree, tol: float = 1e-8) -> str:
    """'local minimum (second-order)', 'strict saddle' or 'degenerate' from the Hessian spectrum.

    Assumes ``params`` is critical (check the gradient first); ``tol`` is relative to the largest
    eigenvalue magnitude. Symmetry zeros count as degenerate here; :func:`certify` removes them.
    """
    evals = hessian_eigenvalues(problem, params)
    scale = max(np.max(np.abs(evals)), 1e-300)
    if evals[0] < -tol * scale:
        return "strict saddle"
    return "local minimum (second-order)" if evals[0] > tol * scale else "degenerate"


def escape_direction(problem, params: PyTree) -> tuple[float, PyTree]:
    """A negative-curvature direction (unit tangent eigenvector of the smallest eigenvalue)."""
    return smallest_eigenpair(problem, params)


# ---- symmetry ---------------------------------------------------------------------------------

def orthonormal_columns(vectors: np.ndarray, rtol: float | None = None) -> np.ndarray:
    """Orthonormal basis [P, r] of the span of the columns of ``vectors`` [P, m] (SVD; singular
    values below ``rtol`` × the largest, default 1e3·eps·m, are dropped as dependent)."""
    vectors = np.asarray(vectors, dtype=np.float64)
    if vectors.size == 0 or vectors.shape[1] == 0:
        return np.zeros((vectors.shape[0], 0))
    U, s, _ = np.linalg.svd(vectors, full_matrices=False)
    if s[0] == 0:
        return np.zeros((vectors.shape[0], 0))
    rtol = 1e3 * np.finfo(np.float64).eps * max(vectors.shape) if rtol is None else rtol
    return U[:, s > rtol * s[0]]


def _skew_basis(d: int):
    for i in range(d):
        for j in range(i + 1, d):
            A = np.zeros((d, d))
            A[i, j], A[j, i] = 1.0, -1.0
            yield A


def _softmax_family(loss) -> bool:
    """CE, LS, FL and PAL are invariant under adding a constant to every logit; MSE is not."""
    return not isinstance(loss, MSE)


def _flat_bias_free(problem) -> bool:
    """A free (λ_b = 0) bias under a softmax loss: mean(b) is a flat direction."""
    if getattr(problem, "bias", False) is not True or not _softmax_family(problem.loss):
        return False
    lambda_b = np.asarray(getattr(problem, "lambda_b", 0.0))
    return bool(np.all(lambda_b == 0.0))


@functools.singledispatch
def symmetry_directions(problem, params: PyTree) -> np.ndarray:
    """Orthonormal basis [P, s] (flattened ambient coordinates, ``ravel_pytree`` order) of the
    tangent space of the problem's continuous symmetry orbit through ``params``.

    Registered per problem class. For the two-factor models (UFM, MultiLabelUFM, RegressionUFM,
    SphericalUFM) the orbit of (W, H) → (WQ, HQ), Q ∈ O(d), has tangents (W A, H A) for skew A:
    dimension d(d−1)/2 − (d−r)(d−r−1)/2 where r is the rank of the rows of [W; H] (the stabiliser
    rotates their orthogonal complement). A free bias under CE/LS/FL/PAL adds the mean(b)
    direction. Deep models: the input rotation (H_1 A, W_1 A), and with the identity activation
    the rotation of every hidden layer (W_l A, −A W_{l−1}).

    Examples:
        >>> import jax, ufm
        >>> p = ufm.UFM(3, 2, 4, ufm.losses.CrossEntropy(), 1e-2, 1e-2)
        >>> symmetry_directions(p, p.init(jax.random.key(0))).shape  # 4·3/2 rotations + mean(b)
        (39, 7)
    """
    raise NotImplementedError(f"no symmetry is registered for {type(problem).__name__}")


def _two_factor_directions(problem, params, flat_bias: bool) -> np.ndarray:
    W, H = np.asarray(params.W, np.float64), np.asarray(params.H, np.float64)
    zeros_b = None if params.b is None else np.zeros(np.shape(params.b))
    cols = [np.asarray(_ravel(params._replace(W=W @ A, H=H @ A, b=zeros_b)))
            for A in _skew_basis(W.shape[1])]
    if flat_bias:
        cols.append(np.asarray(_ravel(params._replace(W=np.zeros_like(W), H=np.zeros_like(H),
                                                       b=np.ones(np.shape(params.b))))))
    return orthonormal_columns(np.stack(cols, axis=1) if cols else np.zeros((_ravel(params).size, 0)))


@symmetry_directions.register(UFM)
@symmetry_directions.register(MultiLabelUFM)
@symmetry_directions.register(SphericalUFM)
def _two_factor_symmetry(problem, params):
    return _two_factor_directions(problem, params, _flat_bias_free(problem))


@symmetry_directions.register(RegressionUFM)
def _regression_symmetry(problem, params):
    return _two_factor_directions(problem, params, False)  # MSE: the bias is not flat


@symmetry_directions.register(DeepUFM)
def _deep_symmetry(problem, params):
    H = np.asarray(params.H, np.float64)
    Ws = [np.asarray(W, np.float64) for W in params.Ws]
    zero_b = None if params.b is None else np.zeros(np.shape(params.b))

    def tangent(dH=None, dWs=None, db=None):
        return np.asarray(_ravel(params._replace(
            H=np.zeros_like(H) if dH is None else dH,
            Ws=tuple(np.zeros_like(W) for W in Ws) if dWs is None else tuple(dWs),
            b=zero_b if db is None or zero_b is None else db)))

    cols = []
    for A in _skew_basis(H.shape[1]):  # input rotation: H_1 → H_1 Q, W_1 → W_1 Q
        dWs = [np.zeros_like(W) for W in Ws]
        dWs[0] = Ws[0] @ A
        cols.append(tangent(H @ A, dWs))
    if problem.activation == "identity":  # hidden rotations: W_l → W_l Q, W_{l-1} → Qᵀ W_{l-1}
        for l in range(1, len(Ws)):
            for A in _skew_basis(Ws[l].shape[1]):
                dWs = [np.zeros_like(W) for W in Ws]
                dWs[l], dWs[l - 1] = Ws[l] @ A, -A @ Ws[l - 1]
                cols.append(tangent(None, dWs))
    if _flat_bias_free(problem):
        cols.append(tangent(db=np.ones(np.shape(params.b))))
    return orthonormal_columns(np.stack(cols, axis=1) if cols else np.zeros((_ravel(params).size, 0)))


def rotation_orbit_dimension(d: int, r: int) -> int:
    """Dimension of the O(d)-orbit of a configuration whose rows span r dimensions:
    d(d−1)/2 − (d−r)(d−r−1)/2 (the stabiliser rotates the orthogonal complement)."""
    return d * (d - 1) // 2 - (d - r) * (d - r - 1) // 2


# ---- certificate ------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Certificate:
    """Second-order certificate of a point, modulo the model's symmetry.

    Attributes:
        value: F at the point.
        grad_norm: (Riemannian) gradient norm g, recomputed at the point.
        eigenvalues: ascending eigenvalues of the Hessian restricted to the orthogonal complement
            of the symmetry directions in the tangent space (all of them on the dense path; the
            few smallest on the matrix-free path).
        max_abs_eig: the largest eigenvalue magnitude (the Hessian's scale).
        noise: eigenvalues with |λ| ≤ noise count as zero: rounding (1e3·eps·scale) plus the
            curvature a non-critical point shows along a critical set (100·g).
        num_symmetry: dimension of the symmetry orbit that was removed.
        num_degenerate: zero eigenvalues beyond symmetry (a degenerate minimiser set, e.g. any
            rank-d projector for bias-free MSE with d < K).
        mu: smallest eigenvalue above the noise (NaN if none): the curvature behind the bounds.
        min_eig: the smallest restricted eigenvalue; < −noise at a strict saddle.
        low_directions: [P, k] flat tangent eigenvectors of the smallest eigenvalues above the
            noise (where the distance bound g/μ is attained).
        degenerate_directions: [P, m] flat eigenvectors of the zeros beyond symmetry.
        newton: flat Newton displacement H⁺g on the complement (dense path; None otherwise).
        method: "dense" or "matrix-free".
    """

    value: float
    grad_norm: float
    eigenvalues: np.ndarray
    max_abs_eig: float
    noise: float
    num_symmetry: int
    num_degenerate: int
    mu: float
    min_eig: float
    low_directions: np.ndarray
    degenerate_directions: np.ndarray
    newton: Optional[np.ndarray]
    method: str
    negative_direction: Optional[np.ndarray] = None

    @property
    def is_saddle(self) -> bool:
        """Negative curvature beyond the noise: the point is not a local minimum."""
        return bool(self.min_eig < -self.noise)

    @property
    def distance(self) -> float:
        """Bound g/μ on the distance to the (local) minimiser set, modulo symmetry."""
        return self.grad_norm / self.mu if self.mu > 0 else math.inf

    @property
    def value_gap(self) -> float:
        """Bound g²/(2μ) on F − F_min of the local minimiser set."""
        return self.grad_norm ** 2 / (2 * self.mu) if self.mu > 0 else math.inf

    def verdict(self) -> str:
        if self.is_saddle:
            return "strict saddle"
        if not self.mu > 0:
            return "degenerate"
        return ("local minimum (strict, modulo symmetry)" if self.num_degenerate == 0 else
                f"local minimum modulo symmetry and {self.num_degenerate} further flat directions")


def _eps(params) -> float:
    dtypes = [np.asarray(x).dtype for x in jax.tree.leaves(params)]
    floats = [d for d in dtypes if np.issubdtype(d, np.floating)]
    return float(max(np.finfo(d).eps for d in floats)) if floats else float(np.finfo(np.float64).eps)


def _noise(scale: float, grad_norm: float, eps: float) -> float:
    return 1e3 * eps * scale + 100.0 * grad_norm


def certify(problem, params: PyTree, *, method: str | None = None, num_low: int = 3,
            seed: int = 0) -> Certificate:
    """Gradient norm and curvature modulo symmetry at ``params`` (a :class:`Certificate`).

    ``method``: "dense" (default up to :data:`DENSE_MAX` parameters) builds the Hessian once per
    shape and diagonalises it on the complement of :func:`symmetry_directions` (and of the normal
    space on manifolds); "matrix-free" finds the smallest few eigenpairs from Hessian-vector
    products (LOBPCG on the deflated, shifted operator).

    Examples:
        >>> import jax, ufm
        >>> p = ufm.UFM(3, 2, 3, ufm.losses.CrossEntropy(), 1e-2, 1e-2)
        >>> pred = ufm.theory.predict(p)
        >>> c = certify(p, p.params(**pred.construct(seed=0)))
        >>> c.verdict(), c.num_symmetry, c.mu > 0
        ('local minimum (strict, modulo symmetry)', 4, True)
    """
    size = int(sum(np.size(x) for x in jax.tree.leaves(params)))
    method = method or ("dense" if size <= DENSE_MAX else "matrix-free")
    if method not in ("dense", "matrix-free"):
        raise ValueError(f"method must be 'dense' or 'matrix-free', got {method!r}")
    S = symmetry_directions(problem, params)
    eps = _eps(params)
    if method == "dense":
        _check_dense(params, "the dense certificate")
        return _certify_dense(problem, params, S, eps, num_low)
    return _certify_matrix_free(problem, params, S, eps, num_low, seed)


def _certify_dense(problem, params, S, eps, num_low) -> Certificate:
    g, Hm, P = (np.asarray(a, np.float64) for a in _dense_parts(problem, params))
    value = float(problem.value(params))
    grad_norm = float(np.linalg.norm(g))
    T = _tangent_basis(problem, P)
    # Orthonormal basis of (tangent space) ⊖ span(S): eigenvectors of P_T − S Sᵀ with eigenvalue 1.
    PT = np.eye(Hm.shape[0]) if T is None else T @ T.T
    evals_c, evecs_c = np.linalg.eigh(PT - S @ S.T)
    C = evecs_c[:, evals_c > 0.5]
    Hc = C.T @ Hm @ C
    lam, V = np.linalg.eigh((Hc + Hc.T) / 2)
    full = np.linalg.eigvalsh(Hm if T is None else T.T @ Hm @ T)
    scale = max(float(np.max(np.abs(full))) if full.size else 0.0, 1e-300)
    noise = _noise(scale, grad_norm, eps)
    zero = np.abs(lam) <= noise
    above = np.flatnonzero(lam > noise)
    mu = float(lam[above[0]]) if above.size else math.nan
    low = C @ V[:, above[:num_low]]
    gc = C.T @ g
    keep = np.abs(lam) > noise
    newton = C @ (V[:, keep] @ ((V[:, keep].T @ gc) / lam[keep])) if keep.any() else None
    negative = C @ V[:, 0] if lam.size and lam[0] < -noise else None
    return Certificate(value, grad_norm, lam, scale, noise, S.shape[1], int(zero.sum()), mu,
                       float(lam[0]) if lam.size else math.nan, low, C @ V[:, zero], newton, "dense",
                       negative)


@functools.partial(jax.jit, static_argnames=("iters",))
def _lobpcg_parts(problem, params, S, X0, shift, iters):
    """Top eigenpairs of shift·Pc − Pc Hess Pc (Pc: projector onto the complement of S in the
    tangent space), i.e. the smallest eigenpairs of the Hessian there; one compile per shape."""
    from jax.experimental.sparse.linalg import lobpcg_standard

    manifold = problem.manifold
    _, unravel = jax.flatten_util.ravel_pytree(params)
    egrad, hess = riemannian_hessian_operator(problem, params)

    def proj(v):
        v = _ravel(manifold.projection(params, unravel(v)))
        return v - S @ (S.T @ v)

    def op(X):
        def one(x):
            x = proj(x)
            return shift * x - proj(_ravel(hess(unravel(x))))
        return jax.vmap(one, in_axes=1, out_axes=1)(X)

    theta, U, _ = lobpcg_standard(op, jax.vmap(proj, in_axes=1, out_axes=1)(X0), m=iters)
    rgrad = _ravel(manifold.euclidean_to_riemannian_gradient(params, egrad))
    return rgrad, shift - theta, U


@functools.partial(jax.jit, static_argnames=("iters",))
def _lobpcg_top(problem, params, X0, iters):
    """Largest-magnitude scale of the Hessian (top eigenvalue of Pc Hess Pc + its negative)."""
    from jax.experimental.sparse.linalg import lobpcg_standard

    manifold = problem.manifold
    _, unravel = jax.flatten_util.ravel_pytree(params)
    _, hess = riemannian_hessian_operator(problem, params)

    def op(X):
        return jax.vmap(lambda x: _ravel(manifold.projection(params, hess(unravel(x)))),
                        in_axes=1, out_axes=1)(X)

    theta, _, _ = lobpcg_standard(op, X0, m=iters)
    return theta


def smallest_eigenpairs(problem, params: PyTree, k: int = 4, *, symmetry: bool = True,
                        iters: int = 200, seed: int = 0):
    """The k smallest eigenvalues (ascending) of the tangent Hessian on the complement of the
    symmetry directions, with flat eigenvectors [P, k], and the Hessian's scale, matrix-free
    (LOBPCG on Hessian-vector products; nothing P×P is formed)."""
    flat = _ravel(params)
    P = flat.size
    k = max(1, min(k, (P - 1) // 5))
    S = symmetry_directions(problem, params) if symmetry else np.zeros((P, 0))
    rng = np.random.default_rng(seed)
    X0 = jnp.asarray(rng.standard_normal((P, k)), flat.dtype)
    top = float(_lobpcg_top(problem, params, X0[:, :1], iters)[0])
    # The spectrum lies in [−|λ|max, |λ|max]; a shift above it makes the smallest eigenvalues the
    # largest of the shifted operator (symmetry and normal directions are mapped to 0).
    scale = abs(top)
    shift = 2.0 * scale + 1.0
    rgrad, lam, U = _lobpcg_parts(problem, params, jnp.asarray(S, flat.dtype), X0,
                                  jnp.asarray(shift, flat.dtype), iters)
    order = np.argsort(np.asarray(lam))
    return (np.asarray(lam)[order], np.asarray(U)[:, order], max(scale, float(np.max(np.abs(lam)))),
            np.asarray(rgrad), S)


def _certify_matrix_free(problem, params, S, eps, num_low, seed) -> Certificate:
    lam, U, scale, g, S = smallest_eigenpairs(problem, params, k=num_low + 3, seed=seed)
    grad_norm = float(np.linalg.norm(g))
    # LOBPCG converges to about sqrt(eps)·scale; its zeros are resolved only to that level.
    noise = _noise(scale, grad_norm, eps) + math.sqrt(eps) * scale
    zero = np.abs(lam) <= noise
    above = np.flatnonzero(lam > noise)
    mu = float(lam[above[0]]) if above.size else math.nan
    negative = U[:, 0] if lam[0] < -noise else None
    return Certificate(float(problem.value(params)), grad_norm, lam, scale, noise, S.shape[1],
                       int(zero.sum()), mu, float(lam[0]), U[:, above[:num_low]], U[:, zero], None,
                       "matrix-free", negative)
