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

import contextlib
import dataclasses
import functools
import math
from typing import Optional

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np

from ufm._types import Array, PyTree, check_int
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


def _check_point(problem, params, name: str = "params", finite: bool = True) -> None:
    """``ValueError`` naming ``name`` unless it has the structure, shapes and float dtype of
    ``problem.init`` (params of another problem failed deep inside with a broadcasting error)
    and, with ``finite``, finite entries (a NaN point failed in an SVD with LinAlgError, or came
    back from Lanczos as an empty, unconverged result). A bare object with ``value`` and
    ``manifold`` (all the Hessian tools need) has no ``init`` to check the layout against."""
    from ufm.protocols import Problem
    from ufm.solvers._driver import check_params

    if isinstance(problem, Problem):
        check_params(problem, params, name)
    if not finite:
        return
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        if not isinstance(leaf, jax.core.Tracer) and not np.all(np.isfinite(np.asarray(leaf))):
            raise ValueError(f"{name}{jax.tree_util.keystr(path)} must be finite (a Hessian at a "
                             f"NaN or inf point has no meaning), got non-finite entries")


def hvp(problem, params: PyTree, v: PyTree) -> PyTree:
    """(Riemannian) Hessian-vector product at ``params`` along ``v`` (projected onto the tangent
    space first); the operator the second-order solvers use."""
    _check_point(problem, params)
    _check_point(problem, v, "v")
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
    _check_point(problem, params)
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
    _check_point(problem, params)
    _check_dense(params)
    _, Hm, P = (np.asarray(a) for a in _dense_parts(problem, params))
    basis = _tangent_basis(problem, P) if tangent_only else None
    return np.linalg.eigvalsh(Hm if basis is None else basis.T @ Hm @ basis)


def smallest_eigenpair(problem, params: PyTree) -> tuple[float, PyTree]:
    """Smallest eigenvalue of the dense tangent Hessian and its unit tangent eigenvector (pytree)."""
    _check_point(problem, params)
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


# ---- symmetry ---------------------------------------------------------------------------------

def orthonormal_columns(vectors: np.ndarray, rtol: float | None = None,
                        reference: float = 0.0) -> np.ndarray:
    """Orthonormal basis [P, r] of the span of the columns of ``vectors`` [P, m] (SVD; singular
    values below ``rtol`` × max(the largest, ``reference``), default rtol 1e3·eps·m, are dropped as
    dependent).

    ``reference`` is an absolute level below which a singular value counts as zero whatever the
    others are: the symmetry tangents (W A, H A) of a point at the origin up to the solver's
    tolerance (‖W‖, ‖H‖ ~ 1e-13) are not an orbit; judged only relative to each other they would
    pass as d(d−1)/2 "symmetry directions" pointing anywhere (the orbit of the origin is a point)."""
    vectors = np.asarray(vectors, dtype=np.float64)
    if vectors.size == 0 or vectors.shape[1] == 0:
        return np.zeros((vectors.shape[0], 0))
    U, s, _ = np.linalg.svd(vectors, full_matrices=False)
    if s[0] == 0:
        return np.zeros((vectors.shape[0], 0))
    rtol = 1e3 * np.finfo(np.float64).eps * max(vectors.shape) if rtol is None else rtol
    return U[:, (s > rtol * s[0]) & (s > reference)]


def _orbit_reference(params) -> float:
    """√eps × the point's scale (its norm, at least 1): a rotation tangent below this is the residue
    of a point converged to a zero orbit (a certified solve stops ~g/μ ≲ 1e-10 from it), not a
    symmetry; a true orbit of a non-zero minimiser is O(‖W‖) ≫ √eps except within ~1e-8 of a
    threshold. The margin is wide on both sides, so the count cannot flip with rounding."""
    return math.sqrt(np.finfo(np.float64).eps) * max(
        float(np.linalg.norm(np.asarray(_ravel(params), np.float64))), 1.0)


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
    return orthonormal_columns(np.stack(cols, axis=1) if cols else np.zeros((_ravel(params).size, 0)),
                               reference=_orbit_reference(params))


@symmetry_directions.register(UFM)
@symmetry_directions.register(MultiLabelUFM)
@symmetry_directions.register(SphericalUFM)
def _two_factor_symmetry(problem, params):
    _check_point(problem, params)
    return _two_factor_directions(problem, params, _flat_bias_free(problem))


@symmetry_directions.register(RegressionUFM)
def _regression_symmetry(problem, params):
    _check_point(problem, params)
    return _two_factor_directions(problem, params, False)  # MSE: the bias is not flat


@symmetry_directions.register(DeepUFM)
def _deep_symmetry(problem, params):
    _check_point(problem, params)
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
    return orthonormal_columns(np.stack(cols, axis=1) if cols else np.zeros((_ravel(params).size, 0)),
                               reference=_orbit_reference(params))


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
    _check_point(problem, params)
    num_low = check_int("num_low", num_low, low=0)
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
    _check_point(problem, params)
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


# ---- matrix-free: the symmetry orbit projected out implicitly ---------------------------------
#
# A rotation group O(d) acting on the right of some factors (X → X Q) and on the left of others
# (Y → Qᵀ Y) has orbit tangents T(A) = (X A, −A Y) for skew A. The projection of a vector v onto
# them solves min_A ‖T(A) − v‖²: G A + A G = M − Mᵀ with G = Σ XᵀX + Σ Y Yᵀ (d×d) and
# M = Σ Xᵀ V_X − Σ V_Y Yᵀ. In the eigenbasis of G = U Λ Uᵀ the solution is Ã_ij = C̃_ij/(λ_i + λ_j):
# a d×d problem, never a [P, d(d−1)/2] basis. Pairs with λ_i + λ_j ≈ 0 (the stabiliser of the
# point's row space) are dropped, with the rank rule of :func:`orthonormal_columns`.

def _rotation_groups(problem, params):
    """[(right factor leaf indices, left factor leaf indices, d), ...] of the problem's rotation
    groups, indices into ``jax.tree.leaves(params)``."""
    leaves = jax.tree.leaves(params)
    if isinstance(problem, DeepUFM):
        L = len(params.Ws)
        groups = [([0, 1], [], params.H.shape[1])]  # leaves: H, W_1 … W_L, (b)
        if problem.activation == "identity":
            groups += [([1 + l], [l], params.Ws[l].shape[1]) for l in range(1, L)]
        return groups
    if isinstance(problem, (UFM, MultiLabelUFM, SphericalUFM, RegressionUFM)):
        return [([0, 1], [], leaves[0].shape[1])]
    raise NotImplementedError(f"no symmetry is registered for {type(problem).__name__}")


def _bias_is_flat(problem, params) -> bool:
    """Whether mean(b) is a flat direction (decided in Python: λ_b is a leaf, the answer static)."""
    if isinstance(problem, RegressionUFM) or getattr(params, "b", None) is None:
        return False
    return _flat_bias_free(problem)


