"""``ufm.theory.threshold(problem)``: the critical P* of the decay product P = λ_W λ_H (docs/theory/
§1-§3, §7, §8), checked against the formula written out here (or an independent numerical
computation: a dense grid for the focal loss), and against ``predict``: the regime is "zero" at
P*(1 + 1e-6) and non-zero at P*(1 − 1e-6)."""

import math

import numpy as np
import pytest

import ufm
from ufm import losses
from ufm.problems import MultiLabelUFM, RegressionUFM, UFM
from ufm.problems.regression import synthetic_targets
from ufm.theory import NoClosedForm

SIDE = 1e-6


def _focal_global_c(K, gamma):
    """sup_{m>0} (ℓ̂(0) − ℓ̂(m))/m on a dense grid, ℓ̂(m) = q^γ log(1 + (K−1)e^{−m}) with
    q = (K−1)e^{−m}/(1 + (K−1)e^{−m}): the ETF of margin m beats the origin iff (K−1)τ is below it
    (docs/theory/ce-family.md); the m → 0 limit is −ℓ̂′(0) = ((K−1)/K)^γ (1 + γ log K/(K−1))·(K−1)/K."""
    m = np.linspace(1e-3, 40.0, 400_001)
    x = np.log(K - 1) - m
    q = 1 / (1 + np.exp(-x))
    lhat = q ** gamma * np.logaddexp(0.0, x)
    l0 = ((K - 1) / K) ** gamma * math.log(K)
    local = ((K - 1) / K) ** gamma * (1 + gamma * math.log(K) / (K - 1)) * (K - 1) / K
    return max(local, float(np.max((l0 - lhat) / m)))


def _ufm_cases():
    ce, mse = losses.CrossEntropy(), losses.MSE()
    K, n = 4, 5
    P_bal = 1 / (K * K * n)  # Kτ = 1 with τ = √(nP)
    yield "mse-nobias", UFM(K, n, K, mse, 0.1, 0.1, bias=False), P_bal
    yield "mse-nobias-d<K", UFM(K, n, 2, mse, 0.1, 0.1, bias=False), P_bal
    yield "mse-freebias", UFM(K, n, K - 1, mse, 0.1, 0.1), P_bal
    yield "mse-freebias-d<K-1", UFM(K, n, 2, mse, 0.1, 0.1), P_bal
    yield "mse-regbias", UFM(K, n, K, mse, 0.1, 0.1, lambda_b=0.5), P_bal
    yield "mse-nobias-imbalanced", UFM(3, (6, 3, 1), 3, mse, 0.1, 0.1, bias=False), 6 / 10 ** 2
    yield "ce-bias", UFM(K, n, K - 1, ce, 0.1, 0.1), P_bal
    yield "ce-nobias", UFM(K, n, K + 1, ce, 0.1, 0.1, bias=False), P_bal
    yield "ce-regbias", UFM(K, n, K, ce, 0.1, 0.1, lambda_b=0.1), P_bal
    yield "ls", UFM(K, n, K - 1, losses.LabelSmoothing(0.3), 0.1, 0.1), (1 - 0.3) ** 2 * P_bal
    for K_fl, n_fl, gamma in [(4, 5, 2.0), (6, 3, 1.0), (30, 2, 3.0), (50, 1, 2.0)]:
        c = _focal_global_c(K_fl, gamma)
        yield (f"fl-K{K_fl}-gamma{gamma}", UFM(K_fl, n_fl, K_fl - 1, losses.Focal(gamma), 0.1, 0.1),
               (c / (K_fl - 1)) ** 2 / n_fl)


UFM_CASES = list(_ufm_cases())


def _with_product(problem, P):
    """The same problem with λ_H = P/λ_W (so λ_W λ_H = P)."""
    import dataclasses
    return dataclasses.replace(problem, lambda_H=P / float(problem.lambda_W))


def _flips(problem, P_star):
    below = ufm.theory.predict(_with_product(problem, P_star * (1 - SIDE)))
    above = ufm.theory.predict(_with_product(problem, P_star * (1 + SIDE)))
    assert below.regime != "zero" and above.regime == "zero", (below.regime, above.regime)


@pytest.mark.parametrize("name, problem, expected", UFM_CASES, ids=[c[0] for c in UFM_CASES])
def test_ufm_threshold(name, problem, expected):
    P_star = ufm.theory.threshold(problem)
    # The grid of the FL check resolves the supremum to ~1e-9; the closed forms to rounding.
    assert P_star == pytest.approx(expected, rel=1e-8 if name.startswith("fl") else 1e-14)
    _flips(problem, P_star)


