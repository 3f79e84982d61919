"""Property tests for the deep and spherical UFMs (issue 10 §1, §3, §4):

* every exact construction ``pred.construct(seed=...)`` passes ``ufm.compare`` against its own
  prediction and is stationary (gradient norm ≤ 1e-12 relative to the gradient's scale;
  Riemannian for the spherical model), over a grid of configurations on both sides of every
  threshold;
* the model × loss matrix: every (model, loss, activation, depth) builds, solves a tiny instance
  to a finite converged point, and ``predict`` either returns or refuses with NoClosedForm;
* ``ufm.theory.threshold``: predict's regime flips across it (the prediction and the threshold
  are computed by different code), and it matches the closed numbers of docs/theory/ce-family.md, docs/theory/deep.md;
* ``from_config`` is the exact inverse of ``config()``.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ufm
from ufm.losses import MSE, CrossEntropy, Focal, LabelSmoothing
from ufm.metrics.spherical import TOLERANCES
from ufm.solvers import LBFGS, TrustRegion
from ufm.theory import REGIMES, NoClosedForm, deep

STATIONARY = 1e-12  # gradient norm relative to the scale of its two parts


def lam_for(kappa, K, n, L):
    """Common decay λ with κ = K (n λ^{L+1})^{1/(L+1)} (docs/theory/conventions.md)."""
    return kappa / (K * n ** (1 / (L + 1)))


def deep_problem(K, n, widths, act="identity", kappa=None, lam=None, loss=None, bias=False):
    L = len(widths)
    lam = lam_for(kappa, K, n, L) if lam is None else lam
    return ufm.DeepUFM(K, n, tuple(widths), MSE() if loss is None else loss, lam, lam, bias=bias,
                       activation=act)


KS2, KM2 = deep.kappa_star(2), deep.kappa_max(2)  # 0.397, 0.472
KS3, KM3 = deep.kappa_star(3), deep.kappa_max(3)  # 0.272, 0.385

DEEP_GRID = {
    # deep linear L = 1 (the plain MSE UFM), both sides of κ* = 1, with and without a bias
    "lin-L1-below-dK": lambda: deep_problem(3, 2, (3,), kappa=0.5),
    "lin-L1-below-dwide": lambda: deep_problem(3, 2, (5,), kappa=0.5),
    "lin-L1-above": lambda: deep_problem(3, 2, (3,), kappa=1.2),
    "lin-L1-bias-dK-1": lambda: deep_problem(3, 2, (2,), kappa=0.5, bias=True),
    "lin-L1-bias-above": lambda: deep_problem(3, 2, (4,), kappa=1.1, bias=True),
    # L = 2: below κ*, between κ* and κ_max (collapsed local minima exist, the global one is 0), above κ_max
    "lin-L2-below-dK": lambda: deep_problem(3, 2, (3, 3), kappa=0.30),
    "lin-L2-below-dwide": lambda: deep_problem(3, 2, (5, 4), kappa=0.30),
    "lin-L2-between": lambda: deep_problem(3, 2, (4, 4), kappa=0.5 * (KS2 + KM2)),
    "lin-L2-above-max": lambda: deep_problem(3, 2, (4, 4), kappa=1.05 * KM2),
    "lin-L2-near-kstar": lambda: deep_problem(3, 2, (3, 3), kappa=KS2 * (1 - 1e-6)),
    "lin-L2-bias-dK-1": lambda: deep_problem(4, 2, (3, 3), kappa=0.25, bias=True),
    "lin-L2-bias-wide": lambda: deep_problem(4, 2, (5, 6), kappa=0.25, bias=True),
    "lin-L2-bias-above": lambda: deep_problem(4, 2, (3, 3), kappa=0.45, bias=True),
    # L = 3
    "lin-L3-below": lambda: deep_problem(3, 2, (3, 4, 3), kappa=0.20),
    "lin-L3-between": lambda: deep_problem(3, 2, (3, 3, 3), kappa=0.5 * (KS3 + KM3)),
    "lin-L3-bias": lambda: deep_problem(3, 3, (2, 3, 2), kappa=0.20, bias=True),
    # imbalanced (general orthogonal frame), minority collapse, all vanished
    "imb-L1": lambda: deep_problem(3, (5, 3, 2), (3,), lam=0.05),
    "imb-L2-minority": lambda: deep_problem(3, (4, 2, 1), (4, 4), lam=0.065),
    "imb-L2-all": lambda: deep_problem(3, (5, 3, 2), (4, 3), lam=0.02),
    "imb-L3": lambda: deep_problem(4, (6, 3, 2, 1), (4, 5, 4), lam=0.01),
    "imb-L2-zero": lambda: deep_problem(3, (4, 2, 1), (3, 3), lam=0.3),
    # ReLU: K = 2 DUFM at L = 2, 3; the extended UFM at K = 3, 4 (d_l = K and > K)
    "relu-K2-L2": lambda: deep_problem(2, 3, (2, 2), "relu", kappa=0.3),
    "relu-K2-L3-wide": lambda: deep_problem(2, 2, (3, 4, 5), "relu", kappa=0.2),
    "relu-K2-L3-above": lambda: deep_problem(2, 2, (2, 2, 2), "relu", kappa=0.3),
    "ext-relu-K3": lambda: deep_problem(3, 2, (3, 3), "relu", kappa=0.3),
    "ext-relu-K3-wide": lambda: deep_problem(3, 2, (5, 4), "relu", kappa=0.3),
    "ext-relu-K4": lambda: deep_problem(4, 2, (4, 4), "relu", kappa=0.25),
    "ext-relu-K4-above": lambda: deep_problem(4, 2, (5, 5), "relu", kappa=0.45),
    # L = 1 CE family (docs/theory/ce-family.md), d = K−1 and wider, with and without a bias, and past Kτ = 1
    "ce-L1-dK-1": lambda: deep_problem(4, 2, (3,), lam=1e-2, loss=CrossEntropy()),
    "ce-L1-bias": lambda: deep_problem(4, 2, (5,), lam=1e-2, loss=CrossEntropy(), bias=True),
    "ce-L1-zero": lambda: deep_problem(4, 2, (3,), lam=0.2, loss=CrossEntropy()),
    "ls-L1": lambda: deep_problem(3, 2, (3,), lam=1e-2, loss=LabelSmoothing(0.2)),
    "fl-L1-bias": lambda: deep_problem(3, 2, (2,), lam=1e-2, loss=Focal(2.0), bias=True),
}

# Deep CE at L >= 2: no theorem, but the DNC candidate is a critical point (docs/theory/deep.md).
CANDIDATES = {
    "ce-L2-candidate": lambda: deep_problem(4, 2, (3, 4), lam=5e-3, loss=CrossEntropy()),
    "ce-L3-candidate": lambda: deep_problem(3, 1, (3, 3, 3), lam=5e-3, loss=CrossEntropy()),
    "relu-K3-L3-candidate": lambda: deep_problem(3, 1, (3, 3, 3), "relu", lam=4e-3),
}


def _norm(tree):
    return float(jnp.sqrt(sum(jnp.sum(x ** 2) for x in jax.tree.leaves(tree))))


def _deep_stationarity(p, params):
    """‖∇F‖ / (‖∇fit‖ + ‖∇penalty‖): the two parts cancel at a critical point."""
    fit = jax.grad(lambda x: jnp.mean(p.loss(p.outputs(x), p.targets)))(params)
    g = jax.grad(p.value)(params)
    scale = _norm(fit) + _norm(jax.tree.map(lambda a, b: a - b, g, fit))
    return _norm(g), scale


def _check_construction(p, pred, seed):
    params = p.params(**pred.construct(seed=seed))
    # ReLU constructions put pre-activations exactly at the kink, where the autodiff Hessian is
    # one-sided (it misses the kink's first-order growth): no second-order certificate there.
    relu = p.activation == "relu" and p.depth >= 2
    report = ufm.compare(p, params, pred, hessian=False) if relu else ufm.compare(p, params, pred)
    assert report.ok, str(report)
    assert abs(float(p.value(params)) - pred.value) <= 1e-12 * max(pred.value, 1.0)
    g, scale = _deep_stationarity(p, params)
    # At the origin (zero regime) both parts vanish: there the loss gradient at a generic point of
    # these tiny problems, O(1), is the scale.
    assert g <= STATIONARY * max(scale, 1.0), (g, scale)
    assert pred.regime in REGIMES


_FAST_DEEP = {"lin-L2-below-dwide", "lin-L2-between", "lin-L1-bias-dK-1", "lin-L3-below",
              "imb-L2-minority", "imb-L3", "relu-K2-L3-wide", "ext-relu-K4", "ce-L1-dK-1", "ls-L1"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=() if n in _FAST_DEEP else pytest.mark.slow)
                                  for n in sorted(DEEP_GRID)])
def test_deep_construction_passes_its_prediction_and_is_stationary(name):
    p = DEEP_GRID[name]()
    pred = ufm.theory.predict(p)
    _check_construction(p, pred, len(name))


@pytest.mark.parametrize("name", [pytest.param(n, marks=() if n == "ce-L2-candidate" else pytest.mark.slow)
                                  for n in sorted(CANDIDATES)])
def test_dnc_candidate_is_a_critical_point(name):
    p = CANDIDATES[name]()
    with pytest.raises(NoClosedForm):
        ufm.theory.predict(p)
    pred = p.dnc_candidate()
    assert deep.NOT_GLOBAL in pred.notes
    _check_construction(p, pred, 2)


def test_grid_covers_both_sides_of_every_threshold():
    regimes = {name: ufm.theory.predict(build()).regime for name, build in DEEP_GRID.items()}
    assert regimes["lin-L2-near-kstar"] == regimes["lin-L2-below-dK"] == "collapse"
    assert regimes["lin-L2-between"] == regimes["lin-L2-above-max"] == "zero"
    assert regimes["lin-L3-between"] == regimes["lin-L1-above"] == regimes["ce-L1-zero"] == "zero"
    assert regimes["imb-L2-minority"] == "partial-rank" and regimes["imb-L2-all"] == "collapse"
    assert regimes["imb-L2-zero"] == regimes["ext-relu-K4-above"] == regimes["relu-K2-L3-above"] == "zero"


def test_imbalanced_prediction_has_per_class_scales():
    """docs/theory/deep.md, imbalanced: class-k output mean (s_k/√n_k) e_k, with s_k minimising
    ψ_k(s) = (s − √n_k)²/(2N) + ((L+1)/2) ρ s^p on a grid (independent of ufm.theory)."""
    counts, lam, L = (5, 3, 2), 0.02, 2
    pred = ufm.theory.predict(DEEP_GRID["imb-L2-all"]())
    N, rho = sum(counts), lam  # ρ = (λ_H λ_1 λ_2)^{1/3} = λ
    total, scales = 0.0, []
    for nk in counts:
        s = np.linspace(0, np.sqrt(nk), 2_000_001)
        f = (s - np.sqrt(nk)) ** 2 / (2 * N) + 0.5 * (L + 1) * rho * s ** (2 / (L + 1))
        total += f.min()
        scales.append(s[f.argmin()] / np.sqrt(nk))
    assert abs(pred.value - total) < 1e-10
    np.testing.assert_allclose(pred["output_means"], np.diag(scales), atol=1e-5)
    assert len(set(np.round(np.diag(pred["gram_means_1"]), 8))) == 3  # not equinorm
    for name in ("equinorm_means_1", "dnc2_means_2", "dnc2_W", "nc3_duality", "dnc3_spread_2"):
        assert name not in pred.quantities


# ---- spherical ----------------------------------------------------------------------------------

_FAST = {(4, 3, 0.5), (4, 4, 3.0), (4, 6, 8.0), (3, 2, 3.0), (3, 5, 0.5)}
SPHERICAL_GRID = [pytest.param(K, d, s, False, marks=() if (K, d, s) in _FAST else pytest.mark.slow)
                  for K, d in ((4, 3), (4, 4), (4, 6), (3, 2), (3, 5)) for s in (0.5, 3.0, 8.0)]
SPHERICAL_GRID += [(4, 4, 2.0, True), (3, 2, 1.0, True)]  # d = K-1, K, K+2 (and K = 3, d = K+2)


@pytest.mark.parametrize("K, d, s, bias", SPHERICAL_GRID)
def test_spherical_construction_passes_and_is_riemannian_stationary(K, d, s, bias):
    rW, rH = 1.3, 0.7
    p = ufm.SphericalUFM(K, 2, d, CrossEntropy(), radius_W=rW, radius_H=rH, temperature=rW * rH / s,
                         bias=bias)
    pred = ufm.theory.predict(p)
    x = p.params(**pred.construct(seed=K + d))
    # max_sphere_error is rounding-level by construction (its glue tolerance lives beside its
    # measurement, ufm.metrics.spherical.TOLERANCES).
    report = ufm.compare(p, x, pred, tolerances={"max_sphere_error": TOLERANCES["max_sphere_error"]})
    assert report.ok, str(report)
    egrad = jax.grad(p.value)(x)
    rgrad = p.manifold.euclidean_to_riemannian_gradient(x, egrad)
    assert float(p.manifold.norm(x, rgrad)) <= STATIONARY * _norm(egrad)


# ---- the model × loss matrix ---------------------------------------------------------------------

LOSSES = {"mse": MSE(), "ce": CrossEntropy(), "ls": LabelSmoothing(0.1), "fl": Focal(2.0)}


def _solve_converged(p, solver, gtol, seeds=6, max_steps=3000):
    """The first converged run over a few seeds (ReLU runs can stall at a kink of the landscape,
    where the objective is not differentiable; another start avoids it)."""
    for seed in range(seeds):
        sol = ufm.solve(p, solver, p.init(jax.random.key(seed)), gtol=gtol, max_steps=max_steps)
        if sol.status_name == "converged":
            break
    return sol


@pytest.mark.parametrize("depth", [pytest.param(1, marks=pytest.mark.slow), 2,
                                   pytest.param(3, marks=pytest.mark.slow)])
@pytest.mark.parametrize("activation", ["identity", "relu"])
@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_deep_model_loss_matrix(loss, activation, depth):
    p = ufm.DeepUFM(3, 2, (4,) * depth, LOSSES[loss], 5e-3, 5e-3, bias=(depth == 2),
                    activation=activation)
    sol = _solve_converged(p, LBFGS(), 1e-8)
    assert sol.status_name == "converged" and np.isfinite(float(sol.value))
    assert float(sol.value) < float(p.value(p.init(jax.random.key(0))))
    try:
        pred = ufm.theory.predict(p)
    except NoClosedForm as exc:
        assert str(exc)  # the refusal names why
        assert depth >= 2 or loss == "mse"  # L = 1 CE-family always has a theorem (balanced)
        return
    assert pred.regime in REGIMES and np.isfinite(pred.value)
    assert float(sol.value) >= pred.value * (1 - 1e-9)  # no run goes below the global minimum


@pytest.mark.parametrize("loss", ["ce", "ls", "fl"])
def test_spherical_loss_matrix(loss):
    p = ufm.SphericalUFM(3, 2, 3, LOSSES[loss], temperature=0.5)
    sol = _solve_converged(p, TrustRegion(), 1e-10, max_steps=200)
    assert sol.status_name == "converged" and np.isfinite(float(sol.value))
    try:
        pred = ufm.theory.predict(p)
    except NoClosedForm as exc:
        assert loss != "ce" and "cross-entropy" in str(exc)
        return
    assert abs(float(sol.value) - pred.value) <= 1e-10 * pred.value


# ---- thresholds ----------------------------------------------------------------------------------

def _at_product(build, P):
    """The problem with every decay equal, λ = P^{1/(L+1)}, so that λ_H Π λ_l = P."""
    probe = build(1.0)
    return build(P ** (1.0 / (probe.depth + 1)))


THRESHOLD_CASES = {
    # name: (builder of λ -> problem, the regime just below, independent closed form or None)
    "lin-L1": (lambda l: deep_problem(3, 2, (3,), lam=l), "collapse", 1 / (9 * 2)),
    "lin-L1-bias": (lambda l: deep_problem(3, 2, (3,), lam=l, bias=True), "collapse", 1 / (9 * 2)),
    "lin-L2": (lambda l: deep_problem(3, 2, (3, 3), lam=l), "collapse", 1 / (16 * 27 * 2)),
    "lin-L2-bias": (lambda l: deep_problem(4, 3, (3, 3), lam=l, bias=True), "collapse", 1 / (16 * 64 * 3)),
    "lin-L3": (lambda l: deep_problem(3, 2, (3, 3, 3), lam=l), "collapse", None),
    "imb-L2": (lambda l: deep_problem(3, (4, 2, 1), (3, 3), lam=l), "partial-rank", None),
    "imb-L1": (lambda l: deep_problem(3, (4, 2, 1), (3,), lam=l), "partial-rank", 4 / 49),
    "relu-K2-L3": (lambda l: deep_problem(2, 2, (2, 2, 2), "relu", lam=l), "collapse", None),
    "ext-relu-K3": (lambda l: deep_problem(3, 2, (3, 3), "relu", lam=l), "collapse", 1 / (16 * 27 * 2)),
    "ce-L1": (lambda l: deep_problem(4, 3, (3,), lam=l, loss=CrossEntropy()), "collapse", 1 / (16 * 3)),
    "ce-L1-bias": (lambda l: deep_problem(4, 3, (3,), lam=l, loss=CrossEntropy(), bias=True), "collapse",
                   1 / (16 * 3)),
    "ls-L1": (lambda l: deep_problem(4, 3, (3,), lam=l, loss=LabelSmoothing(0.2)), "collapse",
              (0.8 / 4) ** 2 / 3),
    "fl-L1": (lambda l: deep_problem(4, 3, (3,), lam=l, loss=Focal(2.0)), "collapse", None),
}


@pytest.mark.parametrize("name", sorted(THRESHOLD_CASES))
def test_threshold_is_where_predict_turns_zero(name):
    build, below, closed = THRESHOLD_CASES[name]
    P = ufm.theory.threshold(build(1e-2))
    if closed is not None:  # docs/theory/: L = 1 Kτ = 1 (§1-§3), L = 2 K³nλ³ = 1/16 (§4.1), LS Kτ + α = 1
        assert abs(P - closed) <= 1e-12 * closed
    assert ufm.theory.predict(_at_product(build, P * (1 - 1e-6))).regime == below
    assert ufm.theory.predict(_at_product(build, P * (1 + 1e-6))).regime == "zero"


def test_imbalanced_threshold_is_where_the_largest_class_vanishes():
    """Class k is non-zero iff κ_k = N P^{1/(L+1)} n_k^{−L/(L+1)} < κ*: the n_k = 4 class last."""
    counts = (4, 2, 1)
    P = ufm.theory.threshold(deep_problem(3, counts, (3, 3), lam=1e-2))
    lam = (P * (1 - 1e-6)) ** (1 / 3)
    pred = ufm.theory.predict(deep_problem(3, counts, (3, 3), lam=lam))
    assert np.count_nonzero(np.diag(pred["output_means"]) > 0) == 1 and pred["output_means"][0, 0] > 0
    assert abs(7 * P ** (1 / 3) * 4 ** (-2 / 3) - deep.kappa_star(2)) < 1e-12


@pytest.mark.parametrize("problem, match", [
    (lambda: deep_problem(3, 2, (3, 3), lam=1e-2, loss=CrossEntropy()), "no theorem covers deep CE"),
    (lambda: deep_problem(3, 2, (3, 3), lam=1e-2, loss=LabelSmoothing(0.1)), "label smoothing"),
    (lambda: deep_problem(3, 2, (3, 3, 3), "relu", lam=1e-2), "not optimal"),
    (lambda: deep_problem(3, 2, (3, 3), "relu", lam=1e-2, bias=True), "bias"),
    (lambda: deep_problem(3, (3, 2, 1), (3, 3), lam=1e-2, bias=True), "imbalanced"),
    (lambda: ufm.SphericalUFM(3, 2, 3, CrossEntropy()), "no weight decay"),
])
def test_threshold_refusals(problem, match):
    with pytest.raises(NoClosedForm, match=match):
        ufm.theory.threshold(problem())


# ---- configs -------------------------------------------------------------------------------------

@pytest.mark.parametrize("loss", sorted(LOSSES))
@pytest.mark.parametrize("counts, widths, bias, act", [(2, (3,), True, "relu"),
                                                       ((3, 1, 2), (4, 5), False, "identity")])
def test_deep_from_config_round_trip(loss, counts, widths, bias, act):
    p = ufm.DeepUFM(3, counts, widths, LOSSES[loss], np.linspace(1e-3, 2e-3, len(widths)), 3e-3,
                    2e-3 if bias else 0.0, bias, activation=act)
    q = ufm.DeepUFM.from_config(json.loads(json.dumps(p.config())))
    assert q.config() == p.config() and type(q.loss) is type(p.loss)
    x = p.init(jax.random.key(1))
    assert float(q.value(x)) == float(p.value(x))
    with pytest.raises(ValueError, match="config"):
        ufm.DeepUFM.from_config(dict(p.config(), model="spherical"))


def test_extended_is_the_two_layer_deep_ufm():
    a = ufm.DeepUFM.extended(3, 2, 4, 5, MSE(), (1e-3, 2e-3), 3e-3)
    b = ufm.DeepUFM(3, 2, (4, 5), MSE(), (1e-3, 2e-3), 3e-3, activation="relu")
    assert a.config() == b.config() and a.bias and a.activation == "relu"
    assert ufm.DeepUFM.extended(3, 2, 4, 5, MSE(), 1e-3, 1e-3).lambda_W.tolist() == [1e-3, 1e-3]
    with pytest.raises(ValueError, match="dim_hidden"):
        ufm.DeepUFM.extended(3, 2, 4, 0, MSE(), 1e-3, 1e-3)
