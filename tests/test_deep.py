"""Deep UFMs (docs/theory/deep.md, docs/theory/metrics.md): the problem, its closed forms, per-layer
metrics and multi-start solves.

Expected numbers come from docs/theory/ or from computations written here independently of
``ufm.theory.deep`` (grids, ``np.roots``, explicit forward passes)."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ufm
from ufm import landscape
from ufm.losses import CrossEntropy, MSE
from ufm.metrics import measure
from ufm.sweep import best, multi_start, reach_fraction, summarize
from ufm.theory import NoClosedForm, deep
from helpers import F64_IDENTITY, SOLVER_RTOL, rel_err

SCALES = (0.05, 0.5, 1.0, 2.0)


def lam_for(kappa, K, n, L):
    """Common decay λ with κ = K (n λ^{L+1})^{1/(L+1)} (docs/theory/conventions.md), solved by hand."""
    return kappa / (K * n ** (1 / (L + 1)))


def make(K, n, widths, activation, kappa=None, lam=None, loss=None, bias=False, **kw):
    L = len(widths)
    lam = lam_for(kappa, K, n, L) if lam is None else lam
    return ufm.DeepUFM(K, n, widths, MSE() if loss is None else loss, (lam,) * L, lam, bias=bias,
                       activation=activation, **kw)


# ---- the scalar problem: thresholds and roots --------------------------------------------------

@pytest.mark.parametrize("L, kstar, kmax", [(2, 2 ** (-4 / 3), 3 * 4 ** (-4 / 3)), (3, 0.27217, 0.38490)])
def test_thresholds_match_theory_numbers(L, kstar, kmax):
    tol = 1e-15 if L == 2 else 5e-6  # docs/theory/ prints L = 3 to 5 digits
    assert abs(deep.kappa_star(L) - kstar) <= tol
    assert abs(deep.kappa_max(L) - kmax) <= tol


@pytest.mark.parametrize("L", [2, 3, 4])
def test_thresholds_by_brute_force(L):
    """Independent: ψ minimised on a dense grid, and h maximised on it."""
    p = 2 / (L + 1)
    s = np.linspace(0, 1, 400_001)
    psi = lambda k: 0.5 * (1 - s) ** 2 + 0.5 * (L + 1) * k * s ** p  # noqa: E731
    ks = deep.kappa_star(L)
    below, above = psi(ks * (1 - 1e-4)), psi(ks * (1 + 1e-4))
    assert below.min() < 0.5 - 1e-6 and abs(s[below.argmin()] - (L - 1) / L) < 1e-3
    assert above.min() >= 0.5 and above.argmin() == 0
    assert abs(np.max(s ** (1 - p) * (1 - s)) - deep.kappa_max(L)) < 1e-9


@pytest.mark.parametrize("L", [2, 3, 4])
def test_sigma_jumps_at_threshold(L):
    ks = deep.kappa_star(L)
    assert abs(deep.sigma_star(ks * (1 - 1e-10), L) - (L - 1) / L) < 1e-4
    assert deep.sigma_star(ks * (1 + 1e-10), L) == 0.0
    assert math.isnan(deep.sigma_local(deep.kappa_max(L) * (1 + 1e-9), L))


@pytest.mark.parametrize("kappa", [0.01, 0.1, 0.3, 0.39, 0.45, 0.47])
def test_quartic_cross_check(kappa):
    """L = 2: σ = t³ with t the largest positive root of t⁴ − t + κ = 0 (np.roots here)."""
    roots = np.roots([1, 0, 0, -1, kappa])
    t = max(r.real for r in roots if abs(r.imag) < 1e-9 and r.real > 0)
    assert abs(deep.sigma_local(kappa, 2) - t ** 3) < 1e-12
    assert abs(deep.quartic_sigma(kappa) - t ** 3) < 1e-12


@pytest.mark.parametrize("L, kappa", [(3, 0.2), (3, 0.38), (4, 0.15), (5, 0.1)])
def test_general_polynomial_and_stationarity(L, kappa):
    s = deep.sigma_local(kappa, L)
    p = 2 / (L + 1)
    assert abs(-(1 - s) + kappa * s ** (p - 1)) < 1e-12  # ψ'(σ) = 0
    assert abs(deep.polynomial_sigma(kappa, L) - s) < 1e-9


def test_depth_one_is_the_plain_ufm():
    """L = 1 reproduces docs/theory/mse.md/§2: F* = a − a²/2, and ((K−1)/K)(a − a²/2) with a free bias."""
    K, n, lw, lh = 4, 3, 1e-2, 2e-2
    a = K * math.sqrt(n * lw * lh)
    common = dict(counts=[n] * K, widths=(5,), activation="identity", lambda_H=lh, lambdas=[lw])
    assert abs(deep.predict_deep(loss="mse", **common).value - (a - a * a / 2)) < 1e-15
    assert abs(deep.predict_deep(loss="mse", bias=True, **common).value
               - (K - 1) / K * (a - a * a / 2)) < 1e-15
    tau = math.sqrt(n * lw * lh)  # CE (§3): F* = −log(1 − (K−1)τ) + (K−1)τ log((1 − (K−1)τ)/τ)
    q = 1 - (K - 1) * tau
    assert abs(deep.predict_deep(loss="ce", **common).value
               - (-math.log(q) + (K - 1) * tau * math.log(q / tau))) < 1e-12


def test_closed_form_grams_follow_theory():
    """docs/theory/deep.md formulas written out: θ = (κ/K)σ*^p, W_LW_Lᵀ = (θ/λ_L)I, layer-l Grams."""
    K, n, L = 3, 2, 3
    lh, lams = 2e-2, [1e-2, 3e-2, 2e-2]
    pred = deep.predict_deep(counts=[n] * K, widths=(4, 5, 4), activation="identity", loss="mse",
                             lambda_H=lh, lambdas=lams)
    k = K * (n * lh * np.prod(lams)) ** (1 / (L + 1))
    grid = np.linspace(0, 1, 2_000_001)
    psi = 0.5 * (1 - grid) ** 2 + 0.5 * (L + 1) * k * grid ** (2 / (L + 1))
    s = grid[psi.argmin()]
    assert abs(pred.scalars["sigma_star"] - s) < 1e-5 and abs(pred.value - psi.min()) < 1e-10
    s = pred.scalars["sigma_star"]
    theta = k / K * s ** (2 / (L + 1))
    I = np.eye(K)
    assert rel_err(pred["gram_W"], theta / lams[-1] * I) < F64_IDENTITY
    assert rel_err(pred["gram_means_1"], theta / (n * lh) * I) < F64_IDENTITY
    for l in (2, 3):
        assert rel_err(pred[f"gram_means_{l}"], theta ** l / (n * lh * np.prod(lams[:l - 1])) * I) < 1e-12
    for l in (1, 2, 3):
        assert abs(lams[l - 1] * pred[f"norm_W{l}_sq"] - K * theta) < 1e-14
    assert abs(lh * pred["norm_H1_sq"] - K * theta) < 1e-14
    assert rel_err(pred["output_means"], s * I) < F64_IDENTITY


def test_imbalanced_minority_collapse():
    """n_k = (4, 2, 1), L = 2, λ = 0.065 (docs/theory/deep.md): the class with n_k = 1 collapses.

    Each class is minimised independently on a grid: ψ_k(s) = (s − √n_k)²/(2N) + (3/2)ρ s^{2/3}."""
    counts, lam = [4, 2, 1], 0.065
    pred = deep.predict_deep(counts=counts, widths=(4, 4), activation="identity", loss="mse",
                             lambda_H=lam, lambdas=[lam, lam])
    N, rho = sum(counts), lam
    total, sig = 0.0, []
    for nk in counts:
        sgrid = np.linspace(0, math.sqrt(nk), 2_000_001)
        f = (sgrid - math.sqrt(nk)) ** 2 / (2 * N) + 1.5 * rho * sgrid ** (2 / 3)
        total += f.min()
        sig.append(sgrid[f.argmin()] / math.sqrt(nk))
    assert abs(pred.value - total) < 1e-10
    assert sig[2] == 0.0 and min(sig[:2]) > 0.5
    assert pred.regime == "partial-rank" and "classes [2] vanish" in " ".join(pred.notes)
    for name in ("equinorm_means_1", "dnc2_means_1", "dnc2_W", "nc3_duality", "dnc3_spread_1"):
        assert name not in pred.quantities  # not equinorm under imbalance (docs/theory/deep.md)
    assert np.allclose(np.diag(pred["output_means"]), sig, atol=1e-5)
    assert pred["output_means"][2, 2] == 0.0


def test_partial_rank_values_formula():
    k, L, K = 0.3, 2, 3
    s = deep.sigma_local(k, L)
    psi = 0.5 * (1 - s) ** 2 + 1.5 * k * s ** (2 / 3)
    f = deep.partial_rank_values(k, L, K)
    assert np.allclose(f, [(r * psi + (K - r) / 2) / K for r in range(K + 1)], rtol=0, atol=1e-15)


# ---- the problem ------------------------------------------------------------------------------

def test_value_matches_explicit_forward_pass():
    p = ufm.DeepUFM.extended(3, (2, 3, 1), 4, 5, MSE(), (2e-2, 3e-2), 1e-2, bias=False)
    params = p.init(jax.random.key(1), 1.0)
    H, (W1, W2) = np.asarray(params.H), [np.asarray(W) for W in params.Ws]
    Y = np.eye(3)[np.repeat(np.arange(3), [2, 3, 1])]
    Z = np.maximum(H @ W1.T, 0) @ W2.T
    expected = (0.5 * np.sum((Z - Y) ** 2) / 6 + 0.5 * (1e-2 * np.sum(H ** 2) + 2e-2 * np.sum(W1 ** 2)
                                                      + 3e-2 * np.sum(W2 ** 2)))
    assert abs(float(p.value(params)) - expected) < 1e-12 * expected
    assert p.depth == 2 and p.shapes == ((5, 4), (3, 5)) and p.config()["lambda_W"] == [2e-2, 3e-2]


def test_lambdas_are_a_vmappable_leaf():
    p = make(3, 2, (4, 4), "identity", lam=1e-2)
    params = p.init(jax.random.key(0), 1.0)
    lams = jnp.array([[1e-2, 1e-2], [2e-2, 5e-3]])
    vals = jax.vmap(lambda lam: dataclasses.replace(p, lambda_W=lam).value(params))(lams)
    direct = [float(dataclasses.replace(p, lambda_W=tuple(map(float, l))).value(params)) for l in lams]
    assert np.allclose(vals, direct, rtol=1e-14)


@pytest.mark.parametrize("kwargs, match", [
    (dict(widths=()), "widths"),
    (dict(widths=(4, 0)), r"widths\[1\]"),
    (dict(widths=(4, 2.5)), r"widths\[1\]"),
    (dict(lambda_W=(1e-2,)), "lambda_W"),
    (dict(lambda_W=(1e-2, 1e-2, 1e-2)), "lambda_W"),
    (dict(lambda_W=np.ones((2, 2))), "lambda_W"),
    (dict(lambda_W=(1e-2, -1e-3)), r"lambda_W\[1\]"),
    (dict(lambda_W=None), "lambda_W"),
    (dict(lambda_W="0.1"), "lambda_W"),
    (dict(lambda_W=True), "lambda_W"),
    (dict(lambda_W=1j), "lambda_W"),
    (dict(lambda_H=-1.0), "lambda_H"),
    (dict(lambda_H=[1e-2]), "lambda_H"),
    (dict(lambda_H=np.ones(2)), "lambda_H"),
    (dict(lambda_b=None), "lambda_b"),
    (dict(activation="tanh"), "activation"),
    (dict(activation=None), "activation"),
    (dict(loss=None), "loss"),
    (dict(loss="mse"), "loss"),
    (dict(bias=False, lambda_b=0.1), "lambda_b"),
    (dict(bias=1), "bias"),
    (dict(num_per_class=(2, 2)), "num_per_class"),
    (dict(num_classes=10 ** 5, num_per_class=10 ** 5), "GiB"),
])
def test_validation(kwargs, match):
    args = dict(num_classes=3, num_per_class=2, widths=(4, 4), activation="relu", loss=MSE(),
                lambda_H=1e-2, lambda_W=(1e-2, 1e-2))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        ufm.DeepUFM(**args)


def test_refusals_and_the_collapsed_configuration():
    with pytest.raises(NoClosedForm, match="not optimal"):
        ufm.theory.predict(make(3, 1, (3, 3, 3), "relu", lam=4e-3))
    for widths in ((3, 3), (3, 3, 3)):  # docs/theory/deep.md (corrected): no theorem at any L >= 2
        with pytest.raises(NoClosedForm, match="no theorem covers deep CE at L >= 2.*dnc_candidate"):
            ufm.theory.predict(make(3, 2, widths, "identity", lam=5e-3, loss=CrossEntropy()))
    with pytest.raises(NoClosedForm, match="bias"):
        ufm.theory.predict(make(3, 2, (4, 4), "relu", lam=1e-2, bias=True))
    with pytest.raises(NoClosedForm, match="imbalanced"):
        ufm.theory.predict(make(3, (3, 2, 1), (4, 4), "relu", lam=1e-2))
    with pytest.raises(NoClosedForm, match="lambda"):
        ufm.theory.predict(make(3, 2, (4, 4), "identity", lam=0.0))
    with pytest.raises(NoClosedForm, match="width"):
        ufm.theory.predict(make(3, 2, (4, 2), "identity", lam=1e-2))
    dnc = deep.collapsed_configuration(counts=[1] * 3, widths=(3,) * 4, activation="relu", loss="mse",
                                       lambda_H=4e-3, lambdas=[4e-3] * 4)
    assert dnc.regime in ufm.theory.REGIMES and deep.NOT_GLOBAL in dnc.notes
    assert make(3, 1, (3,) * 4, "relu", lam=4e-3).dnc_candidate().value == dnc.value
    # K = 2 and L = 2 are the theorems' cases: predictions, not refusals.
    assert ufm.theory.predict(make(2, 2, (3, 3, 3), "relu", kappa=0.2)).regime == "collapse"
    assert ufm.theory.predict(make(4, 2, (4, 4), "relu", kappa=0.2)).regime == "collapse"


@pytest.mark.parametrize("activation, depth", [("identity", 2), ("relu", 3)])
def test_hessian_at_origin_is_diag_lambda(activation, depth):
    """docs/theory/deep.md: the fit term is of order ≥ 3 at the origin, so Hess = diag(λ_H, λ_l) ≻ 0."""
    lams = (2e-2, 3e-2, 5e-2)[:depth]
    p = ufm.DeepUFM(2, 2, (3,) * depth, MSE(), lams, 1e-2, bias=False, activation=activation)
    zero = p.zeros()
    g = jax.grad(p.value)(zero)
    assert max(float(jnp.max(jnp.abs(x))) for x in jax.tree.leaves(g)) == 0.0
    Hm = np.asarray(landscape.hessian(p, zero))
    expected = np.concatenate([np.full(zero.H.size, 1e-2)] + [np.full(W.size, l) for W, l in zip(zero.Ws, lams)])
    assert np.abs(Hm - np.diag(expected)).max() < 1e-15
    assert float(p.value(zero)) == 0.5


# ---- construction and per-layer metrics --------------------------------------------------------

CONSTRUCTIONS = {
    "linear-L3": lambda: make(3, 2, (4, 5, 4), "identity", kappa=0.2),
    "linear-L2-bias": lambda: make(4, 2, (3, 4), "identity", kappa=0.25, bias=True),
    "relu-L2": lambda: make(3, 2, (4, 5), "relu", kappa=0.3),
    "relu-K2-L3": lambda: make(2, 3, (3, 3, 4), "relu", kappa=0.2),
    "imbalanced": lambda: make(3, (4, 2, 1), (4, 4), "identity", lam=0.065),
    "ce-L2-candidate": lambda: make(4, 2, (3, 4), "identity", lam=5e-3, loss=CrossEntropy()),
    "ce-L1": lambda: make(4, 2, (3,), "identity", lam=5e-3, loss=CrossEntropy()),
}


def _prediction(p):
    """predict, or the labelled DNC upper bound where no theorem applies (deep CE at L >= 2)."""
    try:
        return ufm.theory.predict(p)
    except NoClosedForm:
        return p.dnc_candidate()


@pytest.mark.parametrize("name", sorted(CONSTRUCTIONS))
def test_construction_realises_the_prediction(name):
    p = CONSTRUCTIONS[name]()
    pred = _prediction(p)
    params = p.params(**pred.construct(seed=3))
    tight = {q: (1e-10, "abs") for q in pred.quantities}
    report = ufm.compare(p, params, pred, tolerances=tight)
    assert report.ok, str(report)


@pytest.mark.parametrize("name", ["linear-L3", "relu-L2", "linear-L2-bias"])
def test_metrics_zero_at_construction_nonzero_after_perturbation(name):
    p = CONSTRUCTIONS[name]()
    pred = ufm.theory.predict(p)
    params = p.params(**pred.construct(seed=0))
    zero_names = [q for q in pred.quantities if q.startswith(("dnc", "equinorm", "nc3"))]
    assert {"dnc1_1", "dnc2_W", "nc3_duality", f"dnc2_means_{p.depth}"} <= set(zero_names)
    at = measure(p, params)
    assert max(abs(at[q]) for q in zero_names) < 1e-12
    rng = np.random.default_rng(0)
    noisy = jax.tree.map(lambda x: x + 0.1 * float(jnp.std(x)) * jnp.asarray(rng.standard_normal(x.shape)),
                         params)
    off = measure(p, noisy)
    for q in zero_names:
        assert abs(off[q]) > 1e-4, (q, off[q])


def test_relu_first_layer_caveat_in_prediction():
    pred = ufm.theory.predict(CONSTRUCTIONS["relu-L2"]())
    assert "gram_means_1" not in pred.quantities and "W1_spectrum" not in pred.quantities
    assert "dnc2_means_1" not in pred.quantities and "dnc1_1" in pred.quantities
    assert "means_norms_sq_1" in pred.quantities and "gram_means_2" in pred.quantities


# ---- solves: closed form vs the best of ≥ 64 restarts ------------------------------------------

def _multi(p, seeds=16):
    sols = multi_start(p, ufm.solvers.LBFGS(), jax.random.key(0), seeds, SCALES, max_steps=4000,
                       gtol=1e-12, restarts=1, batching="map")
    return sols, best(sols)


def _check_best(p, sol, pred, tol):
    assert abs(float(sol.value) - pred.value) <= SOLVER_RTOL * pred.value
    tols = {q: (tol, "abs" if q.startswith(("dnc", "equinorm", "nc3", "balanced")) else "rel")
            for q in pred.quantities if q != "value"}
    report = ufm.compare(p, sol, pred, tolerances=tols, hessian=False)
    assert all(r.ok for r in report.rows if r.quantity != "grad_norm"), str(report)


@pytest.mark.parametrize("kappa", [0.30, 0.43])
def test_deep_linear_L2_both_sides_and_partial_rank_values(kappa):
    """64 restarts in one program; the best matches; every run ends on some f_r ≥ F* (§10.4)."""
    p = make(3, 2, (4, 4), "identity", kappa=kappa)
    pred = ufm.theory.predict(p)
    assert pred.regime == ("collapse" if kappa < deep.kappa_star(2) else "zero")
    sols, b = _multi(p)
    assert sols.value.shape == (64,)
    _check_best(p, b, pred, 1e-5)
    values = np.asarray(sols.value)
    f = deep.partial_rank_values(kappa, 2, 3)
    assert np.all(values >= pred.value * (1 - 1e-10))
    nearest = np.min(np.abs(values[:, None] - f[None, :]) / f[None, :], axis=1)
    assert np.all(nearest < 1e-8), values[nearest >= 1e-8]
    summary = summarize(sols, pred.value, 1e-8, SCALES)
    assert summary["num_below_target"] == 0 and summary["reach_fraction"] == reach_fraction(values, pred.value, 1e-8)
    assert len(summary["levels"]) >= 2  # spurious partial-rank minima are reached too


@pytest.mark.parametrize("kappa", [0.30, 0.43])
def test_extended_relu_L2_both_sides(kappa):
    p = make(3, 2, (4, 4), "relu", kappa=kappa)
    pred = ufm.theory.predict(p)
    sols, b = _multi(p)
    _check_best(p, b, pred, 1e-4)
    assert np.all(np.asarray(sols.value) >= pred.value * (1 - 1e-10))


SLOW = {
    "linear-L3": (lambda: make(3, 2, (4, 4, 4), "identity", kappa=0.2), 1e-5),
    "linear-L4": (lambda: make(3, 2, (4, 4, 4, 4), "identity", kappa=0.1), 1e-5),
    "linear-bias": (lambda: make(4, 3, (3, 3), "identity", kappa=0.25, bias=True), 1e-5),
    "imbalanced": (lambda: make(3, (4, 2, 1), (4, 4), "identity", lam=0.065), 1e-5),
    "relu-K2-L3": (lambda: make(2, 2, (3, 3, 3), "relu", kappa=0.2), 1e-4),
    "relu-K2-L4": (lambda: make(2, 2, (3, 3, 3, 3), "relu", kappa=0.12), 1e-4),
    "relu-K4-L2": (lambda: make(4, 2, (5, 5), "relu", kappa=0.25), 1e-4),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SLOW))
def test_best_multistart_matches_closed_form(name):
    build, tol = SLOW[name]
    p = build()
    pred = ufm.theory.predict(p)
    sols, b = _multi(p, seeds=24)
    _check_best(p, b, pred, tol)
    assert np.all(np.asarray(sols.value) >= pred.value * (1 - 1e-10))


@pytest.mark.slow
def test_relu_K3_L4_collapse_is_not_optimal():
    """docs/theory/deep.md: at K = 3, L = 4, λ = 4e-3, n = 1 a solution ≈ 2% below the DNC value exists."""
    p = make(3, 1, (3, 3, 3, 3), "relu", lam=4e-3)
    dnc = deep.collapsed_configuration(counts=p.counts, widths=p.widths, activation="relu",
                                       loss="mse", lambda_H=4e-3, lambdas=[4e-3] * 4)
    sols, b = _multi(p, seeds=32)
    assert float(b.value) < dnc.value * (1 - 0.01)


@pytest.mark.slow
def test_deep_ce_L2_candidate_is_an_upper_bound_below_the_best_found():
    """docs/theory/deep.md (corrected): K = 6, n = 1, widths (7, 7), λ = 1e-3: converged points lie 6.1%
    below F_DNC = 0.0314901443717 (0.0295684731807 with gradient norm 9e-12)."""
    p = make(6, 1, (7, 7), "identity", lam=1e-3, loss=CrossEntropy())
    dnc = p.dnc_candidate()
    assert abs(dnc.value - 0.0314901443717) < 1e-12
    sols, b = _multi(p, seeds=8)
    assert float(b.value) < dnc.value * (1 - 0.03)


@pytest.mark.parametrize("widths, bias, lambda_b", [((2,), False, 0.0), ((4,), True, 0.1)],
                         ids=["narrow", "regularised-bias"])
def test_depth_one_refusal_points_to_the_plain_ufm_that_has_the_closed_form(widths, bias, lambda_b):
    """A depth-1 DeepUFM is the plain UFM; where the deep closed forms do not reach (MSE below the
    output rank, a regularised bias) the refusal names ufm.UFM, and that UFM does predict."""
    deep = ufm.DeepUFM(4, 3, widths, ufm.losses.MSE(), 1e-2, 2e-2, bias=bias, lambda_b=lambda_b)
    with pytest.raises(NoClosedForm, match=r"plain UFM.*ufm\.UFM"):
        ufm.theory.predict(deep)
    plain = ufm.UFM(4, 3, widths[0], ufm.losses.MSE(), 1e-2, 2e-2, bias=bias, lambda_b=lambda_b)
    params = deep.init(jax.random.key(0))
    as_plain = plain.params(params.Ws[0], params.H, params.b)
    np.testing.assert_allclose(float(deep.value(params)), float(plain.value(as_plain)), rtol=1e-14)
    assert ufm.theory.predict(plain).regime in ("collapse", "partial-rank")