def test_focal_window_threshold_is_above_the_local_one():
    """K = 50, γ = 2 (docs/theory/ce-family.md): Kτ = 1.125 ≥ g_FL, yet the ETF is lower; the threshold is
    the global one."""
    K, gamma = 50, 2.0
    g_fl = (1 - 1 / K) ** gamma * (1 + gamma * math.log(K) / (K - 1))
    P_star = ufm.theory.threshold(UFM(K, 1, K, losses.Focal(gamma), 0.1, 0.1))
    K_tau_star = K * math.sqrt(P_star)
    assert g_fl < 1.125 < K_tau_star


def _pal_cases():
    pal = losses.PickAllLabel()
    for K, counts, d in [(4, {1: 3}, 4), (4, {1: 2, 2: 1}, 4), (5, {1: 1, 2: 1, 3: 1}, 5),
                         (4, {2: 1}, 3), (3, {1: 2, 2: 1, 3: 1}, 3)]:
        N = sum(n * math.comb(K, m) for m, n in counts.items())
        expected = sum(n * math.comb(K - 2, m - 1) for m, n in counts.items()) / N ** 2
        yield MultiLabelUFM.balanced(K, counts, d, pal, 0.1, 0.1, lambda_b=0.1), expected


@pytest.mark.parametrize("problem, expected", list(_pal_cases()))
def test_multilabel_threshold(problem, expected):
    P_star = ufm.theory.threshold(problem)
    assert P_star == pytest.approx(expected, rel=1e-14)
    _flips(problem, P_star)


def test_multilabel_single_labels_reduce_to_ce():
    K, n = 4, 3
    p = MultiLabelUFM.balanced(K, {1: n}, K, losses.PickAllLabel(), 0.1, 0.1)
    assert ufm.theory.threshold(p) == pytest.approx(
        ufm.theory.threshold(UFM(K, n, K, losses.CrossEntropy(), 0.1, 0.1)), rel=1e-14)


@pytest.mark.parametrize("d", [4, 2])
def test_regression_threshold(d):
    spectrum, N = (1.5, 0.4, 0.1), 10
    Y = synthetic_targets(2, N, spectrum, mean=[1.0, 0.0, -2.0])
    problem = RegressionUFM(Y, d, 0.2, 0.05)
    P_star = ufm.theory.threshold(problem)
    assert P_star == pytest.approx(max(spectrum) / N, rel=1e-12)  # c = N P ≥ λ_max: zero
    _flips(problem, P_star)


def test_threshold_refuses_where_there_is_none():
    ce, pal = losses.CrossEntropy(), losses.PickAllLabel()
    with pytest.raises(NoClosedForm, match="imbalanced"):
        ufm.theory.threshold(UFM(3, (3, 2, 1), 3, ce, 0.1, 0.1))
    with pytest.raises(NoClosedForm, match="imbalanced"):
        ufm.theory.threshold(UFM(3, (3, 2, 1), 3, losses.MSE(), 0.1, 0.1))
    with pytest.raises(NoClosedForm, match="PAL-N"):
        ufm.theory.threshold(MultiLabelUFM.balanced(4, {1: 1}, 4, losses.PickAllLabelNormalised(), 0.1, 0.1))
    with pytest.raises(NoClosedForm, match="not balanced"):
        ufm.theory.threshold(MultiLabelUFM(3, [[0], [1], [2], [0, 1]], 3, pal, 0.1, 0.1))
    with pytest.raises(NoClosedForm, match="window"):  # the FL window needs the ETF
        ufm.theory.threshold(UFM(30, 2, 5, losses.Focal(3.0), 0.1, 0.1))


def test_threshold_does_not_depend_on_d_below_the_etf():
    """CE with d < K−1 has no predict (softmax codes), but the threshold stands: below it the
    origin is a strict saddle (docs/theory/ce-family.md: λ_min of the Hessian is negative iff Kτ < 1, any
    d), and a solve from a small start leaves it."""
    K, n, d = 6, 2, 2
    problem = UFM(K, n, d, losses.CrossEntropy(), 0.1, 0.1)
    P_star = ufm.theory.threshold(problem)
    assert P_star == pytest.approx(1 / (K * K * n), rel=1e-14)
    lam = math.sqrt(0.9 * P_star)
    p = UFM(K, n, d, losses.CrossEntropy(), lam, lam)
    origin = p.params(W=np.zeros((K, d)), H=np.zeros((K * n, d)), b=np.zeros(K))
    assert ufm.landscape.hessian_eigenvalues(p, origin)[0] < 0
