"""The driver's speed paths keep its semantics: ``check_every`` chunks, labels as arguments, batching."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ufm
from ufm.solvers._driver import _solve, canonical_leaves


@pytest.fixture(scope="module")
def ce_problem():
    return ufm.UFM(4, 3, 5, ufm.losses.CrossEntropy(), 5e-3, 5e-3)


@pytest.mark.parametrize("check_every", [2, 7, 50, None])
def test_check_every_takes_exactly_the_same_steps(ce_problem, check_every):
    """At gtol = 0 every step runs: the same iterates whatever the chunking, max_steps exact."""
    x0 = ce_problem.init(jax.random.key(0))
    solver = ufm.solvers.GradientDescent(0.2, momentum=0.5)
    ref = ufm.solve(ce_problem, solver, x0, max_steps=103, gtol=0.0, check_every=1)
    got = ufm.solve(ce_problem, solver, x0, max_steps=103, gtol=0.0, check_every=check_every)
    assert int(got.num_steps) == int(ref.num_steps) == 103
    assert got.status_name == ref.status_name == "max_steps"
    np.testing.assert_allclose(float(got.value), float(ref.value), rtol=1e-13)
    # invariant comparison: the Gram matrix of the features and the logits
    np.testing.assert_allclose(np.asarray(got.params.H @ got.params.H.T),
                               np.asarray(ref.params.H @ ref.params.H.T), rtol=1e-11, atol=1e-14)


@pytest.mark.parametrize("solver", [ufm.solvers.GradientDescent(0.5), ufm.solvers.Adam(3e-2),
                                    ufm.solvers.LBFGS()], ids=["gd", "adam", "lbfgs"])
@pytest.mark.parametrize("check_every", [25, None])
def test_check_every_converges_and_reports_the_point_it_returns(ce_problem, solver, check_every):
    x0 = ce_problem.init(jax.random.key(1))
    ref = ufm.solve(ce_problem, solver, x0, max_steps=50_000, gtol=1e-8, check_every=1)
    got = ufm.solve(ce_problem, solver, x0, max_steps=50_000, gtol=1e-8, check_every=check_every)
    k = check_every or (1 if isinstance(solver, ufm.solvers.LBFGS) else 16)
    assert ref.status_name == got.status_name == "converged"
    assert int(ref.num_steps) <= int(got.num_steps) < int(ref.num_steps) + k
    assert int(got.num_steps) % k == 0 or k == 1
    assert float(got.grad_norm) <= 1e-8  # the status is the returned point's
    np.testing.assert_allclose(float(got.value), ufm.theory.predict(ce_problem).value, rtol=1e-12)
    # the value the driver skipped inside the chunk is the returned point's
    np.testing.assert_allclose(float(got.state.value), float(ce_problem.value(got.params)), rtol=1e-14)


def test_default_check_every_follows_the_solver(ce_problem):
    """Gradient-only solvers skip the per-step tests and the value; the others test every step."""
    x0 = ce_problem.init(jax.random.key(0))
    gd, lbfgs = ufm.solvers.GradientDescent(0.2), ufm.solvers.LBFGS()
    assert gd.reads_value is False and ufm.solvers.Adam().reads_value is False
    assert getattr(lbfgs, "reads_value", True) and getattr(ufm.solvers.TrustRegion(), "reads_value", True)

    # the default matches check_every=16 (GD) and 1 (L-BFGS): same steps, and record_every=10
    # lowers GD's chunk to gcd(16, 10) = 2 instead of refusing it
    for solver, k in ((gd, 16), (lbfgs, 1)):
        a = ufm.solve(ce_problem, solver, x0, max_steps=37, gtol=0.0)
        b = ufm.solve(ce_problem, solver, x0, max_steps=37, gtol=0.0, check_every=k)
        assert int(a.num_steps) == int(b.num_steps) == 37
        np.testing.assert_allclose(float(a.value), float(b.value), rtol=1e-13)
    sol = ufm.solve(ce_problem, gd, x0, max_steps=40, gtol=0.0, record_every=10)
    ref = ufm.solve(ce_problem, gd, x0, max_steps=40, gtol=0.0, record_every=10, check_every=1)
    np.testing.assert_allclose(np.asarray(sol.trace), np.asarray(ref.trace), rtol=1e-12)


def test_check_every_with_records_and_bad_values(ce_problem):
    x0 = ce_problem.init(jax.random.key(0))
    solver = ufm.solvers.GradientDescent(0.2)
    sol = ufm.solve(ce_problem, solver, x0, max_steps=40, gtol=0.0, check_every=10, record_every=20)
    ref = ufm.solve(ce_problem, solver, x0, max_steps=40, gtol=0.0, record_every=20, check_every=1)
    np.testing.assert_allclose(np.asarray(sol.trace), np.asarray(ref.trace), rtol=1e-12)
    with pytest.raises(ValueError, match="record_every must be 0 or a multiple of check_every"):
        ufm.solve(ce_problem, solver, x0, max_steps=40, check_every=10, record_every=15)
    for bad in (0, -1, 1.5, "10", True):
        with pytest.raises(ValueError, match="check_every"):
            ufm.solve(ce_problem, solver, x0, check_every=bad)


@pytest.mark.parametrize("check_every", [10, None])
def test_check_every_stops_a_diverging_solve_as_nonfinite(ce_problem, check_every):
    x0 = ce_problem.init(jax.random.key(0))
    sol = ufm.solve(ce_problem, ufm.solvers.GradientDescent(1e6), x0, max_steps=1000, check_every=check_every)
    assert sol.status_name == "nonfinite" and int(sol.num_steps) < 1000


@pytest.mark.parametrize("make", [
    lambda: ufm.UFM(50, 40, 3, ufm.losses.CrossEntropy(), 1e-3, 1e-3),
    lambda: ufm.UFM(50, tuple([40] * 49 + [41]), 3, ufm.losses.MSE(), 1e-3, 1e-3),
    lambda: ufm.SphericalUFM(50, 40, 3, ufm.losses.CrossEntropy()),
    lambda: ufm.DeepUFM(50, 40, (3, 3), ufm.losses.CrossEntropy(), [1e-3, 1e-3], 1e-3),
], ids=["ufm", "imbalanced", "spherical", "deep"])
def test_labels_enter_the_compiled_solve_as_an_argument(make):
    """Labels are a leaf of the problem: an argument of the program, never an N-sized constant."""
    problem = make()
    N = problem.num_samples
    x0 = problem.init(jax.random.key(0))
    solver = ufm.solvers.TrustRegion() if isinstance(problem, ufm.SphericalUFM) else ufm.solvers.LBFGS()
    p, s = canonical_leaves((problem, solver), x0)
    text = _solve.lower(p, s, x0, jnp.asarray(1e-10), max_steps=5, record_every=0).as_text()
    main = text[text.index("func.func public @main"):].split("\n", 1)[0]
    assert f"tensor<{N}xi32>" in main  # an argument of the entry computation
    assert not re.search(rf"constant dense<[^>]*> : tensor<{N}xi32>", text)
    assert np.array_equal(np.asarray(problem.targets), problem.labels)


def test_multilabel_targets_are_an_argument():
    problem = ufm.MultiLabelUFM.balanced(5, {1: 30, 2: 4}, 4, ufm.losses.PickAllLabel(), 1e-3, 1e-3)
    x0 = problem.init(jax.random.key(0))
    p, s = canonical_leaves((problem, ufm.solvers.LBFGS()), x0)
    N, K = problem.num_samples, problem.num_classes
    text = _solve.lower(p, s, x0, jnp.asarray(1e-10), max_steps=5, record_every=0).as_text()
    main = text[text.index("func.func public @main"):].split("\n", 1)[0]
    assert f"tensor<{N}x{K}xf64>" in main
    assert not re.search(rf"constant dense<[^>]*> : tensor<{N}x{K}xf64>", text)


def test_a_new_problem_of_the_same_shape_reuses_the_program_and_its_own_labels():
    """Two imbalanced problems with the same N but other counts: one program, each its labels."""
    a = ufm.UFM(3, (4, 1, 1), 3, ufm.losses.MSE(), 1e-2, 1e-2, bias=False)
    b = ufm.UFM(3, (1, 1, 4), 3, ufm.losses.MSE(), 1e-2, 1e-2, bias=False)
    assert jax.tree.structure(a) != jax.tree.structure(b)  # the counts are static: another program
    for p in (a, b):
        sol = ufm.solve(p, ufm.solvers.LBFGS(), p.init(jax.random.key(0)), gtol=1e-11)
        np.testing.assert_allclose(float(sol.value), ufm.theory.predict(p).value, rtol=1e-10)


def test_replacing_a_hyperparameter_keeps_the_labels_and_replacing_counts_rebuilds_them():
    import dataclasses

    from ufm._types import derived_leaf, replace_keeping_derived

    p = ufm.UFM(3, (2, 1, 1), 3, ufm.losses.MSE(), 1e-2, 1e-2)
    labels = derived_leaf(p, "targets")
    assert derived_leaf(replace_keeping_derived(p, lambda_W=0.5), "targets") is labels
    q = replace_keeping_derived(p, num_per_class=(1, 1, 2))
    assert np.array_equal(np.asarray(derived_leaf(q, "targets")), [0, 1, 2, 2])
    assert np.array_equal(np.asarray(q.targets), [0, 1, 2, 2])
    assert np.array_equal(np.asarray(dataclasses.replace(p, num_per_class=(1, 2, 1)).targets), [0, 1, 1, 2])


@pytest.mark.parametrize("batching", ["map", 2, "vmap", "loop", "auto"])
def test_every_batching_gives_the_same_sweep(batching):
    p = ufm.UFM(3, 2, 3, ufm.losses.CrossEntropy(), 1e-2, 1e-2)
    lams = jnp.array([2e-3, 5e-3, 1e-2, 2e-2, 5e-2])
    sols = ufm.sweep.vmap_solve(p, ufm.solvers.LBFGS(), p.init(jax.random.key(0)),
                                {"lambda_W": lams, "lambda_H": lams}, gtol=1e-10, batching=batching)
    assert sols.value.shape == (5,)
    for lam, v, status in zip(lams, sols.value, sols.status_name):
        expected = ufm.theory.predict(ufm.UFM(3, 2, 3, ufm.losses.CrossEntropy(), float(lam), float(lam))).value
        assert status == "converged"
        np.testing.assert_allclose(float(v), expected, rtol=1e-10)


def test_map_batching_lets_each_row_stop_on_its_own():
    """Under "map" a row's step count is its own; under "vmap" too, but the loop ran for the slowest."""
    p = ufm.UFM(3, 2, 3, ufm.losses.CrossEntropy(), 1e-2, 1e-2)
    lams = jnp.array([1e-3, 5e-2])
    starts = jax.vmap(lambda k: p.init(k))(jax.random.split(jax.random.key(0), 2))
    a = ufm.sweep.vmap_solve(p, ufm.solvers.LBFGS(), starts, {"lambda_W": lams}, params_batched=True,
                             gtol=1e-10, batching="map")
    b = ufm.sweep.vmap_solve(p, ufm.solvers.LBFGS(), starts, {"lambda_W": lams}, params_batched=True,
                             gtol=1e-10, batching="vmap")
    np.testing.assert_allclose(np.asarray(a.value), np.asarray(b.value), rtol=1e-10)
    assert np.array_equal(np.asarray(a.num_steps), np.asarray(b.num_steps))


