"""ufm.compare: certificate-derived bounds, the gradient norm against the solve's own gtol, and
reports (never exceptions) for failed solves."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ufm
from ufm.compare import certified_solve
from ufm.problems._base import UFMParams


def _solve(problem, gtol, seed=0):
    return certified_solve(problem, ufm.solvers.LBFGS(),
                           problem.init(jax.random.key(seed)), gtol=gtol)


PROBLEMS = {
    "ce": ufm.UFM(3, 3, 2, ufm.losses.CrossEntropy(), 1e-2, 1e-2),
    "mse-nobias": ufm.UFM(3, 3, 3, ufm.losses.MSE(), 2e-2, 2e-2, bias=False),
    "mse-zero": ufm.UFM(3, 3, 3, ufm.losses.MSE(), 0.3, 0.3),
}


@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_converged_solve_passes_at_the_right_minimiser_and_fails_at_another(name):
    p = PROBLEMS[name]
    sol = _solve(p, 1e-8)
    assert sol.status_name == "converged"
    report = ufm.compare(p, sol, ufm.theory.predict(p))
    assert report.ok, str(report)
    assert report["grad_norm"].tolerance == pytest.approx(1e-8)  # the solve's own gtol
    assert {r.basis for r in report.rows} >= {"gtol", "certificate", "status"}
    # The prediction for a 10× smaller λ_H is another minimiser: the bounds must catch it.
    other = ufm.UFM(p.num_classes, p.num_per_class, p.dim, p.loss, p.lambda_W, 0.1 * p.lambda_H,
                    lambda_b=p.lambda_b, bias=p.bias)
    wrong = ufm.compare(p, sol, ufm.theory.predict(other))
    assert not wrong.ok and "value" in {r.quantity for r in wrong.failures()}


def test_grad_norm_is_judged_against_the_solution_gtol():
    p = PROBLEMS["ce"]
    sol = _solve(p, 1e-8)
    pred = ufm.theory.predict(p)
    assert ufm.compare(p, sol, pred)["grad_norm"].ok
    strict = sol._replace(gtol=jnp.asarray(1e-30))
    assert not ufm.compare(p, strict, pred)["grad_norm"].ok
    assert not ufm.compare(p, sol, pred, gtol=1e-30).ok


def test_ce_below_k_minus_one_is_not_the_etf():
    """A converged CE point at d = K−2 against the ETF prediction of d = K−1: the ETF value is a
    strict lower bound that is not attained (docs/theory/ce-family.md), and the bounds must say so."""
    low = ufm.UFM(4, 2, 2, ufm.losses.CrossEntropy(), 5e-3, 5e-3)
    etf = ufm.theory.predict(ufm.UFM(4, 2, 3, ufm.losses.CrossEntropy(), 5e-3, 5e-3))
    sol = _solve(low, 1e-8)
    report = ufm.compare(low, sol, etf)
    assert not report.ok
    assert float(sol.value) > etf.value and not report["value"].ok


def test_failed_solves_give_reports_not_exceptions():
    p = PROBLEMS["ce"]
    pred = ufm.theory.predict(p)
    x = p.init(jax.random.key(0))
    nan = UFMParams(x.W * jnp.nan, x.H, x.b)
    bad = ufm.solve(p, ufm.solvers.LBFGS(), nan, gtol=1e-10)
    assert bad.status_name == "nonfinite"
    report = ufm.compare(p, bad, pred)
    assert not report.ok and report["status"].measured == "nonfinite"
    assert "status" in str(report) and "not finite" in str(report)
    short = ufm.solve(p, ufm.solvers.LBFGS(), x, gtol=1e-14, max_steps=2)
    assert short.status_name == "max_steps"
    report = ufm.compare(p, short, pred)
    assert not report.ok and not report["status"].ok and report["status"].measured == "max_steps"
    assert not ufm.compare(p, nan, pred).ok  # raw non-finite params too


def test_exact_constructions_pass_and_print_their_bounds():
    for p in [ufm.UFM(4, 2, 3, ufm.losses.CrossEntropy(), 1e-2, 2e-2),
              ufm.UFM(4, 2, 4, ufm.losses.MSE(), 1e-2, 1e-2, lambda_b=1.0),
              ufm.UFM(4, 2, 3, ufm.losses.MSE(), 0.2, 0.2)]:
        pred = ufm.theory.predict(p)
        report = ufm.compare(p, p.params(**pred.construct(seed=3)), pred)
        assert report.ok, str(report)
        text = str(report)
        assert f"regime: {pred.regime}" in text and "bound" in text and "certificate (dense)" in text
        d = report.to_dict()
        assert all("tolerance" in c and "basis" in c for c in d["checks"])


def test_two_class_constructions_pass_despite_rounding_of_vanishing_normalised_metrics():
    # K = 2 (ETF frame): the centred rows are antipodal, so equiangle is identically 0 and is
    # measured as a few ulps (1.1e-16). With a bound from L ≈ 0 and the ulp-moved copies (which can
    # round the same way) the exact minimiser failed at seed 7 (error 1.1e-16, bound 1.7e-21);
    # normalised metrics now carry an absolute eps·O(1) floor.
    p = ufm.UFM(2, 3, 3, ufm.losses.CrossEntropy(), 0.05, 0.02, lambda_b=0.3)
    pred = ufm.theory.predict(p)
    report = ufm.compare(p, p.params(**pred.construct(seed=7)), pred)
    assert report.ok, str(report)
    assert report["equiangle_W"].tolerance >= 1e3 * np.finfo(np.float64).eps
    # ... and a point that is not the ETF still fails its frame rows.
    bad = pred.construct(seed=7)
    bad["W"] = bad["W"] + 1e-6 * np.random.default_rng(0).standard_normal(bad["W"].shape)
    assert not ufm.compare(p, p.params(**bad), pred).ok


def test_float32_construction_passes_at_the_float32_floor():
    p = ufm.UFM(3, 2, 3, ufm.losses.CrossEntropy(), 1e-2, 1e-2)
    pred = ufm.theory.predict(p)
    c = pred.construct(seed=0)
    x32 = UFMParams(*(jnp.asarray(c[k], jnp.float32) for k in ("W", "H", "b")))
    report = ufm.compare(p, x32, pred)
    assert report.ok, str(report)
    assert any("below float64" in n for n in report.notes)
    eps32 = float(np.finfo(np.float32).eps)
    assert report["value"].tolerance >= 1e3 * eps32  # the float32 rounding floor
    # ... and float32 cannot hide a wrong prediction.
    other = ufm.theory.predict(ufm.UFM(3, 2, 3, ufm.losses.CrossEntropy(), 1e-2, 1.3e-2))
    assert not ufm.compare(p, x32, other).ok


def test_uncertified_comparison_says_so():
    p = PROBLEMS["mse-nobias"]
    pred = ufm.theory.predict(p)
    report = ufm.compare(p, p.params(**pred.construct(seed=0)), pred, hessian=False)
    assert report.ok and any("uncertified" in n for n in report.notes)
    assert "hessian_min_eig" not in {r.quantity for r in report.rows}
    assert math.isfinite(report["value"].tolerance)
