"""Spherical UFM (docs/theory/spherical.md): validation, closed form, Riemannian solvers, landscape."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ufm
from ufm.losses import CrossEntropy, Focal, LabelSmoothing, MSE
from ufm.metrics.spherical import TOLERANCES
from ufm.solvers import (LBFGS, Adam, GradientDescent, RiemannianGradientDescent, Status,
                         TrustRegion)
from ufm.theory import NoClosedForm, simplex_etf
from ufm.theory.spherical import antipodal_value, spherical_value, zero_eigenvalue_count

from helpers import F64_IDENTITY, rel_err

ON_MANIFOLD = 1e-14
VALUE_RTOL = 1e-10  # issue 5: objective relative error
GRAM_RTOL = 1e-7


def sph(*args, loss=None, **kwargs):
    """SphericalUFM with the loss (required, positional) defaulting to CE in these tests."""
    loss = CrossEntropy() if loss is None else loss
    if len(args) >= 3:
        return ufm.SphericalUFM(*args[:3], loss, *args[3:], **kwargs)
    return ufm.SphericalUFM(*args, loss=loss, **kwargs)


def _F_star(K, s):
    """docs/theory/spherical.md, written out independently of ufm.theory."""
    return math.log(1 + (K - 1) * math.exp(-s * K / (K - 1)))


def _sphere_error(x, p):
    return max(float(np.max(np.abs(np.linalg.norm(np.asarray(x.W), axis=1) - float(p.radius_W)))),
               float(np.max(np.abs(np.linalg.norm(np.asarray(x.H), axis=1) - float(p.radius_H)))))


# ---- construction and validation ---------------------------------------------------------------
@pytest.mark.parametrize("kwargs, name", [
    (dict(radius_W=0.0), "radius_W"), (dict(radius_W=-1.0), "radius_W"),
    (dict(radius_H=0.0), "radius_H"), (dict(radius_H=float("inf")), "radius_H"),
    (dict(temperature=0.0), "temperature"), (dict(temperature=-0.5), "temperature"),
    (dict(dim=1), "dim"), (dict(dim=2.5), "dim"), (dict(num_classes=1), "num_classes"),
    (dict(num_per_class=0), "num_per_class"), (dict(loss=MSE()), "loss"), (dict(bias=1), "bias"),
    (dict(radius_W=None), "radius_W"), (dict(radius_H="1"), "radius_H"), (dict(temperature=True), "temperature"),
    (dict(temperature=[0.5]), "temperature"), (dict(radius_W=np.ones(2)), "radius_W"),
    (dict(temperature=1j), "temperature"), (dict(dim=None), "dim"),
    (dict(num_classes=10 ** 5, num_per_class=10 ** 5, dim=1000), "GiB"),
])
def test_validation(kwargs, name):
    args = dict(num_classes=3, num_per_class=2, dim=3)
    args.update(kwargs)
    with pytest.raises(ValueError, match=name):
        sph(**args)


def test_loss_is_required():
    with pytest.raises(TypeError):
        ufm.SphericalUFM(3, 2, 3)


def test_no_threshold():
    for loss in (CrossEntropy(), LabelSmoothing(0.1), Focal(2.0)):
        with pytest.raises(NoClosedForm, match="no weight decay"):
            ufm.theory.threshold(sph(3, 2, 3, loss=loss))


@pytest.mark.parametrize("loss", [CrossEntropy(), LabelSmoothing(0.2), Focal(1.5)], ids=["ce", "ls", "fl"])
@pytest.mark.parametrize("counts, bias", [(2, False), ((3, 1, 2), True)])
def test_from_config_round_trip(loss, counts, bias):
    import json

    p = sph(3, counts, 4, loss=loss, radius_W=1.5, radius_H=0.7, temperature=0.3, bias=bias)
    q = ufm.SphericalUFM.from_config(json.loads(json.dumps(p.config())))
    assert q.config() == p.config() and type(q.loss) is type(p.loss)
    x = p.init(jax.random.key(0))
    assert float(q.value(x)) == float(p.value(x))
    with pytest.raises(ValueError, match="config"):
        ufm.SphericalUFM.from_config(dict(p.config(), model="ufm"))


def test_init_is_on_the_manifold_and_ignores_scale():
    p = sph(4, 3, 5, radius_W=2.5, radius_H=0.3, bias=True)
    x = p.init(jax.random.key(0), scale=1e-3)
    assert _sphere_error(x, p) <= ON_MANIFOLD
    np.testing.assert_array_equal(x.b, np.zeros(4))
    y = p.init(jax.random.key(0), scale=7.0)
    np.testing.assert_array_equal(x.W, y.W)
    assert x.H.shape == (12, 5) and p.manifold.components.b is not None
    assert sph(4, 3, 5).init(jax.random.key(0)).b is None


def test_step_scale_and_config():
    p = sph(4, 3, 5, temperature=0.25)
    scale = p.step_scale(p.init(jax.random.key(0)))
    assert scale.W == 1.0 and scale.H == 12.0 and scale.b is None
    cfg = p.config()
    assert cfg["model"] == "spherical" and cfg["temperature"] == 0.25 and cfg["loss"]["name"] == "ce"
    assert float(p.inverse_temperature) == 4.0


def test_value_and_gradient_match_the_formulas():
    """F and ∇F of docs/theory/spherical.md (paper layout translated to sample-major), computed by hand."""
    K, n, d, T = 3, 4, 4, 0.7
    p = sph(K, n, d, radius_W=1.2, radius_H=0.9, temperature=T)
    x = p.init(jax.random.key(1))
    W, H = np.asarray(x.W), np.asarray(x.H)
    Z = H @ W.T / T
    Y = np.eye(K)[np.repeat(np.arange(K), n)]
    P = np.exp(Z - Z.max(1, keepdims=True))
    P /= P.sum(1, keepdims=True)
    N = K * n
    F = np.mean(np.log(np.exp(Z).sum(1)) - np.sum(Y * Z, 1))
    assert abs(float(p.value(x)) - F) <= F64_IDENTITY
    g = jax.grad(p.value)(x)
    np.testing.assert_allclose(g.W, (P - Y).T @ H / (N * T), atol=F64_IDENTITY)
    np.testing.assert_allclose(g.H, (P - Y) @ W / (N * T), atol=F64_IDENTITY)


def test_depends_only_on_inverse_temperature():
    """(r_W, r_H, T) = (2, 0.5, 0.5) and (1, 1, 0.5) share s = 2: F agrees at matching points."""
    a = sph(3, 2, 4, radius_W=2.0, radius_H=0.5, temperature=0.5)
    b = sph(3, 2, 4, temperature=0.5)
    x = b.init(jax.random.key(2))
    xa = a.params(2.0 * x.W, 0.5 * x.H)
    assert abs(float(a.value(xa)) - float(b.value(x))) <= F64_IDENTITY


# ---- closed form -------------------------------------------------------------------------------
@pytest.mark.parametrize("K, d", [(2, 2), (4, 3), pytest.param(3, 2, marks=pytest.mark.slow),
                                  pytest.param(4, 7, marks=pytest.mark.slow),
                                  pytest.param(6, 9, marks=pytest.mark.slow)])
def test_closed_form_construction(K, d):
    rW, rH, T = 1.7, 0.6, 0.4
    p = sph(K, 3, d, radius_W=rW, radius_H=rH, temperature=T)
    pred = ufm.theory.predict(p)
    s = rW * rH / T
    assert abs(pred.value - _F_star(K, s)) <= F64_IDENTITY * pred.value
    C = np.eye(K) - 1 / K
    np.testing.assert_allclose(pred["gram_W"], rW ** 2 * K / (K - 1) * C, atol=F64_IDENTITY)
    np.testing.assert_allclose(pred["W_means"], rW * rH * K / (K - 1) * C, atol=F64_IDENTITY)
    x = p.params(**pred.construct(seed=3))
    report = ufm.compare(p, x, pred, tolerances=TOLERANCES)
    assert report.ok, str(report)
    # The value at the construction, evaluated by the model, is the formula.
    assert rel_err(float(p.value(x)), _F_star(K, s)) <= F64_IDENTITY


def test_predict_refuses_outside_the_theorem():
    with pytest.raises(NoClosedForm, match="K-1"):
        ufm.theory.predict(sph(6, 2, 4))
    for loss in (LabelSmoothing(0.1), Focal(2.0)):
        with pytest.raises(NoClosedForm, match="cross-entropy"):
            ufm.theory.predict(sph(3, 2, 3, loss=loss))
    with pytest.raises(NoClosedForm, match="imbalanced"):
        ufm.theory.predict(sph(3, (2, 3, 4), 3))


def test_metrics_detect_a_perturbation():
    p = sph(4, 3, 5, temperature=0.5)
    pred = ufm.theory.predict(p)
    x = p.params(**pred.construct(seed=0))
    y = p.manifold.retraction(x, p.manifold.projection(
        x, jax.tree.map(lambda a: 0.05 * jax.random.normal(jax.random.key(4), a.shape), x)))
    report = ufm.compare(p, y, pred, tolerances=TOLERANCES)
    failed = {r.quantity for r in report.failures()}
    assert {"value", "gram_W", "nc1", "nc2_W", "nc3_duality"} <= failed
    assert "max_sphere_error" not in failed  # the perturbed point is still on the manifold
    off = x._replace(W=1.01 * x.W)
    assert "max_sphere_error" in {r.quantity for r in ufm.compare(p, off, pred, tolerances=TOLERANCES).failures()}


# ---- solvers ------------------------------------------------------------------------------------
SOLVE_CASES = [  # (K, n, d, r_W, r_H, T): d = K-1, K, K+3 and s from 0.6 to 8
    (4, 3, 3, 1.0, 1.0, 0.5),
    (4, 3, 4, 2.0, 0.5, 0.125),
    (3, 4, 6, 1.0, 0.6, 1.0),
]


def _check(p, sol, gtol):
    pred = ufm.theory.predict(p)
    assert int(sol.status) == Status.CONVERGED and float(sol.grad_norm) <= gtol
    assert rel_err(float(sol.value), pred.value) <= VALUE_RTOL
    m = ufm.metrics.measure(p, sol.params)
    for name in ("gram_W", "gram_means", "W_means"):
        assert rel_err(m[name], pred[name]) <= GRAM_RTOL, name
    assert _sphere_error(sol.params, p) <= ON_MANIFOLD
    assert m["nc1"] <= 1e-12 and m["nc4"] == 0


@pytest.mark.parametrize("K, n, d, rW, rH, T", SOLVE_CASES)
def test_trust_region_reaches_the_minimiser(K, n, d, rW, rH, T):
    p = sph(K, n, d, radius_W=rW, radius_H=rH, temperature=T)
    for seed in range(3):
        sol = ufm.solve(p, TrustRegion(), p.init(jax.random.key(seed)), gtol=1e-12, max_steps=100)
        _check(p, sol, 1e-12)
        assert int(sol.num_steps) <= 40
    if d == K:  # certified (one shape, to keep the dense Hessian's compile time down): PSD with
        # the §10.3 number of zero eigenvalues.
        ev = ufm.landscape.hessian_eigenvalues(p, sol.params, tangent_only=True)
        z = zero_eigenvalue_count(K, d)
        assert np.max(np.abs(ev[:z])) <= 1e-8 * ev[-1] and ev[z] > 1e-4 * ev[-1]


@pytest.mark.parametrize("K, n, d, rW, rH, T", SOLVE_CASES)
def test_riemannian_gradient_descent_reaches_the_minimiser(K, n, d, rW, rH, T):
    p = sph(K, n, d, radius_W=rW, radius_H=rH, temperature=T)
    for seed in range(3):
        sol = ufm.solve(p, RiemannianGradientDescent(), p.init(jax.random.key(10 + seed)),
                        gtol=1e-12, max_steps=5000)
        _check(p, sol, 1e-12)


@pytest.mark.parametrize("solver", [GradientDescent(0.3, momentum=0.9),
                                    GradientDescent(0.3, momentum=0.9, nesterov=True),
                                    Adam(1e-2)], ids=["momentum", "nesterov", "adam"])
def test_momentum_and_adam_with_projection_as_transport(solver):
    p = sph(4, 3, 5, temperature=0.5)
    sol = ufm.solve(p, solver, p.init(jax.random.key(3)), gtol=1e-11, max_steps=5000)
    _check(p, sol, 1e-11)


def test_lbfgs_refuses_the_sphere():
    p = sph(3, 2, 3)
    with pytest.raises(ValueError, match="LBFGS is Euclidean.*SphericalUFM"):
        ufm.solve(p, LBFGS(), p.init(jax.random.key(0)))


def test_solver_validation():
    for kwargs, name in [(dict(shrink=1.0), "shrink"), (dict(sufficient_decrease=0.0), "sufficient_decrease"),
                         (dict(initial_step=-1.0), "initial_step"), (dict(max_backtracks=0), "max_backtracks"),
                         (dict(growth=0.5), "growth")]:
        with pytest.raises(ValueError, match=name):
            RiemannianGradientDescent(**kwargs)
    for kwargs, name in [(dict(max_radius=0.0), "max_radius"), (dict(accept_ratio=0.3), "accept_ratio"),
                         (dict(kappa=0.0), "kappa"), (dict(max_inner=0), "max_inner"),
                         (dict(curvature_tol=-1.0), "curvature_tol")]:
        with pytest.raises(ValueError, match=name):
            TrustRegion(**kwargs)


def test_hvp_quadratic_form_is_second_derivative_along_retraction():
    """⟨v, Hess F(x)[v]⟩ = d²/dt² F(R_x(t v)) at t = 0 for the second-order retraction: an
    independent check of the Riemannian Hessian operator the solvers and landscape share."""
    p = sph(3, 2, 4, temperature=0.5, bias=True)
    x = p.init(jax.random.key(5))._replace(b=jnp.array([0.3, -0.1, 0.2]))
    v = p.manifold.projection(x, jax.tree.map(lambda a: jax.random.normal(jax.random.key(6), a.shape), x))

    def along(t):
        return p.value(p.manifold.retraction(x, jax.tree.map(lambda a: t * a, v)))

    second = jax.grad(jax.grad(along))(0.0)
    hv = ufm.landscape.hvp(p, x, v)
    quad = sum(jnp.vdot(a, b) for a, b in zip(jax.tree.leaves(v), jax.tree.leaves(hv)))
    np.testing.assert_allclose(quad, second, rtol=1e-10)


def test_trust_region_on_a_euclidean_problem():
    """The same trust region is plain Newton-tCG on the Euclidean UFM (cross-check: §3 CE)."""
    p = ufm.UFM(3, 4, 3, CrossEntropy(), 1e-2, 1e-2, bias=False)
    sol = ufm.solve(p, TrustRegion(), p.init(jax.random.key(0), scale=0.5), gtol=1e-12, max_steps=200)
    assert sol.status_name == "converged"
    assert rel_err(float(sol.value), ufm.theory.predict(p).value) <= VALUE_RTOL


def test_bias_keeps_the_zero_bias_etf():
    """[derived] With an unregularised bias the minimum value is unchanged and b − mean(b) = 0.

    Verified from random starts with a random non-zero initial bias."""
    p = sph(4, 3, 4, temperature=0.25, bias=True)
    pred = ufm.theory.predict(p)
    for seed in range(2):
        x = p.init(jax.random.key(seed))._replace(b=jax.random.normal(jax.random.key(50 + seed), (4,)))
        sol = ufm.solve(p, TrustRegion(), x, gtol=1e-12, max_steps=100)
        assert sol.status_name == "converged"
        assert rel_err(float(sol.value), _F_star(4, 4.0)) <= VALUE_RTOL
        b = np.asarray(sol.params.b)
        assert np.max(np.abs(b - b.mean())) <= 1e-7
        report = ufm.compare(p, sol, pred, tolerances=TOLERANCES, gtol=1e-12)
        assert report.ok, str(report)


def test_vmap_over_temperature():
    """Temperature is an array leaf: one compiled trust-region solve per grid."""
    p = sph(3, 2, 3)
    temps = jnp.array([0.25, 0.5, 2.0])
    sols = ufm.sweep.vmap_solve(p, TrustRegion(), p.init(jax.random.key(0)), {"temperature": temps},
                                gtol=1e-12, max_steps=100)
    for T, v in zip(temps, sols.value):
        assert rel_err(float(v), _F_star(3, 1.0 / float(T))) <= VALUE_RTOL


# ---- landscape (§10.3) --------------------------------------------------------------------------
def test_antipodal_strict_saddle():
    K, n, d, T = 4, 3, 5, 0.5
    p = sph(K, n, d, temperature=T)
    W = simplex_etf(K, d, np.random.default_rng(0))
    x = p.params(W, -np.repeat(W, n, axis=0))
    s = 1.0 / T
    assert abs(float(p.value(x)) - math.log(1 + (K - 1) * math.exp(s * K / (K - 1)))) <= F64_IDENTITY
    assert abs(antipodal_value(K, s) - float(p.value(x))) <= F64_IDENTITY
    rgrad = p.manifold.euclidean_to_riemannian_gradient(x, jax.grad(p.value)(x))
    assert float(p.manifold.norm(x, rgrad)) <= 1e-14  # exactly 0 up to rounding
    ev = ufm.landscape.hessian_eigenvalues(p, x, tangent_only=True)
    assert abs(ev[0] - (-0.87)) < 5e-3  # docs/theory/spherical.md: −0.87
    # The trust region escapes from a perturbed saddle and reaches F*.
    y = p.manifold.retraction(x, p.manifold.projection(
        x, jax.tree.map(lambda a: 1e-3 * jax.random.normal(jax.random.key(1), a.shape), x)))
    sol = ufm.solve(p, TrustRegion(), y, gtol=1e-12, max_steps=200)
    assert rel_err(float(sol.value), spherical_value(K, s)) <= VALUE_RTOL


@pytest.mark.parametrize("d, K", [(3, 4), (5, 3), pytest.param(4, 4, marks=pytest.mark.slow),
                                  pytest.param(5, 4, marks=pytest.mark.slow),
                                  pytest.param(6, 4, marks=pytest.mark.slow)])
def test_zero_eigenvalues_at_the_minimum(d, K):
    p = sph(K, 2, d, temperature=0.5)
    x = p.params(**ufm.theory.predict(p).construct(seed=d))
    ev = ufm.landscape.hessian_eigenvalues(p, x, tangent_only=True)
    expected = d * (d - 1) // 2 - (d - K + 1) * (d - K) // 2  # docs/theory/spherical.md
    assert expected == zero_eigenvalue_count(K, d)
    assert len(ev) == (K + 2 * K) * (d - 1)  # tangent dimension
    tol = 1e-10 * ev[-1]
    assert int(np.sum(np.abs(ev) <= tol)) == expected
    assert ev[0] >= -tol and ev[expected] > 1e-3 * ev[-1]
    # The ambient matrix has K + N extra (normal) zeros.
    full = ufm.landscape.hessian_eigenvalues(p, x, tangent_only=False)
    assert int(np.sum(np.abs(full) <= tol)) == expected + 3 * K


@pytest.mark.parametrize("module", ["ufm.problems.spherical", "ufm.theory.spherical",
                                    "ufm.metrics.spherical", "ufm.solvers.riemannian"])
def test_doctests(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
