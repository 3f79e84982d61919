"""Pieces shared by the steppers: Riemannian value-and-gradient, the Hessian operator and the
block-scale preconditioner. Pytree arithmetic is ``optax.tree``."""

from __future__ import annotations

import jax
import numpy as np
import optax

from ufm._types import PyTree
from ufm.protocols import SolverState, StepInfo

__all__ = ["SolverState", "StepInfo", "value_and_riemannian_grad", "riemannian_hessian_operator",
           "block_scale", "precondition", "info", "check_flag", "optax_promotion"]


def optax_promotion():
    """Scope for calls into optax transforms: standard dtype promotion.

    optax's step counters are int32 whatever ``jax_enable_x64`` says, and it combines them with
    int64 indices (L-BFGS memory) and float hyperparameters (Adam's bias correction), which
    ``jax_numpy_dtype_promotion="strict"`` refuses. Scoped to the optax call only, so the
    library's own arithmetic stays checkable under strict promotion (tests/conftest.py).
    """
    return jax.numpy_dtype_promotion("standard")


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


def block_scale(problem, params, enabled: bool):
    """The metric rescaling S = ``problem.step_scale(params)`` (a pytree of per-block scalars),
    or None (the identity) when ``enabled`` is False."""
    return problem.step_scale(params) if enabled else None


def precondition(scale: PyTree, v: PyTree) -> PyTree:
    """S v: each block of ``v`` times its scalar of ``scale`` (None: the identity). Per-block
    scalars keep tangent vectors tangent."""
    return v if scale is None else optax.tree.mul(scale, v)


def info(problem, params, state: SolverState) -> StepInfo:
    return StepInfo(state.value, problem.manifold.norm(params, state.grad))


def check_flag(name: str, value) -> None:
    """A static switch of a solver must be a real bool (a string 'False' would be truthy)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")
