"""Manifolds of parameters, in pymanopt's vocabulary, acting on pytrees.

A manifold provides ``projection`` (ambient vector → tangent vector), ``retraction``,
``euclidean_to_riemannian_gradient``, ``euclidean_to_riemannian_hessian``, ``inner``, ``norm`` and
``transport`` (by projection). Euclidean space is the trivial manifold, so every first-order
solver in :mod:`ufm.solvers` is Riemannian and reduces to the plain method on Euclidean problems.

Examples:
    >>> import jax.numpy as jnp
    >>> sphere = Oblique(radius=2.0)
    >>> x = sphere.projection_to_manifold(jnp.array([[3.0, 4.0]]))
    >>> [round(float(v), 6) for v in x[0]]
    [1.2, 1.6]
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from ufm._types import ArrayLike, PyTree, check_scalar


def _tree_vdot(u: PyTree, v: PyTree):
    leaves = [jnp.vdot(a, b) for a, b in zip(jax.tree.leaves(u), jax.tree.leaves(v))]
    return sum(leaves) if leaves else jnp.asarray(0.0)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Euclidean:
    """Flat space: projection is the identity and the retraction is x + v."""

    is_euclidean = True

    def projection(self, x, v):
        return v

    def retraction(self, x, v):
        return jax.tree.map(lambda a, b: a + b, x, v)

    def projection_to_manifold(self, x):
        return x

    def euclidean_to_riemannian_gradient(self, x, g):
        return g

    def euclidean_to_riemannian_hessian(self, x, g, hv, v):
        return hv

    def inner(self, x, u, v):
        return _tree_vdot(u, v)

    def norm(self, x, v):
        return jnp.sqrt(self.inner(x, v, v))

    def transport(self, x, y, v):
        return v


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Oblique:
    """Matrices [rows, d] whose rows lie on the sphere of radius ``radius`` (THEORY.md §6).

    Args:
        radius: row norm r > 0 (an array leaf, so radii can be swept under ``vmap``).
    """

    radius: ArrayLike = 1.0
    is_euclidean = False

    def __post_init__(self):
        check_scalar("radius", self.radius, low=0.0, low_open=True, high=None, allowed="> 0")

    def _coef(self, x, v):
        return jnp.sum(x * v, axis=-1, keepdims=True) / self.radius ** 2

    def projection(self, x, v):
        """P_x(v) = v − (⟨x, v⟩/r²) x, row by row."""
        return v - self._coef(x, v) * x

    def projection_to_manifold(self, x):
        return self.radius * x / jnp.linalg.norm(x, axis=-1, keepdims=True)

    def retraction(self, x, v):
        """R_x(v) = r (x + v)/‖x + v‖ (a second-order retraction)."""
        return self.projection_to_manifold(x + v)

    def euclidean_to_riemannian_gradient(self, x, g):
        return self.projection(x, g)

    def euclidean_to_riemannian_hessian(self, x, g, hv, v):
        """Hess f(x)[v] = P_x(∇²f(x)[v]) − (⟨x, ∇f(x)⟩/r²) v for tangent v."""
        return self.projection(x, hv) - self._coef(x, g) * v

    def inner(self, x, u, v):
        return jnp.vdot(u, v)

    def norm(self, x, v):
        return jnp.linalg.norm(v)

    def transport(self, x, y, v):
        return self.projection(y, v)


_MANIFOLD_TYPES = (Euclidean, Oblique)


def _is_manifold(m: Any) -> bool:
    return isinstance(m, _MANIFOLD_TYPES) or isinstance(m, Product)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Product:
    """Product manifold: ``components`` has the tree layout of the parameters, with a manifold
    where the parameters have an array (``None`` where they have ``None``)."""

    components: Any
    is_euclidean = False

    def _map(self, method, *trees):
        return jax.tree.map(lambda m, *xs: getattr(m, method)(*xs), self.components, *trees,
                            is_leaf=_is_manifold)

    def projection(self, x, v):
        return self._map("projection", x, v)

    def retraction(self, x, v):
        return self._map("retraction", x, v)

    def projection_to_manifold(self, x):
        return self._map("projection_to_manifold", x)

    def euclidean_to_riemannian_gradient(self, x, g):
        return self._map("euclidean_to_riemannian_gradient", x, g)

    def euclidean_to_riemannian_hessian(self, x, g, hv, v):
        return self._map("euclidean_to_riemannian_hessian", x, g, hv, v)

    def inner(self, x, u, v):
        return _tree_vdot(u, v)

    def norm(self, x, v):
        return jnp.sqrt(self.inner(x, u=v, v=v))

    def transport(self, x, y, v):
        return self._map("transport", x, y, v)
