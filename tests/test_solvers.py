"""The solve driver and the steppers: statuses, traces, vmapped sweeps, warm restarts."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ufm
from ufm.solvers import Status


@pytest.fixture
def mse_problem():
    return ufm.UFM(3, 4, 3, ufm.losses.MSE(), 1e-2, 1e-2)


def test_lbfgs_converges_with_trace(mse_problem):
    sol = ufm.solve(mse_problem, ufm.solvers.LBFGS(), mse_problem.init(jax.random.key(0)),
                    gtol=1e-11, record_every=5)
    assert sol.status_name == "converged" and float(sol.grad_norm) <= 1e-11
    values = np.asarray(sol.trace[:, 0])
    values = values[np.isfinite(values)]
    assert len(values) >= 2 and np.all(np.diff(values) <= 1e-15)  # L-BFGS with a line search descends
    assert float(sol.value) == pytest.approx(float(mse_problem.value(sol.params)), rel=1e-15)


@pytest.mark.parametrize("solver", [
    ufm.solvers.GradientDescent(0.5),
    ufm.solvers.GradientDescent(0.3, momentum=0.8),
    ufm.solvers.GradientDescent(0.3, momentum=0.8, nesterov=True),
    ufm.solvers.Adam(1e-2),
])
def test_first_order_solvers_reach_theory(mse_problem, solver):
    sol = ufm.solve(mse_problem, solver, mse_problem.init(jax.random.key(1)), gtol=1e-9, max_steps=50_000)
    assert sol.status_name == "converged"
    assert float(sol.value) == pytest.approx(ufm.theory.predict(mse_problem).value, rel=1e-12)


def test_max_steps_and_nonfinite_statuses(mse_problem):
    start = mse_problem.init(jax.random.key(0))
    sol = ufm.solve(mse_problem, ufm.solvers.GradientDescent(1e-3), start, max_steps=3)
    assert sol.status_name == "max_steps" and int(sol.num_steps) == 3
    blow = ufm.solve(mse_problem, ufm.solvers.GradientDescent(50.0), start, max_steps=10_000)
    assert blow.status_name == "nonfinite"


def test_warm_restart_continues(mse_problem):
    start = mse_problem.init(jax.random.key(0))
    first = ufm.solve(mse_problem, ufm.solvers.GradientDescent(0.3), start, max_steps=50)
    second = ufm.solve(mse_problem, ufm.solvers.GradientDescent(0.3), first.params, max_steps=50)
    whole = ufm.solve(mse_problem, ufm.solvers.GradientDescent(0.3), start, max_steps=100)
    # Plain GD has no state beyond the point, so two halves equal the whole run.
    np.testing.assert_allclose(second.value, whole.value, rtol=1e-13)


@pytest.mark.parametrize("batching, dim", [("vmap", 4), ("loop", 7)])  # a shape of its own each
def test_lambda_sweep_compiles_once_and_matches_theory(batching, dim):
    problem = ufm.UFM(4, 3, dim, ufm.losses.CrossEntropy(), 5e-3, 5e-3)
    start = problem.init(jax.random.key(0))
    # "loop" (the CPU default) runs ufm.solve's own program row by row
    fn = ufm.sweep._vmap_solve if batching == "vmap" else ufm.solvers._driver._solve
    before = fn._cache_size()
    values = []
    for grid in ([2e-3, 5e-3, 1e-2], [3e-3, 6e-3, 0.2]):
        sols = ufm.sweep.vmap_solve(problem, ufm.solvers.LBFGS(), start,
                                    {"lambda_W": jnp.array(grid), "lambda_H": jnp.array(grid)}, gtol=1e-10,
                                    batching=batching)
        assert np.all(np.asarray(sols.status) == Status.CONVERGED)
        for lam, v in zip(grid, np.asarray(sols.value)):
            expected = ufm.theory.predict(dataclasses.replace(problem, lambda_W=lam, lambda_H=lam)).value
            values.append((float(v), expected))
    assert fn._cache_size() == before + 1  # one compilation for both grids
    for got, expected in values:
        assert got == pytest.approx(expected, rel=1e-9)


def test_loss_hyperparameter_sweep():
    problem = ufm.UFM(3, 2, 3, ufm.losses.LabelSmoothing(0.1), 1e-2, 1e-2)
    sols = ufm.sweep.vmap_solve(problem, ufm.solvers.LBFGS(), problem.init(jax.random.key(0)),
                                {"loss.alpha": jnp.array([0.0, 0.1, 0.2])}, gtol=1e-10)
    for alpha, v in zip([0.0, 0.1, 0.2], np.asarray(sols.value)):
        p = dataclasses.replace(problem, loss=ufm.losses.LabelSmoothing(alpha))
        assert float(v) == pytest.approx(ufm.theory.predict(p).value, rel=1e-9)


def test_multi_start_runs_every_start():
    problem = ufm.UFM(3, 2, 3, ufm.losses.MSE(), 1e-2, 1e-2, bias=False)
    sols = ufm.sweep.multi_start(problem, ufm.solvers.LBFGS(), jax.random.key(0), 4, [0.5, 1.0], gtol=1e-10)
    assert sols.value.shape == (8,)
    assert float(ufm.sweep.best(sols).value) == pytest.approx(ufm.theory.predict(problem).value, rel=1e-10)


@pytest.mark.parametrize("kwargs, match", [
    (dict(max_steps=0), "max_steps"),
    (dict(max_steps=2.5), "max_steps"),
    (dict(gtol=-1.0), "gtol"),
    (dict(record_every=-1), "record_every"),
])
def test_solve_rejects_bad_arguments(mse_problem, kwargs, match):
    with pytest.raises(ValueError, match=match):
        ufm.solve(mse_problem, ufm.solvers.LBFGS(), mse_problem.init(jax.random.key(0)), **kwargs)


@pytest.mark.parametrize("make, match", [
    (lambda: ufm.solvers.GradientDescent(0.0), "learning_rate"),
    (lambda: ufm.solvers.GradientDescent(0.1, momentum=1.0), "momentum"),
    (lambda: ufm.solvers.Adam(-1.0), "learning_rate"),
    (lambda: ufm.solvers.LBFGS(memory_size=0), "memory_size"),
])
def test_solver_validation(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_sweep_rejects_unknown_hyperparameter(mse_problem):
    with pytest.raises(ValueError, match="lambda_Q"):
        ufm.sweep.vmap_solve(mse_problem, ufm.solvers.LBFGS(), mse_problem.init(jax.random.key(0)),
                             {"lambda_Q": jnp.array([1.0])})
    # a list of pairs (or any non-mapping) raised TypeError 'list indices must be integers'
    for over in ([("lambda_W", [0.1])], "lambda_W", None):
        with pytest.raises(ValueError, match="over must be a mapping"):
            ufm.sweep.vmap_solve(mse_problem, ufm.solvers.LBFGS(), mse_problem.init(jax.random.key(0)),
                                 over)


def test_progress_is_reported_from_inside_the_loop(mse_problem, capfd):
    sol = ufm.solve(mse_problem, ufm.solvers.GradientDescent(1e-3), mse_problem.init(jax.random.key(0)),
                    max_steps=30, progress_every=10)
    jax.effects_barrier()
    lines = [l for l in capfd.readouterr().err.splitlines() if l.startswith("ufm.solve:")]
    assert [int(l.split()[2]) for l in lines] == [10, 20, 30]
    assert f"{float(sol.value):.15g}" in lines[-1]
    with pytest.raises(ValueError, match="progress_every"):
        ufm.solve(mse_problem, ufm.solvers.LBFGS(), mse_problem.init(jax.random.key(0)), progress_every=-1)


_BAD_SCALARS = [None, "0.1", True, [0.1], 1j, np.ones(2), float("nan")]


@pytest.mark.parametrize("bad", _BAD_SCALARS, ids=repr)
@pytest.mark.parametrize("make, name", [
    (lambda v: ufm.solvers.GradientDescent(v), "learning_rate"),
    (lambda v: ufm.solvers.GradientDescent(0.1, momentum=v), "momentum"),
    (lambda v: ufm.solvers.Adam(v), "learning_rate"),
    (lambda v: ufm.solvers.Adam(1e-3, b2=v), "b2"),
    (lambda v: ufm.solvers.Adam(1e-3, eps=v), "eps"),
    (lambda v: ufm.solvers.RiemannianGradientDescent(shrink=v), "shrink"),
    (lambda v: ufm.solvers.RiemannianGradientDescent(sufficient_decrease=v), "sufficient_decrease"),
    (lambda v: ufm.solvers.TrustRegion(accept_ratio=v), "accept_ratio"),
    (lambda v: ufm.solvers.TrustRegion(curvature_tol=v), "curvature_tol"),
])
def test_solver_hyperparameters_refuse_non_numbers(make, name, bad):
    with pytest.raises(ValueError, match=name):
        make(bad)


@pytest.mark.parametrize("make, match", [
    (lambda: ufm.solvers.GradientDescent(0.1, nesterov="yes"), "nesterov"),
    (lambda: ufm.solvers.GradientDescent(0.1, scale_blocks=1), "scale_blocks"),
    (lambda: ufm.solvers.Adam(scale_blocks=None), "scale_blocks"),
    (lambda: ufm.solvers.TrustRegion(scale_blocks="False"), "scale_blocks"),
    (lambda: ufm.solvers.TrustRegion(initial_radius="1"), "initial_radius"),
    (lambda: ufm.solvers.TrustRegion(max_inner=2.5), "max_inner"),
    (lambda: ufm.solvers.LBFGS(memory_size=True), "memory_size"),
    (lambda: ufm.solvers.RiemannianGradientDescent(max_backtracks=None), "max_backtracks"),
    (lambda: ufm.solvers.RiemannianGradientDescent(growth=0.5), "growth"),
])
def test_solver_switches_and_counts_refuse_bad_types(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_solve_checks_params_against_the_problem(mse_problem):
    good = mse_problem.init(jax.random.key(0))
    no_bias = ufm.UFM(3, 4, 3, ufm.losses.MSE(), 1e-2, 1e-2, bias=False).init(jax.random.key(0))
    cases = [
        (no_bias, "structure"),  # a missing bias would silently solve another problem
        (good._replace(W=good.W.T[:, :2]), r"params\.W.*shape"),
        (good._replace(H=good.H.astype(jnp.int32)), r"params\.H.*float"),
        ({"W": good.W, "H": good.H, "b": good.b}, "structure"),
        (None, "structure"),
    ]
    for params, match in cases:
        with pytest.raises(ValueError, match=match):
            ufm.solve(mse_problem, ufm.solvers.LBFGS(), params)
    with pytest.raises(ValueError, match="params_batched"):
        ufm.sweep.vmap_solve(mse_problem, ufm.solvers.LBFGS(), good, {"lambda_W": jnp.array([1e-2, 2e-2])},
                             params_batched=True)
    with pytest.raises(ValueError, match="scales"):
        ufm.sweep.multi_start(mse_problem, ufm.solvers.LBFGS(), jax.random.key(0), 2, scales=[0.5, -1.0])
    with pytest.raises(ValueError, match="gtol"):
        ufm.sweep.multi_start(mse_problem, ufm.solvers.LBFGS(), jax.random.key(0), 2, gtol="1e-8")
    for key in (0, None, jax.random.split(jax.random.key(0), 2)):  # a seed, nothing, two keys
        with pytest.raises(ValueError, match="key"):
            ufm.sweep.multi_start(mse_problem, ufm.solvers.LBFGS(), key, 2)
    # A static field (a size, the bias switch) is not an array leaf: a sweep over it solved the
    # base problem for every row (dim = [3, 4] gave two dim-3 solutions).
    for name, values in (("dim", [3, 4]), ("bias", [True, False]), ("num_classes", [3, 4])):
        with pytest.raises(ValueError, match=f"'{name}' is a static field"):
            ufm.sweep.vmap_solve(mse_problem, ufm.solvers.LBFGS(), good, {name: values})


def test_lbfgs_state_continues_the_same_run(mse_problem):
    """solve(state=sol.state) resumes L-BFGS with its memory: two halves are the whole run."""
    problem = ufm.UFM(3, 4, 3, ufm.losses.CrossEntropy(), 1e-2, 1e-2)
    start = problem.init(jax.random.key(2))
    whole = ufm.solve(problem, ufm.solvers.LBFGS(), start, max_steps=12, gtol=0.0)
    first = ufm.solve(problem, ufm.solvers.LBFGS(), start, max_steps=6, gtol=0.0)
    second = ufm.solve(problem, ufm.solvers.LBFGS(), first.params, max_steps=6, gtol=0.0, state=first.state)
    fresh = ufm.solve(problem, ufm.solvers.LBFGS(), first.params, max_steps=6, gtol=0.0)
    assert int(whole.num_steps) == 12 and int(second.num_steps) == 6
    np.testing.assert_allclose(second.value, whole.value, rtol=1e-14)
    for a, b in zip(jax.tree.leaves(second.params), jax.tree.leaves(whole.params)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    assert float(fresh.value) != float(whole.value)  # without the memory the path differs


def test_sweeps_carry_gtol_and_restarts():
    problem = ufm.UFM(3, 2, 3, ufm.losses.CrossEntropy(), 1e-2, 1e-2, bias=False)
    sols = ufm.sweep.vmap_solve(problem, ufm.solvers.LBFGS(), problem.init(jax.random.key(0)),
                                {"lambda_H": jnp.array([1e-2, 2e-2])}, gtol=1e-9)
    np.testing.assert_array_equal(np.asarray(sols.gtol), [1e-9, 1e-9])
    assert sols.status_name == ["converged", "converged"]
    ms = ufm.sweep.multi_start(problem, ufm.solvers.GradientDescent(0.1), jax.random.key(1), 2, 0.5,
                               max_steps=20, gtol=0.0, restarts=2, batching="map")
    np.testing.assert_array_equal(np.asarray(ms.num_steps), [60, 60])  # 3 solves of 20 steps each
    np.testing.assert_array_equal(np.asarray(ms.gtol), [0.0, 0.0])



def test_state_of_another_problem_or_point_is_not_reported_as_converged():
    """A state carried to a new λ (or another point) must not hand back its stale value and
    gradient as a converged answer: the solve restarts from params and reaches the new minimum.
    A state of another solver is refused by name."""
    K, n, lam = 3, 2, 1e-2
    problem = ufm.UFM(K, n, K, ufm.losses.MSE(), lam, lam)
    # Its exact minimiser (docs/theory/mse.md, free bias, λ_W = λ_H): W = √(c√n) C_K, means W/√n, b = 1/K.
    c = 1 - K * np.sqrt(n) * lam
    C = np.eye(K) - 1.0 / K
    W = np.sqrt(c * np.sqrt(n)) * C
    at_min = problem.params(W, np.repeat(W / np.sqrt(n), n, axis=0), np.full(K, 1.0 / K))
    gd = ufm.solvers.GradientDescent(0.5)
    first = ufm.solve(problem, gd, at_min, max_steps=16, gtol=1e-10)
    assert first.status_name == "converged" and int(first.num_steps) == 0
    state = first.state
    moved = ufm.UFM(K, n, K, ufm.losses.MSE(), 2 * lam, lam)
    warm = ufm.solve(moved, gd, at_min, max_steps=5000, gtol=1e-10, state=state)
    # F* = (K−1)/(2K) − (K−1)c²/(2K), c = 1 − K√(nλ_Wλ_H)
    c2 = 1 - K * np.sqrt(n * 2 * lam * lam)
    assert warm.status_name == "converged" and int(warm.num_steps) > 0
    np.testing.assert_allclose(float(warm.value), (K - 1) / (2 * K) * (1 - c2 ** 2), rtol=1e-12)
    np.testing.assert_allclose(float(warm.value), float(moved.value(warm.params)), rtol=1e-14)
    start = problem.init(jax.random.key(1))  # another point of the same problem (same program)
    other = ufm.solve(problem, gd, start, max_steps=5000, gtol=1e-10, state=state)
    assert other.status_name == "converged" and int(other.num_steps) > 0
    np.testing.assert_allclose(float(other.value), (K - 1) / (2 * K) * (1 - c ** 2), rtol=1e-12)
    with pytest.raises(ValueError, match="state"):
        ufm.solve(problem, ufm.solvers.TrustRegion(), at_min, state=state)
