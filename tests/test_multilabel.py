"""Multi-label UFM under the pick-all-label loss (docs/theory/multilabel.md, docs/theory/conventions.md, docs/theory/metrics.md).

Expected values come from docs/theory/ (the ρ examples, the CE closed form of §3, the threshold),
from formulas written out here (loss hand values, the logit gradient at the origin, the Hessian
at the origin of §10.1), or from L-BFGS solves of the full problem in float64.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ufm
from ufm.cases import default_solve
from ufm.losses import CrossEntropy, PickAllLabel, PickAllLabelNormalised
from ufm.metrics import multilabel as mlm
from ufm.problems import MultiLabelUFM
from ufm.theory import NoClosedForm, plain
from ufm.theory import multilabel as mlt
from ufm.theory.frames import centering

PAL = PickAllLabel()

from helpers import F64_IDENTITY, rel_err


# ---- the loss ---------------------------------------------------------------------------------

def test_pick_all_label_hand_values():
    z = jnp.array([[1.0, 2.0, 0.0, -1.0], [0.5, -0.5, 0.0, 3.0], [0.0, 0.0, 0.0, 0.0]])
    Y = jnp.array([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 0.0]])
    lse0 = math.log(math.e + math.e ** 2 + 1 + math.exp(-1))
    lse1 = math.log(math.exp(0.5) + math.exp(-0.5) + 1 + math.exp(3))
    expected = np.array([2 * lse0 - 3.0, lse1 - 3.0, 3 * math.log(4)])
    np.testing.assert_allclose(PickAllLabel()(z, Y), expected, rtol=1e-14)
    np.testing.assert_allclose(PickAllLabelNormalised()(z, Y), expected / np.array([2, 1, 3]),
                               rtol=1e-14)
    # Σ_{k∈S} CE(z, k), and the lower bound m log m at logits that put all mass on S.
    ce = CrossEntropy()
    by_label = sum(ce(z[:1], jnp.eye(4)[k][None]) for k in (0, 1))
    np.testing.assert_allclose(PickAllLabel()(z[:1], Y[:1]), by_label, rtol=1e-14)
    big = jnp.array([[40.0, 40.0, 0.0, 0.0]])
    assert float(PickAllLabel()(big, Y[:1])[0]) == pytest.approx(2 * math.log(2), rel=1e-12)


# ---- the problem: construction and validation -----------------------------------------------

def test_balanced_layout_and_multi_hot_input():
    p = MultiLabelUFM.balanced(4, {1: 2, 2: 1}, 4, PAL, 1e-2, 1e-2)
    assert p.num_samples == 2 * 4 + 6 and p.counts_by_size == {1: 2, 2: 1}
    assert p.label_sets[:3] == ((0,), (0,), (1,)) and p.label_sets[-1] == (2, 3)
    q = MultiLabelUFM(4, p.multi_hot, 4, PAL, 1e-2, 1e-2)
    r = MultiLabelUFM(4, [set(S) for S in reversed(p.label_sets)], 4, PAL, 1e-2, 1e-2)
    assert q == p and hash(q.label_sets) == hash(p.label_sets)
    assert r.counts_by_size == {1: 2, 2: 1}  # order does not matter for balance
    np.testing.assert_array_equal(np.asarray(p.targets), p.multi_hot)
    assert MultiLabelUFM(3, [[0], [1, 2]], 3, PAL, 1e-2, 1e-2).counts_by_size is None
    import json
    cfg = json.loads(json.dumps(p.config()))
    assert cfg["model"] == "multilabel_ufm" and cfg["counts_by_size"] == {"1": 2, "2": 1}


@pytest.mark.parametrize("kwargs, match", [
    (dict(label_sets=[[0], [4]]), r"label_sets\[1\].*\[0, 3\]"),
    (dict(label_sets=[[0], [-1]]), r"label_sets\[1\].*\[0, 3\]"),
    (dict(label_sets=[[0], []]), r"label_sets\[1\] is empty"),
    (dict(label_sets=[[0, 1, 1]]), r"label_sets\[0\].*repeats"),
    (dict(label_sets=[[0.5]]), r"label_sets\[0\].*integers"),
    (dict(label_sets=[3]), r"label_sets\[0\] must be a collection"),
    (dict(label_sets=[]), r"label_sets must be a non-empty"),
    (dict(label_sets=np.array([[1, 0, 0, 0], [0, 0, 0, 0]])), r"label_sets row 1 is empty"),
    (dict(label_sets=np.array([[1, 2, 0, 0]])), r"entries in \{0, 1\}"),
    (dict(label_sets=np.ones((2, 3))), r"shape \[N, num_classes=4\]"),
    (dict(num_classes=1, label_sets=[[0]]), r"num_classes must be an integer >= 2"),
    (dict(dim=0), r"dim must be an integer >= 1"),
    (dict(lambda_W=-1.0), r"lambda_W must be >= 0"),
    (dict(lambda_b=0.1, bias=False), r"lambda_b must be 0 when bias=False"),
    (dict(loss=CrossEntropy()), r"loss must be PickAllLabel"),
])
def test_validation_errors(kwargs, match):
    args = dict(num_classes=4, label_sets=[[0], [1, 2]], dim=4, loss=PAL, lambda_W=1e-2, lambda_H=1e-2)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        MultiLabelUFM(**args)


@pytest.mark.parametrize("counts, match", [
    ({0: 1}, r"counts_by_size keys.*\[1, 4\]"),
    ({5: 1}, r"counts_by_size keys.*\[1, 4\]"),
    ({1: 0}, r"counts_by_size\[1\] must be an integer >= 1"),
    ({}, r"counts_by_size must be a non-empty mapping"),
])
def test_balanced_spec_validation(counts, match):
    with pytest.raises(ValueError, match=match):
        MultiLabelUFM.balanced(4, counts, 4, PAL, 1e-2, 1e-2)


def test_problem_is_a_jittable_pytree():
    p = MultiLabelUFM.balanced(3, {1: 1, 2: 1}, 3, PAL, 1e-2, 2e-2, 1e-3)
    params = p.init(jax.random.key(0))
    leaves, treedef = jax.tree.flatten(p)
    assert jax.tree.unflatten(treedef, leaves) == p
    direct = float(p.value(params))
    assert float(jax.jit(lambda q, x: q.value(x))(p, params)) == pytest.approx(direct, rel=1e-14)
    # the objective by hand, from the multi-hot targets
    z = np.asarray(params.H) @ np.asarray(params.W).T + np.asarray(params.b)
    Y = p.multi_hot
    lse = np.log(np.exp(z).sum(axis=1))
    fit = np.mean(Y.sum(axis=1) * lse - (Y * z).sum(axis=1))
    reg = 1e-2 * np.sum(np.asarray(params.W) ** 2) + 2e-2 * np.sum(np.asarray(params.H) ** 2) \
        + 1e-3 * np.sum(np.asarray(params.b) ** 2)
    assert direct == pytest.approx(fit + reg / 2, rel=1e-13)


# ---- theory: the scalar system --------------------------------------------------------------

def test_rho_examples_of_theory_md():
    _, b = mlt.pal_solve(4, {1: 2, 2: 1}, 2e-3, 5e-3)
    assert round(mlt.pal_rho(b)[2], 5) == 1.77816
    _, b = mlt.pal_solve(5, {1: 1, 2: 1, 3: 1}, 3e-3, 2e-3)
    rho = mlt.pal_rho(b)
    assert (round(rho[2], 5), round(rho[3], 5)) == (1.78175, 2.48486)
    assert all(rho[m] < m for m in (2, 3))


@pytest.mark.parametrize("K, counts, lw, lh", [
    (4, {1: 2, 2: 1}, 2e-3, 5e-3), (5, {1: 1, 2: 1, 3: 1}, 3e-3, 2e-3),
    (5, {1: 3, 2: 1, 3: 2}, 1e-4, 3e-2), (6, {2: 2, 4: 1}, 1e-3, 1e-3), (3, {1: 1, 3: 2}, 1e-2, 1e-2),
])
def test_system_residuals_and_stationarity(K, counts, lw, lh):
    a, beta = mlt.pal_solve(K, counts, lw, lh)
    N = sum(n * math.comb(K, m) for m, n in counts.items())
    assert a > 0
    for m, b in beta.items():  # (A_m)
        assert N * lh * b * (m * math.exp(a * b) + K - m) == pytest.approx(K, rel=1e-13)
    lhs_B = lh * sum(n * math.comb(K - 2, m - 1) * beta[m] ** 2 for m, n in counts.items())
    assert lhs_B == pytest.approx(lw, rel=1e-13)  # (B)
    # (a, β) is a stationary point (a minimum along each coordinate) of F at the structure: the
    # odd part of F(x(1 ± ε)) − F(x), ~ ε·gradient, is ≪ the even part ~ ε²·curvature. β_K is
    # irrelevant (h_S = 0 for the full set), so it is skipped.
    F = lambda a_, b_: mlt.pal_value(K, counts, lw, lh, a_, b_)
    F0, eps = F(a, beta), 1e-3

    def odd_even(up, dn):
        return abs(up - dn) / 2, (up + dn) / 2 - F0

    odd, even = odd_even(F(a * (1 + eps), beta), F(a * (1 - eps), beta))
    assert even > 0 and odd < 1e-2 * even
    for m in beta:
        if m == K:
            continue
        up, dn = dict(beta), dict(beta)
        up[m], dn[m] = beta[m] * (1 + eps), beta[m] * (1 - eps)
        odd, even = odd_even(F(a, up), F(a, dn))
        assert even > 0 and odd < 1e-2 * even, (m, odd, even)


def test_value_formula_matches_the_objective_at_any_structured_point():
    K, counts, d = 5, {1: 2, 2: 1, 3: 1}, 6
    p = MultiLabelUFM.balanced(K, counts, d, PAL, 3e-3, 7e-3, 2e-2)
    a, beta = 2.7, {1: 0.9, 2: 0.45, 3: 0.3}
    W = ufm.theory.factor_from_gram(a * centering(K), d, np.random.default_rng(0))
    H = np.array([beta[len(S)] for S in p.label_sets])[:, None] * (p.multi_hot @ W)
    value = float(p.value(p.params(W, H, np.zeros(K))))
    assert mlt.pal_value(K, counts, 3e-3, 7e-3, a, beta) == pytest.approx(value, rel=1e-13)


@pytest.mark.parametrize("K, n, lw, lh", [(4, 5, 5e-3, 7e-3), (10, 3, 1e-3, 2e-3), (3, 10, 1e-2, 1e-3),
                                          (4, 5, 0.2, 0.2), (2, 4, 1e-2, 3e-2)])
def test_single_label_case_reduces_to_cross_entropy(K, n, lw, lh):
    tau = math.sqrt(n * lw * lh)
    pal = mlt.pal_ufm(K, {1: n}, K, lw, lh, 1e-3)
    ce = plain.ce_family(K, n, K, lw, lh, 1e-3, True, "ce")
    assert pal.value == pytest.approx(plain.ce_value(K, tau), rel=1e-13)
    assert pal.value == pytest.approx(ce.value, rel=1e-13)
    assert pal.regime == ce.regime == ("zero" if K * tau >= 1 else "collapse")
    assert (mlt.pal_threshold(K, {1: n}) > lw * lh) == (K * tau < 1)
    assert pal.quantities["norm_W_sq"] == pytest.approx(ce["norm_W_sq"], rel=1e-12, abs=1e-300)
    assert pal.quantities["norm_H_sq"] == pytest.approx(ce["norm_H_sq"], rel=1e-12, abs=1e-300)
    if K * tau < 1:
        assert pal.scalars["margin_1"] == pytest.approx(plain.ce_margin(K, tau), rel=1e-12)
        assert pal.scalars["beta_1"] == pytest.approx(math.sqrt(lw / (n * lh)), rel=1e-12)
        assert rel_err(pal["gram_W"], ce["gram_W"]) < 1e-12
        assert rel_err(pal["W_means_single"], ce["W_means"]) < 1e-12
    # the problem: PAL with one-hot targets is CE, sample for sample
    pml = MultiLabelUFM.balanced(K, {1: n}, K, PAL, lw, lh, 1e-3)
    pce = ufm.UFM(K, n, K, CrossEntropy(), lw, lh, 1e-3)
    x = pml.init(jax.random.key(1), scale=0.7)
    assert float(pml.value(x)) == pytest.approx(float(pce.value(x)), rel=1e-14)


@pytest.mark.parametrize("K, counts", [(4, {1: 2, 2: 1}), (5, {1: 1, 2: 1, 3: 1}), (5, {2: 1, 5: 3}),
                                       (6, {1: 3, 3: 1})])
def test_threshold_is_the_logit_gradient_norm_at_the_origin(K, counts):
    # docs/theory/ce-family.md argument: at W = H = 0, b = 0 the logit gradient of sample i is
    # (m_i/K 1 − y_i)/N; the origin stops being optimal when √(λ_Wλ_H) < ‖G‖_op.
    Y = mlm.as_multi_hot(mlt.canonical_label_sets(K, counts), K)
    N = Y.shape[0]
    G = (Y.sum(axis=1, keepdims=True) / K - Y) / N
    assert np.linalg.norm(G, 2) ** 2 == pytest.approx(mlt.pal_threshold(K, counts), rel=1e-12)
    N_m, N2 = mlt.pal_sizes(K, counts)
    assert N2 == N


def test_origin_hessian_changes_sign_at_the_threshold():
    # smallest Hessian eigenvalue at the origin: (λ_W+λ_H)/2 − √(((λ_W−λ_H)/2)² + threshold)
    K, counts = 4, {1: 2, 2: 1}
    thr = mlt.pal_threshold(K, counts)
    for lw, lh in [(0.12, 0.16), (0.15, 0.16)]:  # products 0.0192 < 1/49 < 0.024
        p = MultiLabelUFM.balanced(K, counts, 4, PAL, lw, lh, 0.05)
        x = jax.tree.map(jnp.zeros_like, p.init(jax.random.key(0)))
        evals = ufm.landscape.hessian_eigenvalues(p, x)
        expected = (lw + lh) / 2 - math.sqrt(((lw - lh) / 2) ** 2 + thr)
        assert float(evals[0]) == pytest.approx(expected, rel=1e-10)
        assert (expected < 0) == (lw * lh < thr)


def test_zero_solution_values():
    K, counts = 4, {1: 2, 2: 1}
    for lb in (0.0, 0.1):
        pred = mlt.pal_ufm(K, counts, 4, 0.16, 0.16, lb)
        assert pred.regime == "zero" and pred.scalars["a"] == 0.0
        assert pred.value == pytest.approx((8 * 1 + 6 * 2) / 14 * math.log(4), rel=1e-15)
        assert ("bias" if lb else "bias_centred") in pred.quantities


def test_predict_refuses_outside_the_theorem():
    base = dict(num_classes=4, dim=4, loss=PAL, lambda_W=1e-2, lambda_H=1e-2)
    with pytest.raises(NoClosedForm, match="PAL-N"):
        ufm.theory.predict(MultiLabelUFM.balanced(4, {1: 1}, 4, PickAllLabelNormalised(), 1e-2, 1e-2))
    with pytest.raises(NoClosedForm, match="not balanced"):
        ufm.theory.predict(MultiLabelUFM(label_sets=[[0], [1], [2], [3], [0, 1]], **base))
    with pytest.raises(NoClosedForm, match="not balanced"):  # unequal counts within m = 1
        ufm.theory.predict(MultiLabelUFM(label_sets=[[0], [0], [1], [2], [3]], **base))
    with pytest.raises(NoClosedForm, match="d=2 < K-1=3"):
        ufm.theory.predict(MultiLabelUFM.balanced(4, {1: 1, 2: 1}, 2, PAL, 1e-2, 1e-2))
    with pytest.raises(NoClosedForm, match="lambda_W > 0"):
        ufm.theory.predict(MultiLabelUFM.balanced(4, {1: 1, 2: 1}, 4, PAL, 0.0, 1e-2))


# ---- metrics ----------------------------------------------------------------------------------

def test_metrics_vanish_on_the_construction_and_not_after_a_perturbation():
    p = MultiLabelUFM.balanced(5, {1: 2, 2: 1, 3: 1, 5: 1}, 6, PAL, 3e-3, 2e-3, 1e-2)
    pred = ufm.theory.predict(p)
    x = pred.construct(seed=3)
    Y = p.multi_hot
    m = mlm.multilabel_metrics(x["W"], x["H"], Y)
    for name in ("nc1_single", "nc1_sets"):
        assert m[name] < 1e-24, (name, m[name])
    for name in ("nc2_W", "nc3_single", "angle_sets"):
        assert m[name] < F64_IDENTITY, (name, m[name])
    for k in (2, 3):
        assert m[f"rho_{k}"] == pytest.approx(pred.scalars[f"rho_{k}"], rel=1e-13)
    assert "rho_5" not in m  # the full label set has h_S = 0
    # label sets instead of the multi-hot matrix give the same numbers
    m2 = mlm.multilabel_metrics(x["W"], x["H"], p.label_sets)
    assert all(m2[k] == pytest.approx(m[k], rel=1e-12, abs=1e-24) for k in m)
    # compare() on the construction passes every row
    report = ufm.compare(p, p.params(**x), pred, tolerances=mlm.TOLERANCES)
    assert report.ok, str(report)

    rng = np.random.default_rng(0)
    H = x["H"] + 0.1 * rng.standard_normal(x["H"].shape) * np.linalg.norm(x["H"], axis=1).mean()
    W = x["W"] + 0.1 * rng.standard_normal(x["W"].shape) * np.linalg.norm(x["W"], axis=1).mean()
    mh, mw = mlm.multilabel_metrics(x["W"], H, Y), mlm.multilabel_metrics(W, x["H"], Y)
    for name in ("nc1_single", "nc1_sets", "nc3_single", "angle_sets"):
        assert mh[name] > 1e-3, (name, mh[name])
    assert mw["nc2_W"] > 1e-2 and mw["nc3_single"] > 1e-2
    assert abs(mh["rho_2"] - m["rho_2"]) > 1e-3
    # a set whose mean turns away from the sum of its single-label means has a large angle
    H2 = x["H"].copy()
    H2[np.flatnonzero(Y.sum(axis=1) == 2)[0]] *= -1
    assert mlm.multilabel_metrics(x["W"], H2, Y)["angle_sets"] == pytest.approx(math.pi, rel=1e-12)


def test_metrics_refuse_missing_single_labels():
    Y = np.array([[1, 1, 0], [0, 1, 1], [1, 0, 0]])
    with pytest.raises(ValueError, match=r"classes \[1, 2\] have no single-label samples"):
        mlm.nc1_single(np.ones((3, 2)), Y)
    out = mlm.multilabel_metrics(np.eye(3), np.random.default_rng(0).standard_normal((3, 3)), Y)
    assert set(out) == {"nc2_W", "nc1_sets"}


_Y3 = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]])


@pytest.mark.parametrize("call, match", [
    (lambda H, W: mlm.nc1_sets(np.where(H > 0, np.nan, H), _Y3), "non-finite"),
    (lambda H, W: mlm.nc1_single(np.where(H > 0, np.inf, H), _Y3), "non-finite"),
    (lambda H, W: mlm.nc2_classifier(np.full((3, 3), np.nan)), "non-finite"),
    (lambda H, W: mlm.nc1_sets(H[:3], _Y3), "one row per sample"),
    (lambda H, W: mlm.nc1_sets(H[:, 0], _Y3), r"2-D array \[N, d\]"),
    (lambda H, W: mlm.nc3_single(W[:2], H, _Y3), "one row per class"),
    (lambda H, W: mlm.nc3_single(W[:, :2], H, _Y3), "share d"),
    (lambda H, W: mlm.nc2_classifier(W[:1]), "K >= 2"),
    (lambda H, W: mlm.multilabel_metrics(W, H, [[0], [1], [3], [0, 1]], 3), r"\[0, 2\]"),
    (lambda H, W: mlm.multilabel_metrics(W, H, [[0], [1], [-1], [0, 1]], 3), r"\[0, 2\]"),
    (lambda H, W: mlm.nc1_sets(H, np.array([[1, 0, 0], [0, 0, 0], [0, 0, 1], [1, 1, 0]])), "row 1 is empty"),
    (lambda H, W: mlm.nc1_sets(H, np.array([[1, 0, 0]] * 4)), "two classes"),
    (lambda H, W: mlm.nc1_sets(H, _Y3, num_classes=1), "num_classes"),
    (lambda H, W: mlm.nc1_sets(H.astype(complex), _Y3), "real numbers"),
])
def test_metrics_refuse_bad_input(call, match):
    W = ufm.theory.simplex_etf(3, 3)
    H = np.array([1.0, 1.0, 1.0, 0.8])[:, None] * (_Y3 @ W)
    with pytest.raises(ValueError, match=match):
        call(H, W)


@pytest.mark.parametrize("problem", [
    MultiLabelUFM.balanced(4, {1: 2, 2: 1}, 4, PAL, 2e-3, 5e-3, lambda_b=1e-2),
    MultiLabelUFM(3, [[0], [1], [2], [0, 1]], 3, PickAllLabelNormalised(), 1e-2, 1e-2, bias=False),
])
def test_from_config_inverts_config(problem):
    import json
    cfg = problem.config()
    assert MultiLabelUFM.from_config(cfg) == problem
    again = MultiLabelUFM.from_config(json.loads(json.dumps(cfg)))
    assert again == problem and again.config() == cfg
    with pytest.raises(ValueError, match="expected 'multilabel_ufm'"):
        MultiLabelUFM.from_config({**cfg, "model": "ufm"})


def test_loss_is_required_and_positional():
    with pytest.raises(TypeError):
        MultiLabelUFM.balanced(4, {1: 1}, 4, lambda_W=1e-2, lambda_H=1e-2)
    with pytest.raises(ValueError, match="loss must be PickAllLabel"):
        MultiLabelUFM.balanced(4, {1: 1}, 4, 1e-2, 1e-2, 1e-2)


def test_size_guard_and_label_set_guard():
    with pytest.raises(ValueError, match="at most"):  # C(60, 30) sets: refused before enumerating
        MultiLabelUFM.balanced(60, {30: 1}, 4, PAL, 1e-2, 1e-2)


# ---- closed forms against L-BFGS solves (float64) ------------------------------------------

SOLVED = {
    "K4-m12": lambda: MultiLabelUFM.balanced(4, {1: 2, 2: 1}, 4, PAL, 2e-3, 5e-3, 1e-2),
    "K4-m12-below": lambda: MultiLabelUFM.balanced(4, {1: 2, 2: 1}, 4, PAL, 0.13, 0.13),
    "K4-m12-zero": lambda: MultiLabelUFM.balanced(4, {1: 2, 2: 1}, 4, PAL, 0.16, 0.16),
    "K4-m12-zero-regbias": lambda: MultiLabelUFM.balanced(4, {1: 2, 2: 1}, 4, PAL, 0.16, 0.16, 0.1),
    "K5-m123": lambda: MultiLabelUFM.balanced(5, {1: 1, 2: 1, 3: 1}, 5, PAL, 3e-3, 2e-3, 1e-2),
    "K5-m123-unequal-nobias": lambda: MultiLabelUFM.balanced(5, {1: 3, 2: 1, 3: 2}, 6, PAL, 3e-3, 2e-3,
                                                             bias=False),
    "K4-m12-d3-freebias": lambda: MultiLabelUFM.balanced(4, {1: 2, 2: 1}, 3, PAL, 2e-3, 5e-3),
    "K3-m123-fullset": lambda: MultiLabelUFM.balanced(3, {1: 2, 2: 1, 3: 1}, 3, PAL, 1e-2, 1e-2),
}


@functools.lru_cache(maxsize=None)
def _solved(name):
    p = SOLVED[name]()
    return p, default_solve(p)


@pytest.mark.parametrize("name", ["K4-m12", "K5-m123-unequal-nobias", "K4-m12-d3-freebias",
                                  pytest.param("K5-m123", marks=pytest.mark.slow),
                                  pytest.param("K4-m12-below", marks=pytest.mark.slow),
                                  pytest.param("K3-m123-fullset", marks=pytest.mark.slow)])
def test_closed_form_matches_lbfgs(name):
    p, sol = _solved(name)
    pred = ufm.theory.predict(p)
    assert sol.status_name == "converged" and pred.regime == "collapse"
    report = ufm.compare(p, sol, pred, tolerances=mlm.TOLERANCES, hessian=False)
    assert report.ok, str(report)
    errors = {r.quantity: r.error for r in report.rows}
    assert errors["value"] <= 1e-9
    for q in ("gram_W", "W_means_single", "gram_means_single", "logits_centred", "feature_norms_sq"):
        assert errors[q] <= 1e-6, (q, errors[q])
    rhos = [q for q in errors if q.startswith("rho_")]
    assert rhos and all(errors[q] <= 1e-6 for q in rhos)
    print(f"\n{name}: steps={int(sol.num_steps)} worst errors: value {errors['value']:.1e}, "
          f"gram_W {errors['gram_W']:.1e}, rho {max(errors[q] for q in rhos):.1e}")


@pytest.mark.parametrize("name", ["K4-m12-zero", "K4-m12-zero-regbias"])
def test_above_threshold_the_solution_is_zero(name):
    p, sol = _solved(name)
    pred = ufm.theory.predict(p)
    assert p.lambda_W * p.lambda_H >= mlt.pal_threshold(4, {1: 2, 2: 1}) and pred.regime == "zero"
    report = ufm.compare(p, sol, pred, tolerances=mlm.TOLERANCES, hessian=False)
    assert report.ok, str(report)
    assert float(sol.value) == pytest.approx((8 + 12) / 14 * math.log(4), rel=1e-12)
    b = np.asarray(sol.params.b)
    assert np.ptp(b) < 1e-10  # constant bias whatever λ_b; b = 0 when λ_b > 0
    if float(p.lambda_b) > 0:
        assert np.max(np.abs(b)) < 1e-10


def test_just_below_threshold_the_solution_is_not_zero():
    p, sol = _solved("K4-m12-below")
    assert p.lambda_W * p.lambda_H < mlt.pal_threshold(4, {1: 2, 2: 1})
    pred = ufm.theory.predict(p)
    assert float(np.sum(np.asarray(sol.params.W) ** 2)) == pytest.approx(pred["norm_W_sq"], rel=1e-6)
    assert pred["norm_W_sq"] > 0.1
    assert float(sol.value) < pred.value + 1e-12 < (8 + 12) / 14 * math.log(4) - 1e-3


def test_shuffled_explicit_label_sets_follow_the_sample_order():
    K, counts = 4, {1: 1, 2: 2}
    sets = list(mlt.canonical_label_sets(K, counts))
    np.random.default_rng(0).shuffle(sets)
    p = MultiLabelUFM(K, sets, 5, PAL, 3e-3, 4e-3)
    q = MultiLabelUFM.balanced(K, counts, 5, PAL, 3e-3, 4e-3)
    pp, pq = ufm.theory.predict(p), ufm.theory.predict(q)
    assert pp.value == pq.value
    assert ufm.compare(p, p.params(**pp.construct(seed=2)), pp, tolerances=mlm.TOLERANCES).ok
    x = pp.construct()
    assert float(p.value(p.params(**x))) == pytest.approx(pp.value, rel=1e-13)


# ---- verification rows and doctests ------------------------------------------------------------

def test_verification_rows():
    from ufm.cases import multilabel as cases

    names = [c.name for c in cases.CASES]
    assert len(names) == len(set(names))
    default = [c for c in cases.CASES if c.in_tier("default")]
    solved = [c for c in default if not c.expect_no_closed_form]
    assert 4 <= len(solved) <= 5
    # both sides of the threshold and both multiplicity sets in the default tier
    regimes = {ufm.theory.predict(c.build()).regime for c in solved}
    assert regimes == {"collapse", "zero"}
    assert {tuple(c.build().counts_by_size) for c in solved} >= {(1, 2), (1, 2, 3)}
    # the refusals run without a solve; the quick row shares its compilation with "K4-m12"
    for c in default:
        if c.expect_no_closed_form or c.tier == "quick":
            row = ufm.cases.run_case(c)
            assert row["ok"], (c.name, row["notes"], [r for r in row["checks"] if not r["ok"]])


@pytest.mark.slow
@pytest.mark.parametrize("name", [c.name for c in __import__("ufm.cases.multilabel", fromlist=["CASES"]).CASES
                                  if not c.expect_no_closed_form and c.tier != "quick"])
def test_verification_row_slow(name):
    from ufm.cases import multilabel as cases

    case = next(c for c in cases.CASES if c.name == name)
    row = ufm.cases.run_case(case)
    assert row["ok"], (row["notes"], [r for r in row["checks"] if not r["ok"]])


@pytest.mark.parametrize("module", ["ufm.theory.multilabel", "ufm.problems.multilabel",
                                    "ufm.metrics.multilabel"])
def test_doctests(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
