"""Landscape tools: Hessian-vector products, dense Hessians, extreme eigenvalues, saddles.

For a problem on a manifold the Hessian is the Riemannian one, Hess F(x)[v] =
``manifold.euclidean_to_riemannian_hessian(x, ∇F, ∇²F[v], v)`` with v projected onto the tangent
space. The dense matrix of P∘Hess∘P in ambient coordinates has one extra zero eigenvalue per normal
direction (K + N of them for the spherical UFM, THEORY.md §10.3): :func:`hessian_eigenvalues`
removes them when ``tangent_only=True``.

Examples:
    >>> import jax, ufm
    >>> p = ufm.UFM(3, 2, 3, ufm.losses.MSE(), 0.5, 0.5, bias=False)
    >>> zero = p.params(jax.numpy.zeros((3, 3)), jax.numpy.zeros((6, 3)))
    >>> float(hessian_eigenvalues(p, zero)[0]) > 0  # past the threshold the origin is a minimum
    True
"""

from __future__ import annotations

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np

from ufm._types import Array, PyTree
from ufm.solvers._common import riemannian_hessian_operator


def hvp(problem, params: PyTree, v: PyTree) -> PyTree:
    """(Riemannian) Hessian-vector product at ``params`` along ``v`` (projected onto the tangent
    space first); the operator the second-order solvers use."""
    return riemannian_hessian_operator(problem, params)[1](v)


def hessian(problem, params: PyTree) -> Array:
    """Dense matrix of v ↦ P hvp(P v) in the flattened ambient coordinates (small problems)."""
    flat, unravel = jax.flatten_util.ravel_pytree(params)

    @jax.jit
    def columns(p):
        hess = riemannian_hessian_operator(problem, p)[1]  # linearised once for every column

        def matvec(e):
            return jax.flatten_util.ravel_pytree(problem.manifold.projection(p, hess(unravel(e))))[0]
        return jax.vmap(matvec)(jnp.eye(flat.size, dtype=flat.dtype))

    H = columns(params)
    return (H + H.T) / 2


def hessian_eigenvalues(problem, params: PyTree, tangent_only: bool = True) -> np.ndarray:
    """Ascending eigenvalues of the (Riemannian) Hessian, dense.

    With ``tangent_only`` the eigenvalues belonging to normal directions of the manifold (where
    P∘Hess∘P is zero by construction) are dropped, leaving the spectrum on the tangent space.
    """
    Hm = np.asarray(hessian(problem, params))
    if not tangent_only or getattr(problem.manifold, "is_euclidean", False):
        return np.linalg.eigvalsh(Hm)
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    P = np.asarray(jax.vmap(lambda e: jax.flatten_util.ravel_pytree(
        problem.manifold.projection(params, unravel(e)))[0])(jnp.eye(flat.size, dtype=flat.dtype)))
    evals, evecs = np.linalg.eigh((P + P.T) / 2)
    basis = evecs[:, evals > 0.5]  # orthonormal basis of the tangent space
    return np.linalg.eigvalsh(basis.T @ Hm @ basis)


def smallest_eigenpair(problem, params: PyTree) -> tuple[float, PyTree]:
    """Smallest eigenvalue of the dense (tangent) Hessian and its eigenvector as a pytree."""
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    Hm = np.asarray(hessian(problem, params))
    evals, evecs = np.linalg.eigh(Hm)
    return float(evals[0]), unravel(jnp.asarray(evecs[:, 0]))


def classify_critical_point(problem, params: PyTree, tol: float = 1e-8) -> str:
    """'local minimum (second-order)', 'strict saddle' or 'degenerate' from the Hessian spectrum.

    Assumes ``params`` is critical (check the gradient first); ``tol`` is relative to the largest
    eigenvalue magnitude.
    """
    evals = hessian_eigenvalues(problem, params)
    scale = max(np.max(np.abs(evals)), 1e-300)
    if evals[0] < -tol * scale:
        return "strict saddle"
    return "local minimum (second-order)" if evals[0] > tol * scale else "degenerate"


def escape_direction(problem, params: PyTree) -> tuple[float, PyTree]:
    """A negative-curvature direction (unit tangent eigenvector of the smallest eigenvalue)."""
    return smallest_eigenpair(problem, params)
