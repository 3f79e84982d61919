"""A new λ, learning rate, momentum or gtol must not recompile ``solve``; a new shape or step
budget must. Compilations are counted with JAX's own compile log (``jax.log_compiles``)."""

import contextlib
import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ufm


class _Counter(logging.Handler):
    def __init__(self, name):
        super().__init__(logging.DEBUG)
        self.name_, self.count = name, 0

    def emit(self, record):
        # pxla logs "Compiling jit(<fn>) ..." once per cache miss (trace + lower + compile).
        if record.getMessage().startswith(f"Compiling jit({self.name_})"):
            self.count += 1


@contextlib.contextmanager
def count_compiles(fn_name):
    """Count the compilations of the jitted function ``fn_name`` inside the block."""
    counter = _Counter(fn_name)
    logger = logging.getLogger("jax")
    old_level = logger.level
    logger.addHandler(counter)
    logger.setLevel(logging.DEBUG)
    try:
        with jax.log_compiles(True):
            yield counter
    finally:
        logger.removeHandler(counter)
        logger.setLevel(old_level)


def _solve(problem, solver, **kw):
    sol = ufm.solve(problem, solver, problem.init(jax.random.key(0)), max_steps=kw.pop("max_steps", 7), **kw)
    jax.block_until_ready(sol.value)
    return sol


def test_new_hyperparameters_do_not_recompile_solve():
    base = ufm.UFM(3, 2, 4, ufm.losses.LabelSmoothing(0.1), 1e-2, 1e-2)
    with count_compiles("_solve") as first:
        _solve(base, ufm.solvers.GradientDescent(0.1))
    assert first.count == 1  # the counter sees a compilation (this test can fail)
    with count_compiles("_solve") as again:
        # λ's written in every way a user writes a number, a new α, learning rate, momentum, gtol.
        for lam in (2e-2, np.float64(3e-2), jnp.asarray(4e-2), np.float32(5e-2), 1):
            _solve(ufm.UFM(3, 2, 4, ufm.losses.LabelSmoothing(0.2), lam, 2 * lam), ufm.solvers.GradientDescent(0.1))
        for lr in (0.2, np.float64(0.05), jnp.asarray(0.3)):
            _solve(base, ufm.solvers.GradientDescent(lr, momentum=0.0))
        _solve(base, ufm.solvers.GradientDescent(0.1), gtol=1e-6)
        _solve(base, ufm.solvers.GradientDescent(0.1), gtol=np.float64(0))
    assert again.count == 0


def test_new_momentum_does_not_recompile_solve():
    """Momentum 0 is its own program (no trace buffer); every non-zero momentum shares one."""
    base = ufm.UFM(3, 2, 4, ufm.losses.CrossEntropy(), 1e-2, 1e-2)
    with count_compiles("_solve") as first:
        _solve(base, ufm.solvers.GradientDescent(0.1, momentum=0.9))
        _solve(base, ufm.solvers.GradientDescent(0.1, momentum=0.0, heavy_ball=True))
    assert first.count == 1
    with count_compiles("_solve") as again:
        for lr, momentum in ((0.2, 0.5), (np.float64(0.05), np.float32(0.3)), (jnp.asarray(0.3), jnp.asarray(0.8))):
            _solve(base, ufm.solvers.GradientDescent(lr, momentum=momentum))
    assert again.count == 0


def test_zero_momentum_keeps_no_trace_and_takes_the_same_steps():
    """heavy_ball=False (the default at momentum 0) drops optax's trace, not the iteration."""
    p = ufm.UFM(3, 2, 4, ufm.losses.CrossEntropy(), 1e-2, 1e-2)
    x0 = p.init(jax.random.key(1))
    plain = ufm.solvers.GradientDescent(0.1)
    traced = ufm.solvers.GradientDescent(0.1, momentum=0.0, heavy_ball=True)
    assert not plain.heavy_ball and traced.heavy_ball
    assert not jax.tree.leaves(plain.init(p, x0).inner)  # no momentum buffer at all
    a, b = _solve(p, plain, max_steps=50), _solve(p, traced, max_steps=50)
    np.testing.assert_allclose(float(a.value), float(b.value), rtol=1e-14)
    with pytest.raises(ValueError, match="heavy_ball"):
        ufm.solvers.GradientDescent(0.1, momentum=0.5, heavy_ball=False)


def test_new_shape_or_budget_recompiles():
    """The positive control: static changes are seen by the counter."""
    base = ufm.UFM(3, 2, 4, ufm.losses.MSE(), 1e-2, 1e-2)
    _solve(base, ufm.solvers.Adam(1e-2))
    with count_compiles("_solve") as c:
        _solve(base, ufm.solvers.Adam(1e-2), max_steps=8)
        _solve(ufm.UFM(3, 2, 5, ufm.losses.MSE(), 1e-2, 1e-2), ufm.solvers.Adam(1e-2))
        _solve(base, ufm.solvers.Adam(2e-2, b1=0.5))  # a leaf: no compile
    assert c.count == 2


def test_riemannian_solver_hyperparameters_do_not_recompile():
    p = ufm.SphericalUFM(3, 2, 3, ufm.losses.CrossEntropy(), temperature=0.5)
    _solve(p, ufm.solvers.TrustRegion(), max_steps=3)
    with count_compiles("_solve") as c:
        q = ufm.SphericalUFM(3, 2, 3, ufm.losses.CrossEntropy(), radius_W=2.0, radius_H=0.5, temperature=0.3)
        _solve(q, ufm.solvers.TrustRegion(accept_ratio=0.2, kappa=0.2, theta=0.5), max_steps=3)
    assert c.count == 0


@pytest.mark.parametrize("batching, program", [("vmap", "_vmap_solve"), ("loop", "_solve")])
def test_vmap_sweep_compiles_once_per_shape(batching, program):
    p = ufm.UFM(3, 2, 3 if batching == "vmap" else 6, ufm.losses.CrossEntropy(), 1e-2, 1e-2)
    start = p.init(jax.random.key(1))
    with count_compiles(program) as c:
        for grid in ([1e-3, 2e-3], np.array([3e-3, 4e-3]), jnp.array([5e-3, 6e-3])):
            sols = ufm.sweep.vmap_solve(p, ufm.solvers.GradientDescent(0.1), start, {"lambda_W": grid},
                                        max_steps=5, batching=batching)
            jax.block_until_ready(sols.value)
    assert c.count == 1
