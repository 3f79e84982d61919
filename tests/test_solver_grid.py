"""Every solver on every zoo problem it supports reaches a finite point with a lower value, on
the problem's manifold; L-BFGS refuses manifolds cleanly. The default run covers every problem
and every solver once each (a diagonal of the grid: each solve compiles its own program); the
whole grid is ``slow``."""

import jax
import numpy as np
import pytest

import ufm
from ufm.protocols import Problem, Solver

from helpers import ZOO_NAMES, zoo

ON_MANIFOLD = 1e-12
SOLVERS = {
    "gd": lambda: ufm.solvers.GradientDescent(0.02),
    "gd-nesterov": lambda: ufm.solvers.GradientDescent(0.02, momentum=0.5, nesterov=True),
    "adam": lambda: ufm.solvers.Adam(1e-2),
    "lbfgs": lambda: ufm.solvers.LBFGS(),
    "rgd": lambda: ufm.solvers.RiemannianGradientDescent(),
    "trust-region": lambda: ufm.solvers.TrustRegion(),
}
STEPS = 25


def _supports(solver_name, problem):
    return solver_name != "lbfgs" or problem.manifold.is_euclidean


@jax.jit
def _measure(problem, x):
    """(F(x), ‖grad F(x)‖), compiled once per problem (eager evaluation compiles op by op)."""
    value, egrad = jax.value_and_grad(problem.value)(x)
    return value, problem.manifold.norm(x, problem.manifold.euclidean_to_riemannian_gradient(x, egrad))


def _check(problem_name, solver_name):
    problem, solver = zoo(problem_name), SOLVERS[solver_name]()
    assert isinstance(problem, Problem) and isinstance(solver, Solver)
    start = problem.init(jax.random.key(3))
    f0 = float(_measure(problem, start)[0])
    sol = ufm.solve(problem, solver, start, max_steps=STEPS, gtol=1e-12)
    leaves = [np.asarray(x) for x in jax.tree.leaves(sol.params)]
    assert sol.status_name in ("converged", "max_steps", "stalled"), sol.status_name
    assert all(np.all(np.isfinite(x)) for x in leaves) and np.isfinite(float(sol.value))
    assert float(sol.value) < f0, (f0, float(sol.value))
    # The reported value and gradient norm are the ones of the returned point.
    value, grad_norm = _measure(problem, sol.params)
    assert float(sol.value) == pytest.approx(float(value), rel=1e-12, abs=1e-15)
    assert float(sol.grad_norm) == pytest.approx(float(grad_norm), rel=1e-8, abs=1e-14)
    # Still on the manifold (a no-op on flat space).
    back = problem.manifold.projection_to_manifold(sol.params)
    for a, b in zip(jax.tree.leaves(back), leaves):
        np.testing.assert_allclose(np.asarray(a), b, rtol=0, atol=ON_MANIFOLD)


def _diagonal():
    """(problem, solver) pairs covering every problem and every solver: problem i gets the i-th
    solver (cyclically) among those that support it."""
    names = list(SOLVERS)
    pairs = []
    for i, p in enumerate(ZOO_NAMES):
        candidates = [names[(i + j) % len(names)] for j in range(len(names))]
        pick = next(s for s in candidates if s != "lbfgs" or not p.startswith("spherical"))
        pairs.append((p, pick))
    return pairs


def test_diagonal_covers_every_problem_and_solver():
    pairs = _diagonal()
    assert {p for p, _ in pairs} == set(ZOO_NAMES) and {s for _, s in pairs} == set(SOLVERS)


@pytest.mark.parametrize("problem_name, solver_name", _diagonal())
def test_solver_decreases_value(problem_name, solver_name):
    assert _supports(solver_name, zoo(problem_name))
    _check(problem_name, solver_name)


@pytest.mark.slow
@pytest.mark.parametrize("solver_name", list(SOLVERS))
@pytest.mark.parametrize("problem_name", ZOO_NAMES)
def test_full_grid(problem_name, solver_name):
    if not _supports(solver_name, zoo(problem_name)):
        pytest.skip("L-BFGS is Euclidean (its refusal is tested below)")
    _check(problem_name, solver_name)


@pytest.mark.parametrize("problem_name", ZOO_NAMES)
def test_lbfgs_refuses_manifolds_cleanly(problem_name):
    problem = zoo(problem_name)
    # The zoo's naming agrees with the manifold: only spherical problems are curved.
    assert problem.manifold.is_euclidean == (not problem_name.startswith("spherical"))
    if problem.manifold.is_euclidean:
        return
    with pytest.raises(ValueError, match="LBFGS is Euclidean.*manifold"):
        ufm.solve(problem, ufm.solvers.LBFGS(), problem.init(jax.random.key(0)), max_steps=3)


@pytest.mark.parametrize("make, match", [
    (lambda: ufm.solve(zoo("ufm-mse"), object(), zoo("ufm-mse").init(jax.random.key(0))), "solver.*init"),
    (lambda: ufm.solve(object(), ufm.solvers.LBFGS(), None), "problem.*value"),
])
def test_solve_checks_the_protocols(make, match):
    with pytest.raises(ValueError, match=match):
        make()
