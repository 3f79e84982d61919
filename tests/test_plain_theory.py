"""Plain-UFM closed forms (docs/theory/mse.md, ce-family.md) against formulas written out here, constructions,
and stationarity certificates computed independently of the theory code."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ufm
from ufm.compare import TOLERANCES
from ufm.theory import NoClosedForm, plain
from ufm.theory.frames import centering

from helpers import F64_IDENTITY, rel_err


def test_mse_no_bias_matches_section_1_formulas():
    K, n, lw, lh = 4, 5, 2e-2, 1e-2
    tau = math.sqrt(n * lw * lh)
    a, c = K * tau, 1 - K * tau
    pred = plain.mse_no_bias([n] * K, K + 1, lw, lh)
    rho_W = c * math.sqrt(n * lh / lw)
    assert pred.value == pytest.approx(a - a * a / 2, rel=1e-14)
    assert pred["norm_W_sq"] == pytest.approx(K * rho_W, rel=1e-14)
    assert pred["norm_H_sq"] == pytest.approx(K * c * math.sqrt(n * lw / lh), rel=1e-14)
    np.testing.assert_allclose(pred["gram_W"], rho_W * np.eye(K), atol=1e-15)
    np.testing.assert_allclose(pred["W_means"], c * np.eye(K), atol=1e-15)


def test_mse_no_bias_low_dim_and_zero():
    K, n, lam = 6, 3, 1e-2
    tau = math.sqrt(n) * lam
    c = 1 - K * tau
    for d in (2, 4):
        assert plain.mse_no_bias([n] * K, d, lam, lam).value == pytest.approx(0.5 - d * c * c / (2 * K), rel=1e-14)
    zero = plain.mse_no_bias([n] * K, 4, 0.5, 0.5)
    assert zero.regime == "zero" and zero.value == pytest.approx(0.5, rel=1e-15)


def test_mse_free_bias_matches_section_2():
    K, n, lam = 5, 4, 1e-2
    a = K * math.sqrt(n) * lam
    pred = plain.mse_free_bias(K, n, K - 1, lam, lam)
    assert pred.value == pytest.approx((K - 1) / K * (a - a * a / 2), rel=1e-14)
    np.testing.assert_allclose(pred["bias"], np.full(K, 1 / K))
    assert plain.mse_free_bias(K, n, K, 1.0, 1.0).value == pytest.approx((K - 1) / (2 * K))


def test_regularised_bias_regimes():
    K, n, lam = 4, 5, 2e-2
    tau = math.sqrt(n) * lam
    star = K * tau / (1 - K * tau)
    below = plain.mse_regularised_bias(K, n, K, lam, lam, 0.5 * star)
    above = plain.mse_regularised_bias(K, n, K, lam, lam, 2 * star)
    assert below.scalars["u"] == 0 and below.scalars["b0"] == pytest.approx(1 / (K * (1 + 0.5 * star)))
    assert above.scalars["u"] == pytest.approx(1 - K * tau * (1 + 1 / (2 * star)))
    assert above.scalars["b0"] == pytest.approx(tau / (2 * star))
    # The centred classifier is a simplex ETF in both regimes.
    for p in (below, above):
        G = p["gram_W"]
        C = centering(K)
        Gc = C @ G @ C
        np.testing.assert_allclose(Gc / np.trace(Gc), C / (K - 1), atol=1e-15)
    with pytest.raises(NoClosedForm, match="d >= K"):
        plain.mse_regularised_bias(K, n, K - 1, lam, lam, 2 * star)


def test_ce_value_formula_equals_scalar_minimum():
    # F* closed form against a brute-force minimum of f(m) = ℓ̂(m) + (K−1)τm on a fine grid.
    for K, tau in [(3, 0.05), (10, 0.01), (4, 0.2)]:
        m = np.linspace(0, 30, 300001)
        f = np.logaddexp(0, np.log(K - 1) - m) + (K - 1) * tau * m
        assert plain.ce_value(K, tau) == pytest.approx(f.min(), rel=1e-9)
        assert plain.ce_margin(K, tau) == pytest.approx(m[f.argmin()], abs=1e-3)
    assert plain.ce_value(4, 0.3) == pytest.approx(math.log(4))


def test_ce_refuses_low_dimension_and_imbalance():
    with pytest.raises(NoClosedForm, match="open problem"):
        ufm.theory.predict(ufm.UFM(6, 2, 3, ufm.losses.CrossEntropy(), 5e-3, 5e-3))
    with pytest.raises(NoClosedForm, match="imbalanced"):
        ufm.theory.predict(ufm.UFM(3, (3, 2, 1), 3, ufm.losses.CrossEntropy(), 5e-3, 5e-3))


CONSTRUCTED = [
    ("mse", False, 0.0, (5, 5, 5, 5), 4, 2e-2, 2e-2),
    ("mse", False, 0.0, (6, 3, 1), 3, 3e-2, 3e-2),
    ("mse", False, 0.0, (6, 3, 1), 2, 3e-2, 3e-2),
    ("mse", False, 0.0, (6, 3, 1), 3, 0.12, 0.12),
    ("mse", True, 0.0, (5, 5, 5, 5), 3, 2e-2, 1e-2),
    ("mse", True, 0.0, (4,) * 5, 2, 1e-2, 1e-2),
    ("mse", True, 0.05, (5,) * 4, 4, 2e-2, 2e-2),
    ("mse", True, 1.0, (5,) * 4, 4, 2e-2, 2e-2),
    ("mse", True, 1.0, (5,) * 4, 4, 0.2, 0.2),
    ("ce", True, 0.0, (5,) * 4, 3, 5e-3, 5e-3),
    ("ce", True, 1e-2, (3,) * 6, 8, 1e-2, 2e-3),
    ("ce", False, 0.0, (4,) * 5, 5, 1e-2, 1e-2),
    ("ce", True, 0.0, (5,) * 4, 6, 0.15, 0.15),
]


@pytest.mark.parametrize("loss, bias, lb, counts, d, lw, lh", CONSTRUCTED)
def test_constructed_minimiser_is_certified(loss, bias, lb, counts, d, lw, lh):
    """The construction is stationary, second-order stable, has value F*, and its measured
    quantities equal the predicted ones: an independent check of every closed form."""
    loss_obj = ufm.losses.MSE() if loss == "mse" else ufm.losses.CrossEntropy()
    problem = ufm.UFM(len(counts), list(counts), d, loss_obj, lw, lh, lambda_b=lb, bias=bias)
    pred = ufm.theory.predict(problem)
    params = problem.params(**pred.construct(seed=3))
    grad = jax.grad(problem.value)(params)
    gnorm = float(jnp.sqrt(sum(jnp.sum(g ** 2) for g in jax.tree.leaves(grad))))
    assert gnorm < 1e-13
    assert float(problem.value(params)) == pytest.approx(pred.value, rel=1e-13)
    evals = ufm.landscape.hessian_eigenvalues(problem, params)
    assert evals[0] > -1e-10 * np.abs(evals).max()
    # Exact construction: every quantity to 1e-10 (NC1 and NC4 keep their stricter tolerances).
    strict = {k: (1e-10, kind) for k, (tol, kind) in TOLERANCES.items() if tol > 1e-10}
    report = ufm.compare(problem, params, pred, tolerances=strict)
    assert report.ok, str(report)


def test_perturbation_breaks_the_comparison():
    problem = ufm.UFM(4, 5, 4, ufm.losses.CrossEntropy(), 5e-3, 5e-3)
    pred = ufm.theory.predict(problem)
    params = problem.params(**pred.construct(seed=0))
    noise = 1e-2 * jax.random.normal(jax.random.key(1), params.H.shape)
    bad = params._replace(H=params.H + noise)
    report = ufm.compare(problem, bad, pred)
    failed = {r.quantity for r in report.failures()}
    assert {"value", "nc1", "gram_means"} <= failed


def test_rotation_invariance_of_prediction_quantities():
    problem = ufm.UFM(5, 3, 6, ufm.losses.MSE(), 1e-2, 1e-2)
    pred = ufm.theory.predict(problem)
    a = ufm.metrics.measure(problem, problem.params(**pred.construct(seed=1)))
    b = ufm.metrics.measure(problem, problem.params(**pred.construct(seed=2)))
    for name in ("value", "gram_W", "gram_means", "W_means", "margin"):
        assert rel_err(a[name], b[name]) < F64_IDENTITY, name
    assert a["nc1"] < 1e-24 and b["nc1"] < 1e-24


def test_float32_parameters_get_the_float32_floor():
    """A float32 copy of the exact minimiser passes at float32 rounding, and the report says
    which precision it judged: every bound carries the dtype's rounding floor (1000 ulps), so the
    float32 bounds are far wider than the float64 ones of the same point."""
    problem = ufm.UFM(4, 5, 4, ufm.losses.CrossEntropy(), 5e-3, 5e-3)
    pred = ufm.theory.predict(problem)
    exact = pred.construct(seed=0)
    single = ufm.UFMParams(*(np.asarray(exact[k], np.float32) for k in ("W", "H", "b")))
    report = ufm.compare(problem, single, pred)
    assert report.ok, str(report)
    assert any("float64" in note for note in report.notes)
    float64 = ufm.compare(problem, problem.params(**exact), pred)
    assert float64.ok and not any("float64" in n for n in float64.notes)
    for name in ("value", "gram_W", "nc1"):
        assert report[name].tolerance > 1e6 * float64[name].tolerance, name
    # A fixed tolerance below float32 rounding is raised to it (1000 float32 ulps).
    fixed = ufm.compare(problem, single, pred, tolerances={"gram_W": (1e-12, "rel")})
    assert fixed["gram_W"].tolerance == pytest.approx(1e3 * np.finfo(np.float32).eps)
