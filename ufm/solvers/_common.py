"""Pieces shared by the steppers: Riemannian value-and-gradient and pytree arithmetic."""

from __future__ import annotations

from typing import NamedTuple

import jax

from ufm._types import Array, PyTree


class SolverState(NamedTuple):
    """Every solver's state: its own ``inner`` state plus value and Riemannian gradient at the
    current point (so the driver reads them without evaluating again)."""

    inner: PyTree
    value: Array
    grad: PyTree


class StepInfo(NamedTuple):
    """What a step reports: the value and Riemannian gradient norm at the new point."""

    value: Array
    grad_norm: Array


def value_and_riemannian_grad(problem, params):
    """(F(x), ∇F(x), grad F(x)): value, Euclidean and Riemannian gradients."""
    value, egrad = jax.value_and_grad(problem.value)(params)
    return value, egrad, problem.manifold.euclidean_to_riemannian_gradient(params, egrad)


def riemannian_hessian_operator(problem, params):
    """(∇F(x), v ↦ Hess F(x)[v]): the Euclidean gradient and the Riemannian Hessian operator.

    The gradient is linearised once (``jax.linearize``), so each product costs one JVP. ``v`` is
    projected onto the tangent space first; on Euclidean problems this is the plain Hessian.
    """
    manifold = problem.manifold
    egrad, lin = jax.linearize(jax.grad(problem.value), params)

    def hess(v):
        v = manifold.projection(params, v)
        return manifold.euclidean_to_riemannian_hessian(params, egrad, lin(v), v)

    return egrad, hess


def tree_scale(scale: PyTree, tree: PyTree) -> PyTree:
    """Multiply each block of ``tree`` by the matching scalar of ``scale`` (None blocks stay None)."""
    return jax.tree.map(lambda s, t: s * t, scale, tree)


def info(problem, params, state: SolverState) -> StepInfo:
    return StepInfo(state.value, problem.manifold.norm(params, state.grad))
