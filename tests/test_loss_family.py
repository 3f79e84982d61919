"""Label smoothing and focal loss: the losses, their closed forms (docs/theory/ce-family.md, docs/theory/conventions.md) and
L-BFGS solves in float64 against them.

Expected numbers come from closed forms (docs/theory/) written out here, from hand-evaluated losses, or
from independent computations (dense grids over the margin, finite checks of the objective at
the constructed minimiser); never from values printed by the code under test.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ufm
from ufm.sweep import vmap_solve
from ufm.theory import plain

from helpers import F64_IDENTITY, rel_err

# ---------------------------------------------------------------------------------------------
# Units: the per-sample losses
# ---------------------------------------------------------------------------------------------


def _logits_and_targets(K=5, N=7, seed=0):
    rng = np.random.default_rng(seed)
    z = jnp.asarray(3.0 * rng.standard_normal((N, K)))
    y = jnp.asarray(np.eye(K)[rng.integers(0, K, N)])
    return z, y


@pytest.mark.parametrize("alpha", [0.0, 0.1, 0.5, 0.9])
def test_label_smoothing_equals_optax_and_definition(alpha):
    z, y = _logits_and_targets()
    K = y.shape[1]
    got = np.asarray(ufm.losses.LabelSmoothing(alpha)(z, y))
    ref = np.asarray(optax.softmax_cross_entropy(z, optax.smooth_labels(y, alpha)))
    # docs/theory/ce-family.md definition: −Σ_j y^α_j log p_j with y^α = (1−α)e_k + (α/K)1, in NumPy.
    zn = np.asarray(z)
    log_p = zn - zn.max(1, keepdims=True)
    log_p = log_p - np.log(np.exp(log_p).sum(1, keepdims=True))
    y_alpha = (1 - alpha) * np.asarray(y) + alpha / K
    hand = -(y_alpha * log_p).sum(1)
    assert got.shape == (z.shape[0],)
    assert rel_err(got, ref) <= F64_IDENTITY
    assert rel_err(got, hand) <= F64_IDENTITY


def test_label_smoothing_hand_value():
    # z = (log 3, 0, 0), class 0: p = (3/5, 1/5, 1/5); α = 0.3, K = 3: y^α = (0.8, 0.1, 0.1).
    z = jnp.asarray([[math.log(3.0), 0.0, 0.0]])
    y = jnp.asarray([[1.0, 0.0, 0.0]])
    expected = -0.8 * math.log(0.6) - 0.2 * math.log(0.2)
    assert abs(float(ufm.losses.LabelSmoothing(0.3)(z, y)[0]) - expected) <= 1e-15
    # α = 0 is plain CE: −log(3/5).
    assert abs(float(ufm.losses.LabelSmoothing(0.0)(z, y)[0]) + math.log(0.6)) <= 1e-15


def test_focal_gamma_zero_is_cross_entropy():
    z, y = _logits_and_targets(K=4, N=9, seed=3)
    got = ufm.losses.Focal(0.0)(z, y)
    assert rel_err(got, ufm.losses.CrossEntropy()(z, y)) <= F64_IDENTITY
    assert rel_err(got, optax.softmax_cross_entropy(z, y)) <= F64_IDENTITY


def test_focal_hand_values():
    z = jnp.asarray([[math.log(3.0), 0.0, 0.0], [math.log(3.0), 0.0, 0.0]])
    y = jnp.asarray([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # p_true = 3/5 and 1/5
    got = np.asarray(ufm.losses.Focal(2.0)(z, y))
    assert abs(got[0] - (-(0.4 ** 2) * math.log(0.6))) <= 1e-15
    assert abs(got[1] - (-(0.8 ** 2) * math.log(0.2))) <= 1e-15
    got15 = float(ufm.losses.Focal(1.5)(z[1:], y[1:])[0])
    assert abs(got15 - (-(0.8 ** 1.5) * math.log(0.2))) <= 1e-15


def test_focal_is_finite_and_accurate_when_confident():
    # p_true → 1. log p = z_k − logsumexp(z) carries an absolute error ~ eps·|z| (as in optax's CE),
    # so at z = (10, 0, 0), where −log p ≈ 9e-5, the relative accuracy is ~1e-11.
    z = jnp.asarray([[10.0, 0.0, 0.0]])
    y = jnp.asarray([[1.0, 0.0, 0.0]])
    s = 2 * math.exp(-10.0)
    one_minus_p, minus_log_p = s / (1 + s), math.log1p(s)
    got = float(ufm.losses.Focal(2.0)(z, y)[0])
    assert abs(got - one_minus_p ** 2 * minus_log_p) <= 1e-9 * one_minus_p ** 2 * minus_log_p
    # Far out (log p rounds to 0) the loss is 0 and the gradient stays finite, not NaN.
    for gamma in (0.0, 0.5, 2.0):
        z = jnp.asarray([[40.0, 0.0, 0.0]])
        assert float(ufm.losses.Focal(gamma)(z, y)[0]) >= 0.0
        g = jax.grad(lambda z: ufm.losses.Focal(gamma)(z, y)[0])(z)
        assert np.all(np.isfinite(np.asarray(g)))


@pytest.mark.parametrize("alpha", [-0.1, 1.0, 1.5, float("nan")])
def test_label_smoothing_rejects_alpha(alpha):
    with pytest.raises(ValueError, match="alpha") as info:
        ufm.losses.LabelSmoothing(alpha)
    msg = str(info.value)
    assert "[0, 1)" in msg or "finite" in msg
    assert repr(alpha) in msg


@pytest.mark.parametrize("gamma", [-0.5, -1e-9, float("inf")])
def test_focal_rejects_gamma(gamma):
    with pytest.raises(ValueError, match="gamma") as info:
        ufm.losses.Focal(gamma)
    msg = str(info.value)
    assert ">= 0" in msg or "finite" in msg
    assert repr(gamma) in msg


def test_boundary_hyperparameters_are_accepted():
    ufm.losses.LabelSmoothing(0.0), ufm.losses.LabelSmoothing(0.999), ufm.losses.Focal(0.0)


def test_hyperparameters_vmap_without_recompiling_each():
    z, y = _logits_and_targets()
    alphas = jnp.asarray([0.0, 0.2, 0.7])
    batched = jax.vmap(lambda a: ufm.losses.LabelSmoothing(a)(z, y))(alphas)
    for i, a in enumerate([0.0, 0.2, 0.7]):
        assert rel_err(batched[i], ufm.losses.LabelSmoothing(a)(z, y)) <= F64_IDENTITY
    gammas = jnp.asarray([0.0, 1.0, 2.5])
    batched = jax.vmap(lambda g: ufm.losses.Focal(g)(z, y))(gammas)
    for i, g in enumerate([0.0, 1.0, 2.5]):
        assert rel_err(batched[i], ufm.losses.Focal(g)(z, y)) <= F64_IDENTITY


# ---------------------------------------------------------------------------------------------
# Scalar theory (docs/theory/ce-family.md, docs/theory/conventions.md): written-out formulas and independent grids
# ---------------------------------------------------------------------------------------------


def _hat_from_logits(m, K, loss, alpha=0.0, gamma=0.0):
    """Sample loss at the ETF logits m(e_k − 1/K), from the loss definitions (NumPy, vectorised)."""
    m = np.asarray(m, float)
    z_true, z_other = m * (1 - 1 / K), -m / K
    lse = np.logaddexp(z_true, z_other + math.log(K - 1))
    log_p_true, log_p_other = z_true - lse, z_other - lse
    if loss == "ls":
        return -((1 - alpha + alpha / K) * log_p_true + (K - 1) * (alpha / K) * log_p_other)
    return -((-np.expm1(log_p_true)) ** gamma) * log_p_true


def _grid_min(K, tau, loss, m_max, alpha=0.0, gamma=0.0, num=400_001):
    ms = np.linspace(0.0, m_max, num)
    f = _hat_from_logits(ms, K, loss, alpha, gamma) + (K - 1) * tau * ms
    i = int(np.argmin(f))
    return ms[i], f[i], ms[1] - ms[0]


@pytest.mark.parametrize("K,n,lw,lh,alpha", [(3, 4, 1e-2, 2e-2, 0.05), (4, 5, 5e-3, 5e-3, 0.2),
                                             (10, 3, 2e-3, 1e-3, 0.4), (6, 2, 3e-2, 3e-2, 0.1)])
def test_ls_prediction_matches_written_out_formulas(K, n, lw, lh, alpha):
    tau = math.sqrt(n * lw * lh)
    tau_a = tau + alpha / K
    pred = plain.ce_family(K, n, K, lw, lh, 0.0, True, "ls", alpha=alpha)
    if K * tau + alpha >= 1:
        assert pred.regime == "zero" and pred.value == math.log(K)
        return
    m = math.log(1 / tau_a - (K - 1))
    p = 1 - (K - 1) * tau_a
    value = -math.log(p) + (K - 1) * tau_a * math.log(p / tau_a)
    norm_W_sq = (K - 1) * m * math.sqrt(n * lh / lw)
    assert pred.regime == "collapse"
    assert abs(pred["margin"] - m) <= 1e-12 * m
    assert abs(pred.value - value) <= 1e-12 * value
    assert abs(pred["norm_W_sq"] - norm_W_sq) <= 1e-12 * norm_W_sq
    assert abs(pred["norm_H_sq"] - (lw / lh) * norm_W_sq) <= 1e-12 * norm_W_sq * lw / lh
    C = np.eye(K) - np.ones((K, K)) / K
    assert rel_err(pred["gram_W"], norm_W_sq / (K - 1) * C) <= F64_IDENTITY
    # Independent: the minimum of the LS objective on a fine margin grid, from the loss itself.
    m_grid, f_grid, h = _grid_min(K, tau, "ls", 3 * m + 1, alpha=alpha)
    assert abs(m_grid - m) <= h
    assert pred.value <= f_grid + 1e-14 and f_grid - pred.value <= 1e-9 * value


@pytest.mark.parametrize("K", [2, 3, 5, 10, 50])
@pytest.mark.parametrize("alpha", [0.0, 0.1, 0.45])
def test_ls_zero_iff_K_tau_plus_alpha_at_least_one(K, alpha):
    n = 4
    for side in (1 - 1e-6, 1 + 1e-6, 1.5, 0.5):
        K_tau = (1 - alpha) * side  # Kτ + α − 1 = (1 − α)(side − 1)
        lam = K_tau / (K * math.sqrt(n))
        pred = plain.ce_family(K, n, K - 1, lam, lam, 0.0, True, "ls", alpha=alpha)
        assert (pred.regime == "zero") == (side >= 1), (K, alpha, side)
        if side >= 1:
            assert pred.value == math.log(K) and pred["norm_W"] == 0.0


def test_ce_nonzero_but_ls_zero_at_the_same_lambda():
    K, n, alpha = 4, 5, 0.3
    lam = 0.75 / (K * math.sqrt(n))  # Kτ = 0.75 < 1 ≤ Kτ + α = 1.05
    ce = plain.ce_family(K, n, 3, lam, lam, 0.0, True, "ce")
    ls = plain.ce_family(K, n, 3, lam, lam, 0.0, True, "ls", alpha=alpha)
    assert ce.regime == "collapse" and abs(ce["margin"] - math.log(4 / 0.75 - 3)) <= 1e-14
    assert ls.regime == "zero" and ls.value == math.log(K)


@pytest.mark.parametrize("K", [2, 3, 6, 20, 50, 500])
@pytest.mark.parametrize("gamma", [0.5, 1.0, 2.0, 3.0])
def test_focal_margin_is_the_global_minimum_of_f(K, gamma):
    g_fl = plain.focal_threshold(K, gamma)
    for ratio in (0.05, 0.4, 0.9, 0.99, 1.01, 1.2):
        tau = ratio * g_fl / K
        m = plain.focal_margin(K, tau, gamma)
        f_m = plain.focal_hat(m, K, gamma) + (K - 1) * tau * m
        m_grid, f_grid, h = _grid_min(K, tau, "fl", max(3 * m, 6.0), gamma=gamma, num=200_001)
        # f(m*) is at least as low as every grid point, and the grid argmin is within a step.
        assert f_m <= f_grid + 1e-14 * abs(f_grid), (K, gamma, ratio)
        assert abs(m_grid - m) <= 2 * h, (K, gamma, ratio, m, m_grid)
        if m > 0:  # stationary: f'(m*) = c − r(m*) = 0, by a central difference of the loss itself
            eps = 1e-6
            d = (_hat_from_logits(m + eps, K, "fl", gamma=gamma)
                 - _hat_from_logits(m - eps, K, "fl", gamma=gamma)) / (2 * eps) + (K - 1) * tau
            assert abs(d) <= 1e-7


def test_focal_hat_matches_the_loss_definition():
    # p_true = 1/(1 + (K−1)e^{−m}) at the logits m(e_k − 1/K); the loss module itself agrees.
    ms = (0.0, 0.3, 2.0, 15.0, 60.0)
    for K in (2, 3, 10, 1000):
        for gamma in (0.0, 0.7, 2.0):
            refs = []
            for m in ms:
                s = (K - 1) * math.exp(-m)
                ref = (s / (1 + s)) ** gamma * math.log1p(s)
                assert abs(plain.focal_hat(m, K, gamma) - ref) <= 1e-14 * ref
                if gamma == 0.0:
                    assert abs(plain.ce_hat(m, K) - ref) <= 1e-14 * ref
                refs.append(ref)
            # The JAX loss (m ≤ 15: beyond, log p = z_k − logsumexp loses relative accuracy).
            z = jnp.asarray(ms[:4])[:, None] * (jnp.eye(K)[:1] - 1.0 / K)
            got = np.asarray(ufm.losses.Focal(gamma)(z, jnp.broadcast_to(jnp.eye(K)[:1], z.shape)))
            refs = np.asarray(refs[:4])
            assert np.all(np.abs(got - refs) <= 1e-15 * np.asarray(ms[:4]) + 1e-13 * refs)


@pytest.mark.parametrize("K", [2, 4, 7])
def test_focal_gamma_zero_prediction_is_ce(K):
    for K_tau in (0.2, 0.7, 0.95, 1.3):
        lam = K_tau / (K * math.sqrt(3))
        ce = plain.ce_family(K, 3, K, lam, lam, 0.0, True, "ce")
        fl = plain.ce_family(K, 3, K, lam, lam, 0.0, True, "fl", gamma=0.0)
        assert ce.regime == fl.regime
        assert abs(fl.value - ce.value) <= 1e-13 * ce.value
        assert abs(fl.scalars["margin"] - ce.scalars["margin"]) <= 1e-9 * max(ce.scalars["margin"], 1e-12)


@pytest.mark.parametrize("K,gamma", [(3, 1.0), (3, 2.0), (5, 3.0), (10, 0.5), (10, 2.0)])
def test_focal_zero_threshold_small_K(K, gamma):
    """For small K, r of §9 is decreasing: the solution is zero exactly when Kτ ≥ g_FL."""
    g_fl = (1 - 1 / K) ** gamma * (1 + gamma * math.log(K) / (K - 1))  # docs/theory/ce-family.md
    assert abs(plain.focal_threshold(K, gamma) - g_fl) <= 1e-15 * g_fl
    # f'(0) = (K−1)τ − r(0) changes sign at Kτ = g_FL (central difference of the loss at m = 0⁺).
    for ratio, zero in ((0.999, False), (1.001, True), (1.5, True), (0.5, False)):
        tau = ratio * g_fl / K
        m = plain.focal_margin(K, tau, gamma)
        assert (m == 0.0) == zero, (K, gamma, ratio, m)
        eps = 1e-7
        slope0 = (float(_hat_from_logits(eps, K, "fl", gamma=gamma))
                  - float(_hat_from_logits(0.0, K, "fl", gamma=gamma))) / eps + (K - 1) * tau
        assert (slope0 > 0) == zero
        lam = tau / math.sqrt(2)  # n = 2: τ = √(nλ_Wλ_H)
        pred = plain.ce_family(K, 2, K, lam, lam, 0.0, False, "fl", gamma=gamma)
        assert (pred.regime == "zero") == zero
        if zero:
            assert abs(pred.value - ((K - 1) / K) ** gamma * math.log(K)) <= 1e-15


def test_focal_window_example_K50_gamma2():
    """docs/theory/ce-family.md: K = 50, γ = 2, Kτ = 1.125 — the origin is a local minimum (Kτ ≥ g_FL) but
    an ETF with m* > 0 is lower: 3.733385 against f(0) = 3.757107."""
    K, gamma, n = 50, 2.0, 3
    tau = 1.125 / K
    assert plain.focal_threshold(K, gamma) <= 1.125  # local test says "zero"...
    lam = tau / math.sqrt(n)
    pred = plain.ce_family(K, n, K - 1, lam, lam, 0.0, True, "fl", gamma=gamma)
    assert pred.regime == "collapse" and pred["margin"] > 0  # ...the global one does not
    assert round(pred.value, 6) == 3.733385
    f0 = float(_hat_from_logits(0.0, K, "fl", gamma=gamma))
    assert round(f0, 6) == 3.757107
    # The grid agrees, and at the bracketed margin the slope vanishes.
    m_grid, f_grid, h = _grid_min(K, tau, "fl", 6.0, gamma=gamma)
    assert abs(m_grid - pred["margin"]) <= 2 * h
    assert abs(f_grid - pred.value) <= 1e-9


# ---------------------------------------------------------------------------------------------
# The origin (docs/theory/ce-family.md): Hessian eigenvalue against the closed form
# ---------------------------------------------------------------------------------------------


def _origin(problem):
    K, d, N = problem.num_classes, problem.dim, problem.num_samples
    return problem.params(jnp.zeros((K, d)), jnp.zeros((N, d)))


@pytest.mark.parametrize("loss,K,n,d,lw,lh", [
    (ufm.losses.Focal(2.0), 3, 2, 3, 0.1, 0.05),
    (ufm.losses.Focal(1.0), 4, 2, 3, 0.03, 0.08),
    (ufm.losses.LabelSmoothing(0.3), 4, 2, 3, 0.05, 0.08),
])
def test_origin_hessian_threshold(loss, K, n, d, lw, lh):
    g0 = (plain.focal_threshold(K, float(loss.gamma)) if isinstance(loss, ufm.losses.Focal)
          else 1 - float(loss.alpha))
    # g₀ = ‖∇_Z loss(0)‖_op · K√n from the loss code itself, independently of the formula.
    prob = ufm.UFM(K, n, d, loss, lw, lh, bias=False)
    G = jax.grad(lambda Z: jnp.mean(prob.loss(Z, prob.targets)))(jnp.zeros((K * n, K)))
    assert abs(np.linalg.norm(np.asarray(G), 2) * K * math.sqrt(n) - g0) <= 1e-13
    # Both sides of Kτ = g₀: scale (λ_W, λ_H) so that Kτ = s·g₀.
    for s in (0.8, 1.25):
        c = s * g0 / (K * math.sqrt(n * lw * lh))
        lw_s, lh_s = lw * c, lh * c
        prob = ufm.UFM(K, n, d, loss, lw_s, lh_s, bias=False)
        lam_min = (lw_s + lh_s) / 2 - math.sqrt(((lw_s - lh_s) / 2) ** 2 + g0 ** 2 / (K * K * n))
        evals = ufm.landscape.hessian_eigenvalues(prob, _origin(prob))
        assert abs(evals[0] - lam_min) <= 1e-12
        assert (evals[0] >= 0) == (s >= 1)


# ---------------------------------------------------------------------------------------------
# Integration: L-BFGS solves (float64) against the closed forms
# ---------------------------------------------------------------------------------------------

_STRICT = {"value": 1e-9, "norm_W_sq": 1e-6, "norm_H_sq": 1e-6, "gram_W": 1e-6,
           "gram_means": 1e-6, "W_means": 1e-6, "margin": 1e-6}


@jax.jit
def _value_and_grad(problem, params):
    """F and ∇F, compiled once per (shape, loss type) — problems are pytrees with λ's as leaves."""
    return jax.value_and_grad(problem.value)(params)


