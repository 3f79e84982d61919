"""Property test: every exact construction ``pred.construct(seed)`` passes ``ufm.compare`` against
its own prediction and is stationary, over a grid of configurations per model (docs/theory/mse.md, ce-family.md,
§7, §8): imbalanced counts, d = K−1, d = K, d > K, d < K, and both sides of every threshold.

Stationarity is judged against the gradient's own scale: with G = ∂(mean loss)/∂(outputs), every
block of the gradient is a product of G with W, H or 1 plus a decay term, so
‖G‖(‖W‖ + ‖H‖ + √N) + λ_W‖W‖ + λ_H‖H‖ + λ_b‖b‖ bounds its size; the measured gradient must be
below 1e-11 of it. The thresholds are placed with ``ufm.theory.threshold`` *and* written out
here (the two are compared in tests/test_threshold.py).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ufm
from ufm import losses
from ufm.problems import MultiLabelUFM, RegressionUFM, UFM
from ufm.problems.regression import synthetic_targets

STATIONARY_RTOL = 1e-11
BELOW, ABOVE = 0.99, 1.01  # P = λ_W λ_H as a multiple of the threshold P*


def _norm(tree) -> float:
    return float(jnp.sqrt(sum(jnp.sum(x ** 2) for x in jax.tree.leaves(tree))))


def _fit(problem):
    """outputs -> mean sample loss (the data term of the objective)."""
    if isinstance(problem, RegressionUFM):
        return lambda Z: 0.5 * jnp.mean(jnp.sum((Z - problem.targets) ** 2, axis=1))
    return lambda Z: jnp.mean(problem.loss(Z, problem.targets))


def _relative_gradient(problem, params) -> float:
    grad = _norm(jax.grad(problem.value)(params))
    G = _norm(jax.grad(_fit(problem))(problem.outputs(params)))
    W, H = params.W, params.H
    b = getattr(params, "b", None)
    N = problem.num_samples
    scale = (G * (_norm(W) + _norm(H) + math.sqrt(N)) + float(problem.lambda_W) * _norm(W)
             + float(problem.lambda_H) * _norm(H)
             + (float(getattr(problem, "lambda_b", 0.0)) * _norm(b) if b is not None else 0.0))
    return grad / scale


def _check(problem, seed=3):
    pred = ufm.theory.predict(problem)
    assert pred.regime in ufm.theory.REGIMES, pred.regime
    params = problem.params(**pred.construct(seed=seed))
    report = ufm.compare(problem, params, pred)
    assert report.ok, f"{pred.regime}\n{report}"
    assert float(problem.value(params)) == pytest.approx(pred.value, rel=1e-12)
    assert _relative_gradient(problem, params) <= STATIONARY_RTOL
    return pred


# ---- plain UFM ------------------------------------------------------------------------------------

def _ufm(counts, d, loss, P, lambda_b=0.0, bias=True, lambda_W=0.02):
    counts = tuple(counts)
    K = len(counts)
    n = counts[0] if len(set(counts)) == 1 else counts
    return UFM(K, n, d, loss, lambda_W, P / lambda_W, lambda_b=lambda_b, bias=bias)


MSE, CE = losses.MSE(), losses.CrossEntropy()
LS, FL, FL3 = losses.LabelSmoothing(0.2), losses.Focal(2.0), losses.Focal(3.0)


def _p_mse(counts):
    """Bias-free MSE: some s_k = √n_k − N√P > 0 iff P < n_max/N² (docs/theory/mse.md, T1)."""
    return max(counts) / sum(counts) ** 2


def _p_balanced(K, n, alpha=0.0):
    """Kτ + α < 1 with τ = √(nP): P* = (1 − α)²/(K²n) (MSE, CE, LS)."""
    return (1 - alpha) ** 2 / (K * K * n)


PLAIN = [
    # (id, counts, d, loss, P, lambda_b, bias, expected regime)
    ("mse-nobias-d=K", (5,) * 4, 4, MSE, 0.3 * _p_balanced(4, 5), 0.0, False, "collapse"),
    ("mse-nobias-d>K", (3,) * 3, 5, MSE, 0.5 * _p_balanced(3, 3), 0.0, False, "collapse"),
    ("mse-nobias-d<K", (3,) * 6, 4, MSE, 0.3 * _p_balanced(6, 3), 0.0, False, "partial-rank"),
    ("mse-nobias-below", (5,) * 4, 4, MSE, BELOW * _p_balanced(4, 5), 0.0, False, "collapse"),
    ("mse-nobias-above", (5,) * 4, 4, MSE, ABOVE * _p_balanced(4, 5), 0.0, False, "zero"),
    ("mse-nobias-imbalanced", (6, 3, 1), 3, MSE, 9e-4, 0.0, False, "collapse"),
    ("mse-nobias-imbalanced-minority-vanished", (6, 3, 1), 3, MSE, 0.0144, 0.0, False, "partial-rank"),
    ("mse-nobias-imbalanced-d<K", (6, 3, 1), 2, MSE, 9e-4, 0.0, False, "partial-rank"),
    ("mse-nobias-imbalanced-below", (6, 3, 1), 3, MSE, BELOW * _p_mse((6, 3, 1)), 0.0, False, "partial-rank"),
    ("mse-nobias-imbalanced-above", (6, 3, 1), 3, MSE, ABOVE * _p_mse((6, 3, 1)), 0.0, False, "zero"),
    ("mse-bias-d=K-1", (5,) * 4, 3, MSE, 0.3 * _p_balanced(4, 5), 0.0, True, "collapse"),
    ("mse-bias-d=K", (5,) * 4, 4, MSE, 0.3 * _p_balanced(4, 5), 0.0, True, "collapse"),
    ("mse-bias-d>K", (3,) * 3, 6, MSE, 0.3 * _p_balanced(3, 3), 0.0, True, "collapse"),
    ("mse-bias-d<K-1", (4,) * 5, 2, MSE, 0.2 * _p_balanced(5, 4), 0.0, True, "partial-rank"),
    ("mse-bias-below", (5,) * 4, 3, MSE, BELOW * _p_balanced(4, 5), 0.0, True, "collapse"),
    ("mse-bias-above", (5,) * 4, 3, MSE, ABOVE * _p_balanced(4, 5), 0.0, True, "zero"),
    # Regularised bias: λ_b* = Kτ/(1 − Kτ); u = 0 below it, u > 0 above it.
    ("mse-regbias-u0", (5,) * 4, 4, MSE, 0.16 * _p_balanced(4, 5), 0.05, True, "collapse"),
    ("mse-regbias-u>0", (5,) * 4, 4, MSE, 0.16 * _p_balanced(4, 5), 1.0, True, "collapse"),
    ("mse-regbias-u0-d=K-1", (5,) * 4, 3, MSE, 0.16 * _p_balanced(4, 5), 0.05, True, "collapse"),
    ("mse-regbias-u>0-d>K", (3,) * 3, 5, MSE, 0.2 * _p_balanced(3, 3), 2.0, True, "collapse"),
    ("mse-regbias-below", (5,) * 4, 4, MSE, BELOW * _p_balanced(4, 5), 0.5, True, "collapse"),
    ("mse-regbias-above", (5,) * 4, 4, MSE, ABOVE * _p_balanced(4, 5), 0.5, True, "zero"),
    ("ce-bias-d=K-1", (5,) * 4, 3, CE, 0.1 * _p_balanced(4, 5), 0.0, True, "collapse"),
    ("ce-bias-d=K", (5,) * 4, 4, CE, 0.1 * _p_balanced(4, 5), 0.0, True, "collapse"),
    ("ce-nobias-d>K", (3,) * 3, 5, CE, 0.1 * _p_balanced(3, 3), 0.0, False, "collapse"),
    ("ce-regbias", (3,) * 5, 6, CE, 0.1 * _p_balanced(5, 3), 0.01, True, "collapse"),
    ("ce-below", (5,) * 4, 3, CE, BELOW * _p_balanced(4, 5), 0.0, True, "collapse"),
    ("ce-above", (5,) * 4, 3, CE, ABOVE * _p_balanced(4, 5), 0.0, True, "zero"),
    ("ce-nobias-above", (5,) * 4, 4, CE, ABOVE * _p_balanced(4, 5), 0.0, False, "zero"),
    ("ls-bias", (5,) * 4, 3, LS, 0.1 * _p_balanced(4, 5, 0.2), 0.0, True, "collapse"),
    ("ls-nobias-d>K", (3,) * 3, 5, LS, 0.1 * _p_balanced(3, 3, 0.2), 0.0, False, "collapse"),
    ("ls-regbias", (5,) * 4, 4, LS, 0.1 * _p_balanced(4, 5, 0.2), 0.1, True, "collapse"),
    ("ls-below", (5,) * 4, 3, LS, BELOW * _p_balanced(4, 5, 0.2), 0.0, True, "collapse"),
    ("ls-above-where-ce-collapses", (5,) * 4, 3, LS, ABOVE * _p_balanced(4, 5, 0.2), 0.0, True, "zero"),
    ("fl-bias", (5,) * 4, 3, FL, 0.1 * _p_balanced(4, 5), 0.0, True, "collapse"),
    ("fl-nobias-d>K", (3,) * 3, 5, FL, 0.1 * _p_balanced(3, 3), 0.0, False, "collapse"),
    ("fl-regbias", (5,) * 4, 4, FL, 0.1 * _p_balanced(4, 5), 0.1, True, "collapse"),
]


def _fl_local(K, n, gamma):
    """P at the local FL threshold Kτ = g_FL = (1 − 1/K)^γ (1 + γ log K/(K−1)) (docs/theory/ce-family.md)."""
    g = (1 - 1 / K) ** gamma * (1 + gamma * math.log(K) / (K - 1))
    return (g / K) ** 2 / n


@pytest.mark.parametrize("name, counts, d, loss, P, lambda_b, bias, regime", PLAIN,
                         ids=[row[0] for row in PLAIN])
def test_plain_construction(name, counts, d, loss, P, lambda_b, bias, regime):
    problem = _ufm(counts, d, loss, P, lambda_b=lambda_b, bias=bias)
    assert _check(problem).regime == regime


@pytest.mark.parametrize("side, regime", [(BELOW, "collapse"), (ABOVE, "zero")])
def test_focal_small_K_threshold_is_the_local_one(side, regime):
    # K = 4: r of §9 is decreasing, so the global threshold is Kτ = g_FL.
    problem = _ufm((5,) * 4, 3, FL, side * _fl_local(4, 5, 2.0))
    assert _check(problem).regime == regime


@pytest.mark.parametrize("where, regime", [("local", "collapse"), ("window", "collapse"),
                                           ("global", "collapse"), ("above", "zero")])
def test_focal_window_at_large_K(where, regime):
    """K = 20, γ = 3, d = K−1: between the local threshold Kτ = g_FL (where the origin becomes a
    local minimum) and the global one the ETF is still the global minimiser (docs/theory/ce-family.md)."""
    K, n = 20, 1
    local = _fl_local(K, n, 3.0)
    P_star = ufm.theory.threshold(_ufm((n,) * K, K - 1, FL3, local))
    assert P_star > local * (1 + 1e-3)  # the window is open
    P = {"local": local * (1 + 1e-6), "window": math.sqrt(local * P_star),
         "global": P_star * (1 - 1e-6), "above": P_star * ABOVE}[where]
    assert _check(_ufm((n,) * K, K - 1, FL3, P)).regime == regime


# ---- multi-label PAL ------------------------------------------------------------------------------

def _pal_threshold(K, counts):
    """Σ_m n_m C(K−2, m−1)/N² with N = Σ_m n_m C(K, m) (docs/theory/multilabel.md), written out."""
    N = sum(n * math.comb(K, m) for m, n in counts.items())
    return sum(n * math.comb(K - 2, m - 1) for m, n in counts.items()) / N ** 2


MULTILABEL = [
    ("m1", 4, {1: 3}, 4, 0.2, 0.0, True),
    ("m12", 4, {1: 2, 2: 1}, 4, 0.2, 1e-2, True),
    ("m12-d=K-1", 4, {1: 2, 2: 1}, 3, 0.2, 0.0, True),
    ("m12-nobias-d>K", 4, {1: 2, 2: 1}, 6, 0.2, 0.0, False),
    ("m123", 5, {1: 1, 2: 1, 3: 1}, 5, 0.1, 1e-2, True),
    ("m2-only", 4, {2: 1}, 4, 0.2, 0.1, True),
    ("m12-below", 4, {1: 2, 2: 1}, 4, BELOW, 0.1, True),
    ("m12-above", 4, {1: 2, 2: 1}, 4, ABOVE, 0.1, True),
    ("m123-below", 5, {1: 1, 2: 1, 3: 1}, 5, BELOW, 0.0, True),
    ("m123-above", 5, {1: 1, 2: 1, 3: 1}, 5, ABOVE, 0.0, True),
    ("m1-above-nobias", 4, {1: 3}, 4, ABOVE, 0.0, False),
]


@pytest.mark.parametrize("name, K, counts, d, factor, lambda_b, bias", MULTILABEL,
                         ids=[row[0] for row in MULTILABEL])
def test_multilabel_construction(name, K, counts, d, factor, lambda_b, bias):
    P = factor * _pal_threshold(K, counts)
    problem = MultiLabelUFM.balanced(K, counts, d, losses.PickAllLabel(), 0.05, P / 0.05,
                                     lambda_b=lambda_b, bias=bias)
    pred = _check(problem)
    assert pred.regime == ("zero" if factor > 1 else "collapse")


# ---- regression -----------------------------------------------------------------------------------

SPECTRUM = (1.0, 0.5, 0.2)  # eigenvalues of the centred target covariance
N_REG = 12

REGRESSION = [
    # (id, c = N λ_W λ_H, d, expected regime); c ≥ λ_max = 1 is zero, c < λ_min = 0.2 full rank.
    ("collapse", 0.05, 4, "collapse"),
    ("collapse-d=t", 0.05, 3, "collapse"),
    ("partial-rank", 0.3, 4, "partial-rank"),
    ("below-lambda-min", BELOW * 0.2, 4, "collapse"),
    ("above-lambda-min", ABOVE * 0.2, 4, "partial-rank"),
    ("below-lambda-max", BELOW * 1.0, 4, "partial-rank"),
    ("above-lambda-max", ABOVE * 1.0, 4, "zero"),
    ("zero", 2.0, 4, "zero"),
    ("d<t", 0.05, 2, "partial-rank"),
    ("d<t-partial", 0.3, 1, "partial-rank"),
]


@pytest.mark.parametrize("name, c, d, regime", REGRESSION, ids=[row[0] for row in REGRESSION])
def test_regression_construction(name, c, d, regime):
    Y = synthetic_targets(0, N_REG, SPECTRUM, mean=[0.5, -1.0, 2.0])
    lambda_W = 0.1
    problem = RegressionUFM(Y, d, lambda_W, c / (N_REG * lambda_W))
    assert _check(problem).regime == regime


def test_a_perturbed_construction_is_not_stationary():
    """The stationarity measure can fail: a 1e-6 perturbation of an exact minimiser gives a
    relative gradient far above the bound."""
    problem = _ufm((5,) * 4, 4, CE, 0.1 * _p_balanced(4, 5))
    params = problem.params(**ufm.theory.predict(problem).construct(seed=0))
    bad = params._replace(H=params.H + 1e-6 * np.random.default_rng(0).standard_normal(params.H.shape))
    assert _relative_gradient(problem, bad) > 1e3 * STATIONARY_RTOL