def test_loop_batching_is_the_sequential_loop_and_compiles_once():
    """``"loop"`` (``"auto"`` on a CPU) gives each row exactly what ``ufm.solve`` gives it, with
    one compiled program for the whole grid (the row's hyperparameters are arguments)."""
    from ufm.solvers._driver import _solve

    assert ufm.sweep.resolve_batching("auto") == ("loop" if jax.default_backend() == "cpu" else "vmap")
    p = ufm.UFM(3, 3, 4, ufm.losses.LabelSmoothing(0.1), 1e-2, 1e-2)  # a shape no other test solves
    grid = {"lambda_W": jnp.array([3e-3, 1e-2, 3e-2]), "loss.alpha": jnp.array([0.05, 0.1, 0.2])}
    starts = jax.vmap(lambda k: p.init(k))(jax.random.split(jax.random.key(1), 3))
    solver = ufm.solvers.TrustRegion()
    before = _solve._cache_size()
    sols = ufm.sweep.vmap_solve(p, solver, starts, grid, params_batched=True, gtol=1e-11, batching="loop")
    assert _solve._cache_size() - before == 1
    for i in range(3):
        q = ufm.sweep.replace_hyper(ufm.sweep.replace_hyper(p, "lambda_W", float(grid["lambda_W"][i])),
                                    "loss.alpha", float(grid["loss.alpha"][i]))
        one = ufm.solve(q, solver, jax.tree.map(lambda x: x[i], starts), gtol=1e-11)
        assert int(one.num_steps) == int(sols.num_steps[i]) and one.status_name == sols.status_name[i]
        assert float(one.value) == float(sols.value[i])
        np.testing.assert_allclose(float(sols.value[i]), ufm.theory.predict(q).value, rtol=1e-10)
    assert _solve._cache_size() - before == 1  # the single solves reused the loop's program
    empty = ufm.sweep.vmap_solve(p, solver, p.init(jax.random.key(0)), {"lambda_W": jnp.array([])},
                                 batching="loop")
    assert empty.value.shape == (0,) and empty.params.H.shape[0] == 0
    with pytest.raises(ValueError, match="batching='loop' runs on the default device"):
        ufm.sweep.vmap_solve(p, solver, starts, grid, params_batched=True, batching="loop", devices="all")