def _check_rows(problems, sols, *, hessian_first=True):
    """compare() each row of a batched Solution with predict(); return the predictions."""
    sols = jax.tree.map(np.asarray, sols)  # slicing NumPy rows is free; eager JAX slices compile
    preds = []
    for i, prob in enumerate(problems):
        sol = jax.tree.map(lambda x: x[i], sols)
        pred = ufm.theory.predict(prob)
        report = ufm.compare(prob, sol, pred, hessian=hessian_first and i == 0)
        assert report.ok, f"{prob.config()}\n{report}"
        for name, tol in _STRICT.items():
            if name in pred.quantities:
                assert report[name].error <= tol, (name, report[name])
        if pred.regime == "zero":
            assert np.linalg.norm(sol.params.W) <= 1e-10
        # Independent of the solver: the objective at the constructed minimiser is F*, and it
        # is stationary there.
        value, grad = _value_and_grad(prob, prob.params(**pred.construct(seed=i)))
        assert abs(float(value) - pred.value) <= 1e-12 * max(pred.value, 1.0)
        assert max(float(jnp.max(jnp.abs(x))) for x in jax.tree.leaves(grad)) <= 1e-10
        preds.append(pred)
    return preds


def _sweep(K, n, d, loss, rows, *, bias=True, seed=0):
    """rows: list of (lambda_W, lambda_H, hyper); one compiled, vmapped L-BFGS solve."""
    base = ufm.UFM(K, n, d, loss, rows[0][0], rows[0][1], bias=bias)
    hyper = "loss.alpha" if isinstance(loss, ufm.losses.LabelSmoothing) else "loss.gamma"
    over = {"lambda_W": jnp.asarray([r[0] for r in rows]),
            "lambda_H": jnp.asarray([r[1] for r in rows]),
            hyper: jnp.asarray([r[2] for r in rows])}
    sols = vmap_solve(base, ufm.solvers.LBFGS(), base.init(jax.random.key(seed), 0.5), over,
                      gtol=1e-13, max_steps=4000)
    assert np.all(np.asarray(sols.status) == int(ufm.Status.CONVERGED)), np.asarray(sols.status)
    cls = type(loss)
    problems = [ufm.UFM(K, n, d, cls(r[2]), r[0], r[1], bias=bias) for r in rows]
    return problems, sols


