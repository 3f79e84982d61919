"""Manifolds of parameters, in pymanopt's vocabulary, acting on pytrees.

Every manifold derives from :class:`Manifold` and provides ``projection`` (ambient vector → tangent
vector at x), ``retraction``, ``projection_to_manifold``, ``euclidean_to_riemannian_gradient``,
``euclidean_to_riemannian_hessian``, ``inner_product`` (also spelled ``inner``), ``norm``,
``transport`` (by projection) and ``dim``. Euclidean space is the trivial manifold, so every
first-order solver in :mod:`ufm.solvers` is Riemannian and reduces to the plain method on
Euclidean problems. Pytree arithmetic goes through ``optax.tree``.

Examples:
    >>> import jax.numpy as jnp
    >>> sphere = Oblique(radius=2.0)
    >>> x = sphere.projection_to_manifold(jnp.array([[3.0, 4.0]]))
    >>> [round(float(v), 6) for v in x[0]]
    [1.2, 1.6]
    >>> sphere.dim(x), Euclidean().dim(x)
    (1, 2)
"""

from __future__ import annotations

import abc
from typing import Any

import jax
import jax.numpy as jnp
import optax

from ufm._types import ArrayLike, PyTree, check_scalar, pytree_dataclass


class Manifold(abc.ABC):
    """The contract every manifold of parameters fulfils (pymanopt's vocabulary).

    Points ``x`` and tangent vectors ``u``, ``v`` are pytrees of the parameters' layout. A
    subclass implements the abstract methods; ``norm``, ``transport`` and ``inner`` have defaults
    in terms of them.

    Attributes:
        is_euclidean: True when the manifold is flat space with the identity projection (the
            solvers that need a Euclidean problem, such as L-BFGS, check it).
    """

    is_euclidean: bool = False

    @abc.abstractmethod
    def dim(self, x: PyTree) -> int:
        """Dimension of the manifold at (the shape of) ``x``: the size of a tangent space."""

    @abc.abstractmethod
    def projection(self, x: PyTree, v: PyTree) -> PyTree:
        """Orthogonal projection P_x(v) of an ambient vector onto the tangent space at x."""

    @abc.abstractmethod
    def retraction(self, x: PyTree, v: PyTree) -> PyTree:
        """R_x(v): the point reached from x along the tangent vector v."""

    @abc.abstractmethod
    def projection_to_manifold(self, x: PyTree) -> PyTree:
        """The nearest point of the manifold to an ambient point x."""

    @abc.abstractmethod
    def euclidean_to_riemannian_gradient(self, x: PyTree, g: PyTree) -> PyTree:
        """grad f(x) from the Euclidean gradient ∇f(x)."""

    @abc.abstractmethod
    def euclidean_to_riemannian_hessian(self, x: PyTree, g: PyTree, hv: PyTree, v: PyTree) -> PyTree:
        """Hess f(x)[v] from ∇f(x) (``g``), ∇²f(x)[v] (``hv``) and the tangent vector ``v``."""

    @abc.abstractmethod
    def inner_product(self, x: PyTree, u: PyTree, v: PyTree):
        """Riemannian metric ⟨u, v⟩_x of two tangent vectors at x."""

    def inner(self, x: PyTree, u: PyTree, v: PyTree):
        """Alias of :meth:`inner_product` (the name the solvers use)."""
        return self.inner_product(x, u, v)

    def norm(self, x: PyTree, v: PyTree):
        """‖v‖_x = √⟨v, v⟩_x."""
        return jnp.sqrt(self.inner_product(x, v, v))

    def transport(self, x: PyTree, y: PyTree, v: PyTree) -> PyTree:
        """Vector transport of v ∈ T_x to T_y, by projection."""
        return self.projection(y, v)


@pytree_dataclass
class Euclidean(Manifold):
    """Flat space: projection is the identity and the retraction is x + v.

    Examples:
        >>> import jax.numpy as jnp
        >>> float(Euclidean().inner_product(None, jnp.ones(3), jnp.arange(3.0)))
        3.0
    """

    is_euclidean = True

    def dim(self, x):
        return optax.tree.size(x)

    def projection(self, x, v):
        return v

    def retraction(self, x, v):
        return optax.tree.add(x, v)

    def projection_to_manifold(self, x):
        return x

    def euclidean_to_riemannian_gradient(self, x, g):
        return g

    def euclidean_to_riemannian_hessian(self, x, g, hv, v):
        return hv

    def inner_product(self, x, u, v):
        return optax.tree.vdot(u, v)

    def norm(self, x, v):
        return optax.tree.norm(v)

    def transport(self, x, y, v):
        return v


@pytree_dataclass
class Oblique(Manifold):
    """Matrices [rows, d] whose rows lie on the sphere of radius ``radius`` (docs/theory/spherical.md).

    Args:
        radius: row norm r > 0 (an array leaf, so radii can be swept under ``vmap``).
    """

    radius: ArrayLike = 1.0

    def __post_init__(self):
        check_scalar("radius", self.radius, low=0.0, low_open=True, high=None, allowed="> 0")

    def _coef(self, x, v):
        return jnp.sum(x * v, axis=-1, keepdims=True) / self.radius ** 2

    def dim(self, x):
        """rows × (d − 1): each row has one constraint."""
        return int(x.size - x.size // x.shape[-1])

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

    def inner_product(self, x, u, v):
        return jnp.vdot(u, v)

    def norm(self, x, v):
        return jnp.linalg.norm(v)


def _is_manifold(m: Any) -> bool:
    return isinstance(m, Manifold)


@pytree_dataclass
class Product(Manifold):
    """Product manifold: ``components`` has the tree layout of the parameters, with a
    :class:`Manifold` where the parameters have an array (``None`` where they have ``None``).

    Examples:
        >>> import jax.numpy as jnp
        >>> M = Product((Oblique(1.0), Euclidean()))
        >>> x = (jnp.array([[1.0, 0.0]]), jnp.zeros(3))
        >>> M.dim(x), M.is_euclidean, Product((Euclidean(), Euclidean())).is_euclidean
        (4, False, True)
    """

    components: Any

    def __post_init__(self):
        leaves = jax.tree.leaves(self.components, is_leaf=_is_manifold)
        bad = [m for m in leaves if not isinstance(m, Manifold)]
        if not leaves or bad:
            raise ValueError(f"components must be a pytree of Manifold instances (None where the "
                             f"parameters have None) with at least one Manifold, got {self.components!r}")

    @property
    def is_euclidean(self) -> bool:
        """True when every component is Euclidean (then the product is flat space)."""
        return all(m.is_euclidean for m in jax.tree.leaves(self.components, is_leaf=_is_manifold))

    def _map(self, method, *trees):
        return jax.tree.map(lambda m, *xs: getattr(m, method)(*xs), self.components, *trees,
                            is_leaf=_is_manifold)

    def dim(self, x):
        return sum(jax.tree.leaves(self._map("dim", x)))

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

    def inner_product(self, x, u, v):
        # Every component's metric is the Euclidean one restricted to its tangent space.
        return optax.tree.vdot(u, v)

    def norm(self, x, v):
        return optax.tree.norm(v)

    def transport(self, x, y, v):
        return self._map("transport", x, y, v)
