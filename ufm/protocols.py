"""The contracts between problems, solvers and the driver, written down as Protocols.

A problem is anything with the members of :class:`Problem` (the five model classes of
:mod:`ufm.problems` are); a solver is anything with the members of :class:`Solver` (the steppers of
:mod:`ufm.solvers` are). :func:`ufm.solve` checks both with ``isinstance`` before tracing. The
manifold contract is the base class :class:`ufm.manifolds.Manifold`.

Examples:
    >>> import ufm
    >>> from ufm.protocols import Problem, Solver
    >>> isinstance(ufm.UFM(3, 2, 3, ufm.losses.MSE(), 1e-2, 1e-2), Problem)
    True
    >>> isinstance(ufm.solvers.LBFGS(), Solver), isinstance(ufm.solvers.LBFGS(), Problem)
    (True, False)
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol, runtime_checkable

from ufm._types import Array, PyTree
from ufm.manifolds import Manifold


@runtime_checkable
class Problem(Protocol):
    """An objective over a pytree of parameters on a manifold.

    Problems are frozen pytree dataclasses: sizes are static fields, hyperparameters array
    leaves (a new λ does not recompile a solve).

    Attributes:
        manifold: a :class:`ufm.manifolds.Manifold` with the parameters' tree layout.
    """

    @property
    def manifold(self) -> Manifold: ...

    def value(self, params: PyTree) -> Array:
        """The objective F(params), a scalar (traceable)."""

    def init(self, key: Array, scale: float = 0.5) -> PyTree:
        """A random starting point on the manifold; its tree structure, shapes and dtype are the
        ones :func:`ufm.solve` accepts."""

    def params(self, *arrays) -> PyTree:
        """Wrap arrays (e.g. ``prediction.construct()``) as this problem's parameters."""

    def step_scale(self, params: PyTree) -> PyTree:
        """Per-block step multipliers (a pytree of scalars of the parameters' layout), the
        preconditioner of solvers with ``scale_blocks`` (N on H for the UFMs)."""

    def config(self) -> dict:
        """JSON-friendly description: enough to rebuild the problem."""


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


@runtime_checkable
class Solver(Protocol):
    """A stepper: says how to take one step; the driver :func:`ufm.solve` owns the loop.

    Solvers are frozen pytree dataclasses whose numeric hyperparameters are array leaves (a new
    learning rate does not recompile) and whose structural choices are static fields. Both
    methods are traced inside the driver's ``lax.while_loop`` and must not raise there; refusals
    (such as L-BFGS on a manifold) happen while tracing ``init``, before any step runs.
    """

    def init(self, problem: Problem, params: PyTree) -> SolverState:
        """The state at ``params``: inner state, F(params) and grad F(params)."""

    def step(self, problem: Problem, params: PyTree, state: SolverState) -> tuple[PyTree, SolverState, StepInfo]:
        """One accepted step: (new params, new state, :class:`StepInfo` at the new params)."""


def describe_missing(obj: Any, protocol: type) -> list[str]:
    """Names of the members of ``protocol`` that ``obj`` lacks (for error messages)."""
    return sorted(n for n in vars(protocol) if not n.startswith("_") and not hasattr(obj, n))