def _lam_for(K, n, K_tau, ratio=1.0):
    """(λ_W, λ_H) with λ_W/λ_H = ratio and Kτ = K√(nλ_Wλ_H) = K_tau."""
    rho = K_tau / (K * math.sqrt(n))
    return rho * math.sqrt(ratio), rho / math.sqrt(ratio)


# Three K (and d = K−1, d = K, d > K; λ_W/λ_H = ratio), three or more α / γ on the collapse side,
# and the zero side. One compilation per (shape, loss); the dense Hessian certificate runs for the
# first row of the smallest shape only (it compiles per call).
_SOLVE_SHAPES = [(3, 4, 2, 0.5, True), (4, 3, 4, 1.0, False),
                 pytest.param(6, 2, 7, 2.0, False, marks=pytest.mark.slow)]


@pytest.mark.parametrize("K,n,d,ratio,hessian", _SOLVE_SHAPES)
def test_label_smoothing_solves_match_theory(K, n, d, ratio, hessian):
    rows = [(*_lam_for(K, n, 0.1, ratio), 0.05), (*_lam_for(K, n, 0.3, ratio), 0.2),
            (*_lam_for(K, n, 0.2, ratio), 0.5),
            # One λ with Kτ = 0.8 < 1: α = 0 (LS_0 is CE) collapses, α = 0.35 (Kτ + α = 1.15) is
            # zero — CE non-zero but LS zero at the same λ, both solved.
            (*_lam_for(K, n, 0.8, ratio), 0.0), (*_lam_for(K, n, 0.8, ratio), 0.35),
            (*_lam_for(K, n, 1.4, ratio), 0.1)]  # zero, past the CE threshold too
    problems, sols = _sweep(K, n, d, ufm.losses.LabelSmoothing(0.1), rows)
    preds = _check_rows(problems, sols, hessian_first=hessian)
    assert [p.regime for p in preds] == ["collapse"] * 4 + ["zero"] * 2
    # The α = 0 row is the CE closed form of docs/theory/ce-family.md, m* = log(1/τ − (K−1)).
    tau = 0.8 / K
    assert abs(preds[3].value - plain.ce_value(K, tau)) <= 1e-15
    assert abs(preds[3]["margin"] - math.log(1 / tau - (K - 1))) <= 1e-12


@pytest.mark.parametrize("K,n,d,ratio,hessian", _SOLVE_SHAPES)
def test_focal_solves_match_theory(K, n, d, ratio, hessian):
    gammas = (0.5, 1.0, 2.0, 3.0)
    rows = [(*_lam_for(K, n, kt * plain.focal_threshold(K, g), ratio), g)
            for kt, g in ((0.1, 0.5), (0.3, 1.0), (0.5, 2.0), (0.8, 3.0), (1.3, 2.0))]
    problems, sols = _sweep(K, n, d, ufm.losses.Focal(1.0), rows, bias=(K != 4))
    preds = _check_rows(problems, sols, hessian_first=hessian)
    assert [p.regime for p in preds] == ["collapse"] * 4 + ["zero"]
    assert {r[2] for r in rows} >= set(gammas)