def _symmetry_rtol(problem, params) -> float:
    P = int(sum(np.size(x) for x in jax.tree.leaves(params)))
    s = sum(d * (d - 1) // 2 for _, _, d in _rotation_groups(problem, params))
    # the params' own precision (float32 resolves a zero singular value only to ~eps32·s_max), as
    # a Python float: a NumPy float64 would promote float32 arithmetic (refused under strict)
    eps = float(np.finfo(jnp.result_type(*jax.tree.leaves(params))).eps)
    return 1e3 * eps * max(P, s + 1)


def _group_factor(leaves, right, left):
    """The rows [X_1; …; Y_1ᵀ; …] whose Gram is G = Σ XᵀX + Σ Y Yᵀ: its SVD resolves the orbit's
    singular values to eps (an eigh of G only to √eps)."""
    return jnp.concatenate([leaves[i] for i in right] + [leaves[j].T for j in left], axis=0)


def _pair_mask(s, rtol):
    """Pairs i ≠ j whose orbit direction has singular value √(s_i² + s_j²) above rtol × the
    largest (s: singular values of the group factor)."""
    q = s[:, None] ** 2 + s[None, :] ** 2
    off = ~jnp.eye(s.size, dtype=bool)
    top = jnp.max(jnp.where(off, q, -jnp.inf)) if s.size > 1 else 0.0
    return off & (q > (rtol ** 2) * jnp.maximum(top, 0.0)) & (q > 0)


def _make_orbit_projector(problem, params, bias_flat: bool):
    """(v ↦ component of v along the symmetry orbit, orbit dimension) for pytrees v; traceable.
    ``bias_flat``: :func:`_bias_is_flat` (static)."""
    leaves = jax.tree.leaves(params)
    treedef = jax.tree.structure(params)
    groups = _rotation_groups(problem, params)
    rtol = _symmetry_rtol(problem, params)
    bias_leaf = len(leaves) - 1 if bias_flat else None
    coupled = len(groups) > 1
    if not coupled:
        right, left, d = groups[0]
        _, sv, Vt = jnp.linalg.svd(_group_factor(leaves, right, left), full_matrices=False)
        if sv.size < d:  # fewer rows than d: the missing singular values are exact zeros
            sv = jnp.concatenate([sv, jnp.zeros(d - sv.size, sv.dtype)])
            Vt = jnp.linalg.svd(_group_factor(leaves, right, left), full_matrices=True)[2]
        U = Vt.T
        mask = _pair_mask(sv, rtol)
        denom = jnp.where(mask, sv[:, None] ** 2 + sv[None, :] ** 2, 1.0)
        dim = jnp.sum(mask) // 2

        def along(v):
            vl = jax.tree.leaves(v)
            M = sum(leaves[i].T @ vl[i] for i in right) - sum(vl[j] @ leaves[j].T for j in left)
            C = U.T @ (M - M.T) @ U
            A = U @ jnp.where(mask, C / denom, 0.0) @ U.T
            out = [jnp.zeros_like(x) for x in vl]
            for i in right:
                out[i] = leaves[i] @ A
            for j in left:
                out[j] = -A @ leaves[j]
            if bias_leaf is not None:
                out[bias_leaf] = jnp.full_like(vl[bias_leaf], jnp.mean(vl[bias_leaf]))
            return jax.tree.unflatten(treedef, out)
    else:
        # Coupled groups (deep linear: W_l appears in two of them): the normal equations in the
        # stacked skew coordinates, a small dense Gram (Σ d_l(d_l−1)/2 square) built once.
        sizes = [d * (d - 1) // 2 for _, _, d in groups]
        tri = [np.triu_indices(d, 1) for _, _, d in groups]

        def tangent(c):
            out = [jnp.zeros_like(x) for x in leaves]
            start = 0
            for (right, left, d), (iu, ju), s in zip(groups, tri, sizes):
                A = jnp.zeros((d, d), leaves[0].dtype).at[iu, ju].set(c[start:start + s],
                                                                       unique_indices=True)
                A = A - A.T
                start += s
                for i in right:
                    out[i] = out[i] + leaves[i] @ A
                for j in left:
                    out[j] = out[j] - A @ leaves[j]
            return out

        total = sum(sizes)
        zero_c = jnp.zeros(total, leaves[0].dtype)
        tangent_T = jax.linear_transpose(tangent, zero_c)

        def gram_col(e):
            return tangent_T(tangent(e))[0]

        Gm = jax.lax.map(gram_col, jnp.eye(total, dtype=leaves[0].dtype), batch_size=64)
        sig, V = jnp.linalg.eigh((Gm + Gm.T) / 2)
        # The Gram's eigenvalues are squared singular values, resolved to eps·max: a rank rule at
        # that level (exact constructions have exact zeros; nonzero orbit directions are O(1)).
        keep = sig > 1e3 * np.finfo(np.float64).eps * total * jnp.max(sig)
        inv = jnp.where(keep, 1.0 / jnp.where(keep, sig, 1.0), 0.0)
        dim = jnp.sum(keep)

        def along(v):
            vl = jax.tree.leaves(v)
            c = V @ (inv * (V.T @ tangent_T(vl)[0]))
            out = tangent(c)
            if bias_leaf is not None:
                out[bias_leaf] = jnp.full_like(vl[bias_leaf], jnp.mean(vl[bias_leaf]))
            return jax.tree.unflatten(treedef, out)

    return along, dim + (0 if bias_leaf is None else 1)


@functools.partial(jax.jit, static_argnames=("bias_flat",))
def _symmetry_dimension_jit(problem, params, bias_flat):
    return _make_orbit_projector(problem, params, bias_flat)[1]


def symmetry_dimension(problem, params: PyTree) -> int:
    """Dimension of the problem's continuous symmetry orbit through ``params``, without forming a
    basis (the matrix-free counterpart of ``symmetry_directions(problem, params).shape[1]``).

    Two-factor models: d(d−1)/2 − (d−r)(d−r−1)/2 with r the rank of the rows of [W; H], plus 1 for
    the flat mean(b) of a free bias under a softmax loss. Deep models: the rank of the orbit map of
    the input rotation and, with the identity activation, of every hidden-layer rotation.

    Examples:
        >>> import jax, ufm
        >>> p = ufm.UFM(3, 2, 4, ufm.losses.CrossEntropy(), 1e-2, 1e-2)
        >>> symmetry_dimension(p, p.init(jax.random.key(0)))  # 4·3/2 rotations + mean(b)
        7
    """
    _check_point(problem, params)
    return int(_symmetry_dimension_jit(problem, params, _bias_is_flat(problem, params)))


def _complement_ops(problem, params, locked, bias_flat):
    """(proj, hess): proj maps a flat vector onto the tangent space minus the symmetry orbit and
    minus the span of the rows of ``locked`` [k, P] (zero rows are no-ops); hess is the flat HVP."""
    manifold = problem.manifold
    _, unravel = jax.flatten_util.ravel_pytree(params)
    egrad, hess_tree = riemannian_hessian_operator(problem, params)
    along, _ = _make_orbit_projector(problem, params, bias_flat)

    def tangent(v):
        return _ravel(manifold.projection(params, unravel(v)))

    def proj(v, symmetry=True):
        v = tangent(v)
        if symmetry:
            v = v - _ravel(along(unravel(v)))
        return v - locked.T @ (locked @ v)

    def hess(v):
        return _ravel(hess_tree(unravel(v)))

    return proj, hess, egrad


def _lanczos(op, start, num_matvecs, restart):
    """Lanczos with full reorthogonalisation, breakdown-safe: (tridiagonal J [m, m], basis Q [m, P]).

    matfree's ``tridiag_sym`` divides by β = 0 when the Krylov space of ``start`` is invariant
    (an operator with fewer distinct eigenvalues than steps, e.g. c·I at a deep ReLU origin): NaN
    Ritz values, or garbage ones (a scale 600× too large) when β is rounding noise. Here a β below
    rounding (relative to ‖A q‖) ends the block: β = 0 in J and the next vector is ``restart(i)``
    orthogonalised against Q, so J stays exactly Qᵀ A Q (its new block is decoupled, with zero
    weight on e₁ for quadrature)."""
    P = start.shape[0]
    dtype = start.dtype
    tiny = 1e3 * jnp.finfo(dtype).eps

    def orth(w, Q):
        w = w - Q.T @ (Q @ w)
        return w - Q.T @ (Q @ w)

    def body(i, carry):
        Q, alpha, beta, q = carry
        Q = Q.at[i].set(q)
        w = op(q)
        a = jnp.dot(q, w)
        scale_w = jnp.linalg.norm(w)
        w = orth(w, Q)
        b = jnp.linalg.norm(w)
        broken = b <= tiny * jnp.maximum(scale_w, jnp.abs(a))

        def fresh(_):  # only on a breakdown: the restart costs two more passes over Q
            r = orth(orth(restart(i), Q), Q)
            return r / jnp.maximum(jnp.linalg.norm(r), jnp.finfo(dtype).tiny)

        nxt = jax.lax.cond(broken, fresh, lambda _: w / jnp.where(broken, 1.0, b), None)
        return Q, alpha.at[i].set(a), beta.at[i].set(jnp.where(broken, 0.0, b)), nxt

    q0 = start / jnp.linalg.norm(start)
    init = (jnp.zeros((num_matvecs, P), dtype), jnp.zeros(num_matvecs, dtype),
            jnp.zeros(num_matvecs, dtype), q0)
    Q, alpha, beta, _ = jax.lax.fori_loop(0, num_matvecs, body, init)
    off = beta[:-1]
    J = jnp.diag(alpha) + jnp.diag(off, 1) + jnp.diag(off, -1)
    return J, Q


@functools.partial(jax.jit, static_argnames=("num_matvecs", "num_keep", "symmetry", "bias_flat"))
def _lanczos_cycle(problem, params, v0, locked, sign, shift, num_matvecs, num_keep, symmetry,
                   bias_flat):
    """One Lanczos run (:func:`_lanczos`, full reorthogonalisation) on
    A = sign·(Pc Hess Pc) + shift·(I − Pc), Pc the projector onto the complement (tangent space
    minus symmetry orbit minus ``locked``): the removed directions sit at ``shift``, away from the
    end being sought. Returns every Ritz value (ascending), the ``num_keep`` lowest Ritz vectors
    [num_keep, P] and their explicit residual norms ‖A y − θ y‖ (one more product each)."""
    proj, hess, _ = _complement_ops(problem, params, locked, bias_flat)

    def op(v):
        pv = proj(v, symmetry)
        return sign * proj(hess(pv), symmetry) + shift * (v - pv)

    start = proj(v0, symmetry)
    key = jax.random.key(0)
    J, Q = _lanczos(op, start, num_matvecs,
                    lambda i: proj(jax.random.normal(jax.random.fold_in(key, i), start.shape,
                                                     start.dtype), symmetry))
    theta, S = jnp.linalg.eigh(J)
    Y = S[:, :num_keep].T @ Q  # only the wanted Ritz vectors: num_keep × P, not m × P
    Y = Y / jnp.linalg.norm(Y, axis=1, keepdims=True)
    R = jax.lax.map(op, Y) - theta[:num_keep, None] * Y  # one product at a time (memory)
    return theta, Y, jnp.linalg.norm(R, axis=1)


@dataclasses.dataclass(frozen=True)
class Eigenpairs:
    """Extreme eigenpairs of the (Riemannian) Hessian from Hessian-vector products.

    Attributes:
        eigenvalues: ascending (``which="smallest"``) or descending (``"largest"``), [k].
        vectors: [k, P] flat unit tangent eigenvectors (``ravel_pytree`` order); ``tree(i)``
            gives the i-th as a parameter pytree.
        residuals: ‖Hess y − θ y‖ of each pair: an eigenvalue lies within it (Weinstein's bound).
        scale: largest eigenvalue magnitude found (the Hessian's scale).
        tol: the residual each pair was required to meet (``rtol × scale``).
        converged: whether every pair met ``tol``.
        num_symmetry: dimension of the symmetry orbit removed (0 with ``symmetry=False``).
        num_hvps: Hessian-vector products used.
    """

    eigenvalues: np.ndarray
    vectors: np.ndarray
    residuals: np.ndarray
    scale: float
    tol: float
    converged: bool
    num_symmetry: int
    num_hvps: int
    unravel: object = dataclasses.field(repr=False, compare=False, default=None)

    def tree(self, i: int) -> PyTree:
        """The i-th eigenvector as a parameter pytree."""
        return self.unravel(jnp.asarray(self.vectors[i]))


def _complement_dim(problem, params, num_symmetry) -> int:
    return int(problem.manifold.dim(params)) - int(num_symmetry)


def extreme_eigenpairs(problem, params: PyTree, k: int = 4, *, which: str = "smallest",
                       symmetry: bool = True, rtol: float | None = None, num_matvecs: int | None = None,
                       max_cycles: int = 60, seed: int = 0, scale: float | None = None) -> Eigenpairs:
    """The k smallest (or largest) eigenvalues of the tangent Hessian with eigenvectors,
    matrix-free: restarted Lanczos (:func:`_lanczos`, full reorthogonalisation, breakdown-safe)
    with locking of converged pairs, so repeated eigenvalues are found with their multiplicity.

    With ``symmetry`` the symmetry orbit is projected out implicitly (a d×d solve per product,
    nothing P×s), and so is the normal space of a manifold. Each returned pair has residual
    ‖Hess y − θ y‖ ≤ ``rtol`` × scale (``converged``), so an eigenvalue lies within that distance
    of θ. One compilation per problem shape serves every cycle.

    Args:
        k: number of eigenpairs (≥ 1).
        which: "smallest" or "largest".
        symmetry: remove the symmetry orbit (True) or keep its zero eigenvalues (False).
        rtol: residual tolerance relative to the Hessian's scale, in (0, 1); default (None)
            max(1e-10, 1e3·eps) of the params' dtype (float32: 1.2e-4, which it can reach).
        num_matvecs: Lanczos steps per cycle (memory: num_matvecs × P floats); default 128 up
            to 200,000 parameters, 64 above (a dense low end converges in far fewer products
            with the longer cycles).
        max_cycles: restarts allowed before returning unconverged pairs.
        scale: the Hessian's largest eigenvalue magnitude, if known (else estimated first).

    Examples:
        >>> import jax, ufm
        >>> p = ufm.UFM(3, 2, 3, ufm.losses.CrossEntropy(), 0.1, 0.1)
        >>> origin = p.params(jax.numpy.zeros((3, 3)), jax.numpy.zeros((6, 3)), jax.numpy.zeros(3))
        >>> e = extreme_eigenpairs(p, origin, k=1)
        >>> e.converged, round(float(e.eigenvalues[0]), 10)  # λ_W = λ_H = 0.1: 0.1 − 1/(K√n)
        (True, -0.1357022604)
    """
    _check_point(problem, params)
    k = check_int("k", k, low=1)
    if which not in ("smallest", "largest"):
        raise ValueError(f"which must be 'smallest' or 'largest', got {which!r}")
    if not isinstance(symmetry, (bool, np.bool_)):
        raise ValueError(f"symmetry must be True or False, got {symmetry!r}")
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    if rtol is None:  # 1e-10, or what the params' precision can reach (float32: 1.2e-4)
        rtol = max(1e-10, 1e3 * float(np.finfo(flat.dtype).eps))
    if not (isinstance(rtol, (int, float)) and 0 < rtol < 1):
        raise ValueError(f"rtol must be a number in (0, 1), got {rtol!r}")
    P = int(flat.size)
    num_matvecs = (128 if P <= 200_000 else 64) if num_matvecs is None else num_matvecs
    num_matvecs = check_int("num_matvecs", num_matvecs, low=2)
    max_cycles = check_int("max_cycles", max_cycles, low=1)
    bias_flat = _bias_is_flat(problem, params)
    num_sym = int(_symmetry_dimension_jit(problem, params, bias_flat)) if symmetry else 0
    dim_c = _complement_dim(problem, params, num_sym)
    if k > dim_c:
        raise ValueError(f"k must be <= {dim_c} (the dimension of the tangent space"
                         f"{' minus the symmetry orbit' if symmetry else ''}), got {k}")
    m = int(min(num_matvecs, max(dim_c, 1)))
    rng = np.random.default_rng(seed)
    dtype = flat.dtype
    locked = jnp.zeros((k, P), dtype)
    hvps = 0

    keep = int(min(m, k + 4))

    def cycle(v0, sign, shift, locked_now):
        nonlocal hvps
        theta, Y, res = _lanczos_cycle(problem, params, jnp.asarray(v0, dtype), locked_now,
                                       jnp.asarray(sign, dtype), jnp.asarray(shift, dtype), m, keep,
                                       symmetry, bias_flat)
        hvps += m + keep  # Lanczos products + the explicit residuals
        return np.asarray(theta), np.asarray(Y), np.asarray(res)

    if scale is None:  # both ends of the spectrum from one run: the scale and the shift
        theta, _, _ = cycle(rng.standard_normal(P), 1.0, 0.0, locked)
        scale = float(np.max(np.abs(theta)))
    scale = max(float(scale), np.finfo(np.float64).tiny)
    sign = 1.0 if which == "smallest" else -1.0
    shift = 3.0 * scale  # removed directions: far above the wanted (lower) end of sign·Hess
    tol = rtol * scale
    vals, vecs, resid = [], [], []
    v0 = rng.standard_normal(P)
    best = None
    for _ in range(max_cycles):
        if len(vals) == k:
            break
        theta, Y, res = cycle(v0, sign, shift, locked)
        inside = theta[:keep] < 2.0 * scale  # the complement's, not the parked directions
        theta, Y, res = theta[:keep][inside], Y[inside], res[inside]
        j = 0
        while len(vals) < k and j < theta.size and res[j] <= tol:
            vals.append(sign * theta[j])
            vecs.append(Y[j])
            resid.append(res[j])
            locked = locked.at[len(vals) - 1].set(jnp.asarray(Y[j], dtype))
            j += 1
        best = (theta[j:], Y[j:], res[j:])
        # Restart from the wanted Ritz vectors not yet converged (plus a little noise, so that a
        # Krylov space exhausted by a few distinct eigenvalues still sees every direction).
        want = max(1, k - len(vals))
        v0 = (Y[j:j + want].sum(axis=0) if theta.size > j else np.zeros(P))
        v0 = v0 + 1e-3 * np.linalg.norm(v0) / math.sqrt(P) * rng.standard_normal(P) if np.any(v0) \
            else rng.standard_normal(P)
    converged = len(vals) == k
    if not converged and best is not None:  # report the best unconverged Ritz pairs too
        need = k - len(vals)
        vals += list(sign * best[0][:need])
        vecs += list(best[1][:need])
        resid += list(best[2][:need])
    order = np.argsort(np.asarray(vals) * sign)
    vals_a = np.asarray(vals)[order]
    return Eigenpairs(vals_a, np.asarray(vecs)[order], np.asarray(resid)[order],
                      max(scale, float(np.max(np.abs(vals_a))) if vals_a.size else 0.0), tol,
                      converged, num_sym, hvps, unravel)


# ---- classification modulo symmetry -------------------------------------------------------------

VERDICTS = ("local minimum (strict, modulo symmetry)", "strict saddle", "degenerate beyond symmetry")


@dataclasses.dataclass(frozen=True)
class Classification:
    """Second-order classification of a critical point, modulo the model's symmetry.

    Attributes:
        verdict: one of :data:`VERDICTS`: "strict saddle" (an eigenvalue < −tol), else
            "local minimum (strict, modulo symmetry)" (every zero is a symmetry zero), else
            "degenerate beyond symmetry".
        num_negative, num_zero, num_positive: eigenvalue counts of the tangent Hessian (|λ| ≤ tol
            is zero). Dense: all of them. Matrix-free: the zeros are the symmetry dimension plus
            the unexplained zeros among the computed eigenvalues, and ``complete`` says whether
            the counts are exact (the largest computed eigenvalue is above tol) or lower bounds
            (then num_negative + num_zero + num_positive is less than the tangent dimension).
        num_symmetry: dimension of the symmetry orbit (expected zeros).
        num_unexplained_zeros: zeros of the Hessian restricted to the complement of the orbit.
        tol: absolute zero threshold used.
        min_eigenvalue: smallest eigenvalue on the complement of the orbit.
        eigenvalues: complement eigenvalues found (all on the dense path, the k smallest else).
        grad_norm: (Riemannian) gradient norm at the point (the classification assumes it is ~0).
        method: "dense" or "matrix-free"; num_hvps: products used (0 on the dense path).
    """

    verdict: str
    num_negative: int
    num_zero: int
    num_positive: int
    num_symmetry: int
    num_unexplained_zeros: int
    tol: float
    min_eigenvalue: float
    eigenvalues: np.ndarray
    grad_norm: float
    method: str
    complete: bool = True
    num_hvps: int = 0

    def summary(self) -> dict:
        """JSON-friendly fields (the eigenvalues as a list)."""
        out = dataclasses.asdict(self)
        out["eigenvalues"] = np.asarray(self.eigenvalues).tolist()
        return out


def _verdict(lam, tol) -> tuple[str, int]:
    unexplained = int(np.sum(np.abs(lam) <= tol))
    if lam.size and lam[0] < -tol:
        return VERDICTS[1], unexplained
    return (VERDICTS[0] if unexplained == 0 else VERDICTS[2]), unexplained


def _dense_complement(problem, params):
    """(grad, tangent spectrum, complement basis C [P, c], complement eigenpairs) on the dense path."""
    _check_dense(params)
    g, Hm, P = (np.asarray(a, np.float64) for a in _dense_parts(problem, params))
    T = _tangent_basis(problem, P)
    S = symmetry_directions(problem, params)
    PT = np.eye(Hm.shape[0]) if T is None else T @ T.T
    evals_c, evecs_c = np.linalg.eigh(PT - S @ S.T)
    C = evecs_c[:, evals_c > 0.5]
    Hc = C.T @ Hm @ C
    lam, V = np.linalg.eigh((Hc + Hc.T) / 2)
    full = np.linalg.eigvalsh(Hm if T is None else T.T @ Hm @ T)
    return g, full, S.shape[1], C, lam, V


def _grad_norm(problem, params) -> float:
    manifold = problem.manifold
    egrad = jax.grad(problem.value)(params)
    return float(manifold.norm(params, manifold.euclidean_to_riemannian_gradient(params, egrad)))


def classify_critical_point(problem, params: PyTree, *, method: str | None = None,
                            tol: float | None = None, k: int = 6, rtol: float | None = None,
                            seed: int = 0) -> Classification:
    """Classify a critical point by the Hessian spectrum modulo the symmetry orbit.

    Zeros of the tangent Hessian along the model's continuous symmetry are expected
    (:func:`symmetry_dimension` of them); only zeros beyond them, or negative curvature, make a
    point degenerate or a saddle. ``method`` "dense" (default up to :data:`DENSE_MAX` parameters)
    diagonalises the Hessian; "matrix-free" computes the ``k`` smallest eigenvalues on the
    complement of the orbit by Lanczos (:func:`extreme_eigenpairs`), each to a residual
    ``rtol`` × scale. ``tol``: zero threshold relative to the largest eigenvalue magnitude;
    default the certificate's noise level, 1e3·eps·scale + 100·‖grad‖ (plus the Lanczos residual
    bound on the matrix-free path).

    Assumes ``params`` is critical: check ``grad_norm`` (recorded in the result).

    Examples:
        >>> import jax, ufm
        >>> p = ufm.UFM(3, 2, 3, ufm.losses.CrossEntropy(), 0.1, 0.1, lambda_b=0.1)
        >>> c = classify_critical_point(p, origin(p))
        >>> c.verdict, c.num_negative, c.num_symmetry
        ('strict saddle', 6, 0)
        >>> p = ufm.UFM(3, 2, 4, ufm.losses.CrossEntropy(), 1e-2, 1e-2)
        >>> c = classify_critical_point(p, p.params(**ufm.theory.predict(p).construct(seed=0)))
        >>> c.verdict, c.num_zero == c.num_symmetry == 6
        ('local minimum (strict, modulo symmetry)', True)
    """
    _check_point(problem, params)
    size = int(sum(np.size(x) for x in jax.tree.leaves(params)))
    method = method or ("dense" if size <= DENSE_MAX else "matrix-free")
    if method not in ("dense", "matrix-free"):
        raise ValueError(f"method must be 'dense' or 'matrix-free', got {method!r}")
    if tol is not None and not (isinstance(tol, (int, float)) and 0 < tol < 1):
        raise ValueError(f"tol must be a number in (0, 1) (relative to the largest eigenvalue), got {tol!r}")
    eps = _eps(params)
    if method == "dense":
        g, full, num_sym, _, lam, _ = _dense_complement(problem, params)
        grad_norm = float(np.linalg.norm(g))
        scale = max(float(np.max(np.abs(full))) if full.size else 0.0, 1e-300)
        thr = tol * scale if tol is not None else _noise(scale, grad_norm, eps)
        verdict, unexplained = _verdict(lam, thr)
        neg, zero = int(np.sum(full < -thr)), int(np.sum(np.abs(full) <= thr))
        return Classification(verdict, neg, zero, int(full.size) - neg - zero, num_sym, unexplained,
                              float(thr), float(lam[0]) if lam.size else math.nan, lam, grad_norm,
                              "dense")
    k = check_int("k", k, low=1)
    e = extreme_eigenpairs(problem, params, k=k, rtol=rtol, seed=seed)
    grad_norm = _grad_norm(problem, params)
    lam, scale = np.asarray(e.eigenvalues), e.scale
    thr = (tol * scale if tol is not None else _noise(scale, grad_norm, eps)) + float(np.max(e.residuals))
    verdict, unexplained = _verdict(lam, thr)
    neg = int(np.sum(lam < -thr))
    complete = bool(e.converged and lam[-1] > thr)
    dim = int(problem.manifold.dim(params))
    zero = e.num_symmetry + unexplained
    # Complete: every eigenvalue not computed lies above the largest computed one, > tol. Else the
    # rest is unknown, and dim − neg − zero would overcount the positives (85 for 71 at a group
    # ETF saddle): the computed positives are the lower bound, as for the other two counts.
    pos = dim - neg - zero if complete else int(np.sum(lam > thr))
    return Classification(verdict, neg, zero, pos, e.num_symmetry, unexplained,
                          float(thr), float(lam[0]), lam, grad_norm, "matrix-free", complete,
                          e.num_hvps)


def escape_direction(problem, params: PyTree, *, method: str | None = None,
                     seed: int = 0) -> tuple[float, PyTree]:
    """(λ, v): the smallest eigenvalue of the Hessian on the tangent space minus the symmetry
    orbit and its unit eigenvector v, a tangent pytree (a descent direction of curvature λ < 0 at
    a strict saddle). Dense up to :data:`DENSE_MAX` parameters, Lanczos above."""
    _check_point(problem, params)
    size = int(sum(np.size(x) for x in jax.tree.leaves(params)))
    method = method or ("dense" if size <= DENSE_MAX else "matrix-free")
    if method not in ("dense", "matrix-free"):
        raise ValueError(f"method must be 'dense' or 'matrix-free', got {method!r}")
    _, unravel = jax.flatten_util.ravel_pytree(params)
    if method == "dense":
        _, _, _, C, lam, V = _dense_complement(problem, params)
        return float(lam[0]), unravel(jnp.asarray(C @ V[:, 0]))
    e = extreme_eigenpairs(problem, params, k=1, seed=seed)
    return float(e.eigenvalues[0]), e.tree(0)


def escape_step(problem, params: PyTree, *, method: str | None = None,
                steps=(1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0)) -> PyTree:
    """A point below a strict saddle: the lowest of R_x(±t v) over t ∈ ‖x‖·``steps`` (at least
    1·``steps`` at the origin), v from :func:`escape_direction`, R the manifold's retraction.

    Raises:
        ValueError: if the point has no negative curvature, or no step lowers the objective.
    """
    _check_point(problem, params)
    try:
        steps = tuple(float(t) for t in steps)
    except (TypeError, ValueError):
        raise ValueError(f"steps must be a sequence of numbers > 0, got {steps!r}") from None
    if not steps or not all(math.isfinite(t) and t > 0 for t in steps):
        raise ValueError(f"steps must be a non-empty sequence of finite numbers > 0 (both signs "
                         f"are tried), got {steps!r}")
    lam, v = escape_direction(problem, params, method=method)
    if not lam < 0:
        raise ValueError(f"no negative curvature at this point (smallest eigenvalue {lam:.3g}): "
                         "nothing to escape")
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    vflat = _ravel(v)
    size = max(float(jnp.linalg.norm(flat)), 1.0)
    value = float(problem.value(params))
    best, best_value = None, value
    for t in steps:
        for sgn in (1.0, -1.0):
            x = problem.manifold.retraction(params, unravel(sgn * size * t * vflat))
            f = float(problem.value(x))
            if math.isfinite(f) and f < best_value:
                best, best_value = x, f
    if best is None:
        raise ValueError("no step along the negative-curvature direction lowers the objective")
    return best


# ---- known critical points ------------------------------------------------------------------------
#
# Constructors of critical points with closed-form values (docs/theory/landscape.md). Each
# returns parameters of the problem; the tests check stationarity and the predicted value.

def _require_balanced(problem, what):
    if not getattr(problem, "balanced", True):
        raise ValueError(f"{what} needs balanced classes (num_per_class an integer), got "
                         f"num_per_class={problem.num_per_class!r}")


def _mse_bias_origin(problem):
    """The MSE bias at W = H = 0: b_k = π_k/(1 + λ_b), π_k = n_k/N the class frequency
    (1/(K(1+λ_b)) balanced), the minimiser of (1/2N)Σ_i‖b − y_i‖² + (λ_b/2)‖b‖²."""
    freq = np.asarray(problem.counts, np.float64) / problem.num_samples
    return freq / (1.0 + float(problem.lambda_b))


def _check_origin_bias(problem):
    """At W = H = 0 a softmax loss's bias must solve softmax(b) − π + λ_b b = 0: b = 0 only for
    balanced classes (π uniform); imbalanced it has no closed form here, and b = 0 is not critical."""
    if problem.bias and not isinstance(problem.loss, MSE) and not problem.balanced:
        raise ValueError(f"origin with a bias under {type(problem.loss).__name__} needs balanced "
                         f"classes (the critical bias at W = H = 0 solves softmax(b) − π + λ_b b = 0, "
                         f"b = 0 only for uniform π), got num_per_class={problem.num_per_class!r}")


def origin(problem) -> PyTree:
    """The origin of a two-factor or deep model, the critical point W = H = 0 (b = b₀1 with
    b₀ = 1/(K(1+λ_b)) for MSE with a bias, b_k = (n_k/N)/(1+λ_b) with imbalanced classes,
    b = mean(Y) for regression, else b = 0; a bias under a softmax loss with imbalanced classes is
    refused: its critical value has no closed form here).

    Below the threshold of a two-factor model (Kτ < g₀) it is a strict saddle with smallest
    eigenvalue :func:`origin_smallest_eigenvalue`; for deep models (L ≥ 2) a strict local minimum.

    Examples:
        >>> import ufm
        >>> x = origin(ufm.UFM(3, 2, 3, ufm.losses.MSE(), 0.1, 0.1, lambda_b=1.0))
        >>> x.b.tolist()  # 1/(K(1 + λ_b))
        [0.16666666666666666, 0.16666666666666666, 0.16666666666666666]
    """
    if isinstance(problem, DeepUFM):
        _check_origin_bias(problem)
        x = problem.zeros()
        if x.b is not None and isinstance(problem.loss, MSE):
            x = x._replace(b=jnp.asarray(_mse_bias_origin(problem), x.b.dtype))
        return x
    if isinstance(problem, RegressionUFM):
        Y = jnp.asarray(problem.targets)
        return problem.params(jnp.zeros((problem.target_dim, problem.dim)),
                              jnp.zeros((problem.num_samples, problem.dim)), jnp.mean(Y, axis=0))
    if isinstance(problem, UFM):
        K, N, d = problem.num_classes, problem.num_samples, problem.dim
        _check_origin_bias(problem)
        b = None
        if problem.bias:
            b = jnp.asarray(_mse_bias_origin(problem) if isinstance(problem.loss, MSE) else np.zeros(K),
                            jnp.result_type(float))
        return problem.params(jnp.zeros((K, d)), jnp.zeros((N, d)), b)
    raise ValueError(f"origin is defined for UFM, DeepUFM and RegressionUFM, got {type(problem).__name__}")


def origin_smallest_eigenvalue(problem: UFM) -> float:
    """Smallest Hessian eigenvalue at :func:`origin` of a balanced plain UFM (MSE, CE, LS), from
    the closed form: the (W, H) block gives (λ_W + λ_H)/2 − √(((λ_W − λ_H)/2)² + g₀²/(K²n)), with
    g₀ = 1 (CE, MSE) or 1 − α (LS); the decoupled b block adds λ_b + {0, 1/K} (softmax losses) or
    1 + λ_b (MSE). Focal loss with a bias: NaN (its b block has no closed form here).

    Examples:
        >>> import ufm
        >>> round(origin_smallest_eigenvalue(ufm.UFM(3, 2, 3, ufm.losses.CrossEntropy(), 0.1, 0.1)), 12)
        -0.135702260396
    """
    return _origin_eigenvalues(problem)[0]


def _origin_eigenvalues(problem: UFM) -> tuple[float, float]:
    """(smallest overall, smallest of the (W, H) block) at the origin."""
    from ufm.losses import CrossEntropy, Focal, LabelSmoothing

    if not isinstance(problem, UFM):
        raise ValueError(f"origin_smallest_eigenvalue needs a UFM, got {type(problem).__name__}")
    _require_balanced(problem, "origin_smallest_eigenvalue")
    K, n = problem.num_classes, problem.num_per_class
    lw, lh, lb = float(problem.lambda_W), float(problem.lambda_H), float(problem.lambda_b)
    loss = problem.loss
    if isinstance(loss, (MSE, CrossEntropy)):
        g0 = 1.0
    elif isinstance(loss, LabelSmoothing):
        g0 = 1.0 - float(loss.alpha)
    elif isinstance(loss, Focal):
        from ufm.theory.plain import focal_threshold
        g0 = focal_threshold(K, float(loss.gamma))
    else:
        raise ValueError(f"no closed form at the origin for loss {loss!r}")
    wh = (lw + lh) / 2 - math.sqrt(((lw - lh) / 2) ** 2 + g0 ** 2 / (K * K * n))
    if not problem.bias:
        return wh, wh
    if isinstance(loss, MSE):
        return min(wh, 1.0 + lb), wh
    if isinstance(loss, Focal):
        return math.nan, wh  # the focal b block has no closed form here
    return min(wh, lb), wh


def spherical_antipodal(problem: SphericalUFM, seed: int | None = None) -> PyTree:
    """The spherical strict saddle: W = r_W W_E (simplex ETF), h_{k,i} = −(r_H/r_W) w_k, b = 0.

    Its Riemannian gradient is 0 and F = log(1 + (K−1) exp(sK/(K−1))), s = r_W r_H/T
    (:func:`spherical_antipodal_value`); d ≥ K−1 and balanced classes are needed.
    """
    from ufm.theory.frames import simplex_etf

    if not isinstance(problem, SphericalUFM):
        raise ValueError(f"spherical_antipodal needs a SphericalUFM, got {type(problem).__name__}")
    _require_balanced(problem, "spherical_antipodal")
    K, d, n = problem.num_classes, problem.dim, problem.num_per_class
    if d < K - 1:
        raise ValueError(f"spherical_antipodal needs dim >= K-1 = {K - 1}, got dim={d}")
    rw, rh = float(problem.radius_W), float(problem.radius_H)
    W = rw * simplex_etf(K, d, None if seed is None else np.random.default_rng(seed))
    H = np.repeat(-(rh / rw) * W, n, axis=0)
    return problem.params(W, H, np.zeros(K) if problem.bias else None)


def spherical_antipodal_value(problem: SphericalUFM) -> float:
    """F at :func:`spherical_antipodal`: log(1 + (K−1) exp(sK/(K−1)))."""
    K, s = problem.num_classes, float(problem.inverse_temperature)
    x = s * K / (K - 1)
    return float(x + math.log(math.exp(-x) + (K - 1)))


def group_etf(problem: UFM, num_groups: int, seed: int | None = None) -> PyTree:
    """Rank-deficient ETF critical point of a CE UFM: the K classes merged into G = ``num_groups``
    groups of K/G consecutive classes, each group sharing one ETF vector of a G-simplex (rank
    G−1), features self-dual (H̄ = βWᵀ), b = 0.

    By the permutation symmetry within and across groups the gradient lies in the family, where
    F(t) = log(K/G) + log(1 + (G−1)e^{−t}) + Kτ(G−1)t/G in the logit gap t is stationary at
    t* = log((G−1)(1−κ)/κ), κ = Kτ(G−1)/G, which needs Kτ < 1 (:func:`group_etf_value`).
    G = K is the global minimiser; 2 ≤ G < K are strict saddles (docs/theory/landscape.md).
    """
    from ufm.theory.frames import simplex_etf

    t = _group_etf_gap(problem, num_groups)
    K, n, d, G = problem.num_classes, problem.num_per_class, problem.dim, num_groups
    beta = math.sqrt(float(problem.lambda_W) / (n * float(problem.lambda_H)))
    a = math.sqrt(t * (G - 1) / (G * beta))
    U = simplex_etf(G, d, None if seed is None else np.random.default_rng(seed))
    W = a * np.repeat(U, K // G, axis=0)
    H = np.repeat(beta * W, n, axis=0)
    return problem.params(W, H, np.zeros(K) if problem.bias else None)


def _group_etf_gap(problem, G) -> float:
    from ufm.losses import CrossEntropy

    if not isinstance(problem, UFM) or not isinstance(problem.loss, CrossEntropy):
        raise ValueError(f"group_etf needs a UFM with CrossEntropy(), got {problem!r}")
    _require_balanced(problem, "group_etf")
    K = problem.num_classes
    G = check_int("num_groups", G, low=2, high=K)
    if K % G:
        raise ValueError(f"num_groups must divide num_classes = {K}, got {G}")
    if problem.dim < G - 1:
        raise ValueError(f"group_etf with {G} groups needs dim >= {G - 1}, got dim={problem.dim}")
    lw, lh, n = float(problem.lambda_W), float(problem.lambda_H), problem.num_per_class
    if lw <= 0 or lh <= 0:
        raise ValueError("group_etf needs lambda_W > 0 and lambda_H > 0")
    Ktau = K * math.sqrt(n * lw * lh)
    if Ktau >= 1:
        raise ValueError(f"group_etf exists only below the threshold, Kτ < 1; got Kτ = {Ktau:.6g}")
    kap = Ktau * (G - 1) / G
    return math.log((G - 1) * (1 - kap) / kap)


def group_etf_value(problem: UFM, num_groups: int) -> float:
    """F at :func:`group_etf`: log(K/G) + log(1 + (G−1)e^{−t*}) + Kτ(G−1)t*/G."""
    t = _group_etf_gap(problem, num_groups)
    K, G = problem.num_classes, num_groups
    Ktau = K * math.sqrt(problem.num_per_class * float(problem.lambda_W) * float(problem.lambda_H))
    return math.log(K / G) + math.log1p((G - 1) * math.exp(-t)) + Ktau * (G - 1) * t / G


def deep_partial_rank(problem: DeepUFM, rank: int, branch: str = "min",
                      seed: int | None = None) -> PyTree:
    """Partial-rank critical point of the deep linear MSE model: ``rank`` of the R output
    directions (R = K bias-free, K−1 with a free bias) at the balanced σ of ψ, the others at 0.

    ``branch`` "min": σ = σ_loc, the nonzero local minimiser of ψ (value f_r of
    :func:`ufm.theory.deep.partial_rank_values`); "max": the smaller root of h(σ) = κ (a local
    maximum of ψ along each active direction: a strict saddle), L ≥ 2 only.
    """
    from ufm.theory import deep as deep_theory

    s, R = _deep_partial_sigma(problem, rank, branch)
    K, n, widths, L = problem.num_classes, problem.num_per_class, problem.widths, problem.depth
    lh = float(problem.lambda_H)
    lams = [float(v) for v in np.broadcast_to(np.asarray(problem.lambda_W), (L,))]
    kap = deep_theory.kappa(K, n, lh, lams)
    theta = (kap / K) * s ** (2.0 / (L + 1))
    if problem.bias:
        Q, _ = np.linalg.qr(np.eye(K)[:, :-1] - 1.0 / K)  # orthonormal basis of 1^⊥
        V = Q[:, :rank]
    else:
        V = np.eye(K)[:, :rank]
    rng = None if seed is None else np.random.default_rng(seed)
    O = [_frame(w, rank, rng) for w in widths]
    M1 = math.sqrt(theta / (n * lh)) * V @ O[0].T
    Ws = [math.sqrt(theta / lams[l]) * O[l + 1] @ O[l].T for l in range(L - 1)]
    Ws.append(math.sqrt(theta / lams[-1]) * V @ O[-1].T)
    b = np.full(K, 1.0 / K) if problem.bias else None
    del R
    return problem.params(np.repeat(M1, n, axis=0), Ws, b)


def _frame(d, r, rng):
    from ufm.theory.frames import random_orthonormal

    return random_orthonormal(d, r, rng)


def _deep_partial_sigma(problem, rank, branch):
    from ufm.theory import deep as deep_theory
    from ufm.theory.scalar import bisect_decreasing

    if not isinstance(problem, DeepUFM) or problem.activation != "identity" \
            or not isinstance(problem.loss, MSE):
        raise ValueError(f"deep_partial_rank needs a DeepUFM with MSE() and activation='identity', "
                         f"got {problem!r}")
    _require_balanced(problem, "deep_partial_rank")
    if problem.bias and float(problem.lambda_b) != 0.0:
        raise ValueError("deep_partial_rank with a bias needs lambda_b = 0 (a free bias)")
    K, L = problem.num_classes, problem.depth
    R = K - 1 if problem.bias else K
    rank = check_int("rank", rank, low=0, high=R)
    if min(problem.widths) < rank:
        raise ValueError(f"deep_partial_rank of rank {rank} needs every width >= {rank}, got {problem.widths}")
    if branch not in ("min", "max"):
        raise ValueError(f"branch must be 'min' or 'max', got {branch!r}")
    lams = [float(v) for v in np.broadcast_to(np.asarray(problem.lambda_W), (L,))]
    kap = deep_theory.kappa(K, problem.num_per_class, float(problem.lambda_H), lams)
    if rank == 0:
        return 0.0, R
    if branch == "min":
        s = deep_theory.sigma_local(kap, L)
    else:
        if L < 2:
            raise ValueError("branch='max' needs depth L >= 2 (at L = 1 ψ has one critical point)")
        s0 = deep_theory.sigma_peak(L)
        s = (bisect_decreasing(lambda v: -deep_theory.h(v, L), -kap, 0.0, s0)
             if deep_theory.h(s0, L) > kap else math.nan)
    if math.isnan(s):
        raise ValueError(f"no nonzero critical σ of ψ at κ = {kap:.6g} (needs κ < κ_max = "
                         f"{deep_theory.kappa_max(L):.6g})")
    return s, R


def deep_partial_rank_value(problem: DeepUFM, rank: int, branch: str = "min") -> float:
    """F at :func:`deep_partial_rank`: (r ψ(σ) + (R − r)/2)/K."""
    from ufm.theory import deep as deep_theory

    s, R = _deep_partial_sigma(problem, rank, branch)
    L, K = problem.depth, problem.num_classes
    lams = [float(v) for v in np.broadcast_to(np.asarray(problem.lambda_W), (L,))]
    kap = deep_theory.kappa(K, problem.num_per_class, float(problem.lambda_H), lams)
    return (rank * deep_theory.psi(s, kap, L) + (R - rank) / 2) / K


def known_critical_points(problem) -> dict:
    """Name → (params, predicted value) of the problem's known critical points that exist at
    its hyperparameters (none when a closed form does not apply)."""
    out = {}
    with contextlib.suppress(ValueError):
        if isinstance(problem, (UFM, DeepUFM)):
            out["origin"] = origin(problem)
    if isinstance(problem, UFM) and problem.balanced:
        for G in range(2, problem.num_classes):
            with contextlib.suppress(ValueError):
                out[f"group_etf_{G}"] = group_etf(problem, G)
    if isinstance(problem, SphericalUFM):
        with contextlib.suppress(ValueError):
            out["antipodal"] = spherical_antipodal(problem)
    if isinstance(problem, DeepUFM):
        R = problem.num_classes - (1 if problem.bias else 0)
        for r in range(1, R + 1):
            for branch in ("min", "max"):
                with contextlib.suppress(ValueError):
                    out[f"partial_rank_{r}_{branch}"] = deep_partial_rank(problem, r, branch)
    return out


def known_value(problem, name: str) -> float:
    """The closed-form value of the critical point ``name`` of :func:`known_critical_points`."""
    if name == "origin":
        return float(problem.value(origin(problem)))  # a constant: the loss at zero outputs
    if name.startswith("group_etf_"):
        return group_etf_value(problem, int(name.rsplit("_", 1)[1]))
    if name == "antipodal":
        return spherical_antipodal_value(problem)
    if name.startswith("partial_rank_"):
        _, _, r, branch = name.split("_")
        return deep_partial_rank_value(problem, int(r), branch)
    raise ValueError(f"unknown critical point {name!r}")


# ---- spectral density (stochastic Lanczos quadrature) -------------------------------------------

@dataclasses.dataclass(frozen=True)
class SpectralDensity:
    """Stochastic Lanczos quadrature of the tangent Hessian's spectrum.

    Attributes:
        nodes, weights: [num_probes, m] Ritz values and Gauss weights of each probe (each row of
            weights sums to 1): the spectral measure is their average.
        dim: dimension of the space the operator acts on (the tangent space, minus the symmetry
            orbit with ``symmetry=True``); density × dim counts eigenvalues.
        num_hvps: Hessian-vector products used.
    """

    nodes: np.ndarray
    weights: np.ndarray
    dim: int
    num_hvps: int

    def density(self, grid, width: float) -> np.ndarray:
        """The measure smoothed by a Gaussian of standard deviation ``width`` on ``grid``
        (integrates to 1)."""
        grid = np.asarray(grid, np.float64)
        if not width > 0:
            raise ValueError(f"width must be > 0, got {width!r}")
        z = (grid[:, None] - self.nodes.ravel()[None, :]) / width
        k = np.exp(-0.5 * z ** 2) / (width * math.sqrt(2 * math.pi))
        return k @ self.weights.ravel() / self.nodes.shape[0]

    def mass(self, low: float, high: float) -> float:
        """Fraction of eigenvalues in [low, high] (estimated)."""
        inside = (self.nodes >= low) & (self.nodes <= high)
        return float(np.sum(self.weights * inside) / self.nodes.shape[0])


@functools.partial(jax.jit, static_argnames=("num_matvecs", "symmetry", "bias_flat"))
def _slq(problem, params, probes, num_matvecs, symmetry, bias_flat):
    locked = jnp.zeros((1, probes.shape[1]), probes.dtype)
    proj, hess, _ = _complement_ops(problem, params, locked, bias_flat)
    key = jax.random.key(1)

    def one(z):
        v = proj(z, symmetry)
        J, _ = _lanczos(lambda u: proj(hess(proj(u, symmetry)), symmetry), v, num_matvecs,
                        lambda i: proj(jax.random.normal(jax.random.fold_in(key, i), v.shape,
                                                         v.dtype), symmetry))
        theta, S = jnp.linalg.eigh(J)
        return theta, S[0, :] ** 2

    return jax.lax.map(one, probes)


def spectral_density(problem, params: PyTree, *, num_probes: int = 8, num_matvecs: int = 60,
                     symmetry: bool = False, seed: int = 0) -> SpectralDensity:
    """Spectral density of the tangent Hessian by stochastic Lanczos quadrature (breakdown-safe
    Lanczos on Rademacher probes projected onto the tangent space).

    With ``symmetry=False`` the orbit's zero eigenvalues stay in (a spike at 0 of mass
    num_symmetry/dim); with True they are projected out. Memory: num_matvecs × P floats.

    Examples:
        >>> import jax, ufm
        >>> p = ufm.UFM(3, 2, 4, ufm.losses.CrossEntropy(), 1e-2, 1e-2)
        >>> x = p.params(**ufm.theory.predict(p).construct(seed=0))
        >>> sd = spectral_density(p, x, num_probes=4, num_matvecs=20)
        >>> sd.dim, round(float(sd.weights.sum(axis=1).mean()), 12)
        (39, 1.0)
    """
    _check_point(problem, params)
    num_probes = check_int("num_probes", num_probes, low=1)
    num_matvecs = check_int("num_matvecs", num_matvecs, low=2)
    if not isinstance(symmetry, (bool, np.bool_)):
        raise ValueError(f"symmetry must be True or False, got {symmetry!r}")
    flat, _ = jax.flatten_util.ravel_pytree(params)
    bias_flat = _bias_is_flat(problem, params)
    num_sym = int(_symmetry_dimension_jit(problem, params, bias_flat)) if symmetry else 0
    dim = _complement_dim(problem, params, num_sym)
    m = int(min(num_matvecs, dim))
    probes = jax.random.rademacher(jax.random.key(seed), (num_probes, flat.size), flat.dtype)
    nodes, weights = _slq(problem, params, probes, m, bool(symmetry), bias_flat)
    return SpectralDensity(np.asarray(nodes), np.asarray(weights), dim, num_probes * m)