@pytest.mark.parametrize("bad", ["lanes", 0, -2, 1.5, None, True])
def test_bad_batching_is_refused_by_name(bad):
    p = ufm.UFM(3, 2, 3, ufm.losses.MSE(), 1e-2, 1e-2)
    with pytest.raises(ValueError, match="batching"):
        ufm.sweep.vmap_solve(p, ufm.solvers.LBFGS(), p.init(jax.random.key(0)),
                             {"lambda_W": jnp.array([1e-2])}, batching=bad)


def test_params_check_follows_the_shapes_of_the_problem_leaves():
    """The structure check is memoised per layout: a regression problem's sizes are its targets'."""
    a = ufm.RegressionUFM(np.ones((5, 2)), 3, 1e-2, 1e-2)
    b = ufm.RegressionUFM(np.ones((7, 2)), 3, 1e-2, 1e-2)
    for p in (a, b, a):
        ufm.solve(p, ufm.solvers.LBFGS(), p.init(jax.random.key(0)), max_steps=3)
    with pytest.raises(ValueError, match=r"params.H must have shape \(7, 3\)"):
        ufm.solve(b, ufm.solvers.LBFGS(), a.init(jax.random.key(0)), max_steps=3)


def test_solve_runs_inside_a_users_jit_and_lowers_ahead_of_time(ce_problem):
    """``ufm.solve`` traced under the user's ``jax.jit`` (its argument checks read dtypes, not
    values), and a solver whose ``__post_init__`` validates passes through ``jit(...).lower``
    (JAX unflattens it with placeholder leaves)."""
    x0 = ce_problem.init(jax.random.key(0))
    gd = ufm.solvers.GradientDescent(0.2, momentum=0.5)
    inside = jax.jit(lambda x: ufm.solve(ce_problem, gd, x, max_steps=20, gtol=0.0, check_every=1).value)(x0)
    ref = ufm.solve(ce_problem, gd, x0, max_steps=20, gtol=0.0, check_every=1)
    np.testing.assert_allclose(float(inside), float(ref.value), rtol=1e-13)
    p, s = canonical_leaves((ce_problem, gd), x0)
    compiled = _solve.lower(p, s, x0, np.asarray(0.0), max_steps=20, record_every=0,
                            check_every=1).compile()
    np.testing.assert_allclose(float(compiled(p, s, x0, np.asarray(0.0)).value), float(ref.value), rtol=1e-13)


def test_loop_rows_on_threads_come_back_in_order_and_equal_single_solves(monkeypatch):
    """More rows than threads, and one row alone: each row is the single solve of its λ, in order."""
    p = ufm.UFM(3, 4, 3, ufm.losses.CrossEntropy(), 1e-2, 1e-2)
    solver = ufm.solvers.TrustRegion()
    x0 = p.init(jax.random.key(2))
    lams = np.geomspace(1e-3, 1e-1, 9)
    assert 2 <= ufm.sweep.loop_workers(x0) <= 16  # this machine: ≥ 1 core, ample memory
    sols = ufm.sweep.vmap_solve(p, solver, x0, {"lambda_H": lams}, batching="loop")
    for i, lam in enumerate(lams):
        one = ufm.solve(ufm.sweep.replace_hyper(p, "lambda_H", lam), solver, x0)
        assert float(one.value) == float(sols.value[i]) and int(one.num_steps) == int(sols.num_steps[i])
    single = ufm.sweep.vmap_solve(p, solver, x0, {"lambda_H": lams[4:5]}, batching="loop")
    assert float(single.value[0]) == float(sols.value[4])
    # a machine whose memory holds one solve of this size at a time runs one row at a time
    monkeypatch.setattr(ufm.sweep, "available_memory", lambda: 2 * 16 * 8 * sum(x.size for x in jax.tree.leaves(x0)))
    assert ufm.sweep.loop_workers(x0) == 1
    again = ufm.sweep.vmap_solve(p, solver, x0, {"lambda_H": lams}, batching="loop")
    np.testing.assert_array_equal(np.asarray(again.value), np.asarray(sols.value))
