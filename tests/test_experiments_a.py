"""The MSE, imbalanced, multi-label and regression experiments: end-to-end --quick runs (JSON, PNG,
PDF; the JSON says theory and solver agree; multi-label and regression in the default suite, MSE
and imbalanced slow) and the closed-form curves each figure draws, checked against
``ufm.theory.predict`` and the metrics (no solver, fast)."""

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest

import ufm
from ufm.problems.regression import synthetic_targets

ROOT = Path(__file__).resolve().parents[1] / "experiments"


def _load(name):
    spec = importlib.util.spec_from_file_location(f"{name}_experiment", ROOT / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run_quick(name, tmp_path):
    module = _load(name)
    assert module.main(["--quick", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / f"{name}.json").read_text())
    png = (tmp_path / f"{name}.png").read_bytes()
    pdf = (tmp_path / f"{name}.pdf").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert pdf[:5] == b"%PDF-" and len(pdf) > 5_000
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporary files
    assert data["config"]["quick"] is True and "metadata" in data
    return data


# --- end-to-end runs ------------------------------------------------------------------------

def test_multilabel_quick(tmp_path):
    data = _run_quick("multilabel", tmp_path)
    s = data["summary"]
    assert s["agree"] and s["all_converged"] and s["all_compare_ok"] and s["rho_below_m"]
    assert s["max_rel_errors"]["value"] <= 1e-12
    assert s["max_rel_errors"]["rho"] <= 1e-8 and s["max_rel_errors"]["gram_W"] <= 1e-8
    rows = data["results"]["K = 4, m ∈ {1, 2}"]["rows"]
    assert len(rows) == 3 and all(r["regime"] == "collapse" for r in rows)
    # the theory curve reaches up to the threshold, where ρ_2 → 2
    curve = data["curves"]["K = 4, m ∈ {1, 2}"]
    assert curve["lam"][-1] < data["results"]["K = 4, m ∈ {1, 2}"]["lambda_star"]
    assert 1.9 < curve["rho"]["2"][-1] < 2


@pytest.mark.slow
def test_regression_quick(tmp_path):
    data = _run_quick("regression", tmp_path)
    s = data["summary"]
    assert s["agree"] and s["all_converged"] and s["all_compare_ok"]
    assert s["regimes"] == ["collapse", "partial-rank", "zero"]
    assert max(s["max_rel_errors"].values()) <= 1e-8 and s["max_nrc1_nrc2"] <= 1e-12
    assert s["max_nrc3_gamma_rel_error_full_rank"] <= 1e-6
    assert [r["rank_theory"] for r in data["results"]["rows"]] == [3, 2, 1, 0]


@pytest.mark.slow  # ~30-60 s on a shared 2-core CPU (five compiled shapes)
def test_mse_quick(tmp_path):
    data = _run_quick("mse", tmp_path)
    s = data["summary"]
    assert s["agree"] and s["phase_boundary_ok"] and s["ranks_ok"]
    assert max(s["max_rel_errors"].values()) <= 1e-8
    regimes = {r["regime"] for r in data["phase"]["no bias"]}
    assert regimes == {"collapse", "zero"}  # both sides of the threshold


@pytest.mark.slow  # ~17-28 s on a shared 2-core CPU (four compiled shapes)
def test_imbalanced_quick(tmp_path):
    data = _run_quick("imbalanced", tmp_path)
    s = data["summary"]
    assert s["agree"] and s["mse"]["minority_collapse_ok"]
    assert max(s["mse"]["max_rel_errors"].values()) <= 1e-8 and s["mse"]["max_abs_cos_alive"] <= 1e-8
    assert [r["minority_alive_theory"] for r in data["mse"]] == [True, False]  # R = 2 < R_c = 8 < 12
    assert s["ce"]["all_local_minima"] and s["ce"]["balanced_value_rel_error"] <= 1e-10


# --- the closed-form curves the figures draw (fast, no solver) --------------------------------

def test_mse_curves_match_predict():
    mse = _load("mse")
    K, n = mse.K, mse.N_PER_CLASS
    for bias in (False, True):
        for lam in (3e-3, 2e-2, 0.9 * math.sqrt(mse.P_STAR), 1.3 * math.sqrt(mse.P_STAR)):
            for d in (1, 2, K - 1, K, K + 1):
                if bias and d > K - 1 and d != K:  # d = K with a bias is the plain ETF case
                    continue
                p = ufm.UFM(K, n, d, ufm.losses.MSE(), lam, lam, bias=bias)
                pred = ufm.theory.predict(p)
                assert math.isclose(mse.value_theory(K, n, lam, d, bias), pred.value, rel_tol=1e-13)
                assert math.isclose(float(mse.norm_W_sq_theory(K, n, lam, lam, bias, dim=d)),
                                    float(pred["norm_W_sq"]), rel_tol=1e-12, abs_tol=1e-15)
    # the phase boundary is the library's threshold, and the grid never sits on it
    p = ufm.UFM(K, n, K, ufm.losses.MSE(), 1e-2, 1e-2, bias=False)
    assert math.isclose(ufm.theory.threshold(p), mse.P_STAR, rel_tol=1e-14)
    lam = mse._grid(10, 0.25)
    products = np.outer(lam, lam) / mse.P_STAR
    assert np.min(np.abs(np.log10(products))) >= 0.25 / 2 - 1e-12


def test_regression_curves_match_predict_and_metrics():
    reg = _load("regression")
    Y = synthetic_targets(reg.SEED, reg.N, reg.SPECTRUM, mean=reg.TARGET_MEAN)
    for c in (0.08, 0.5, 2.0, 6.0):
        lam = math.sqrt(c / reg.N)
        p = ufm.RegressionUFM(Y, reg.DIM, lam, lam)
        pred = ufm.theory.predict(p)
        assert math.isclose(float(reg.value_theory(c)), pred.value, rel_tol=1e-13)
        sv = reg.singular_values_theory(c, lam, lam)
        np.testing.assert_allclose(np.sort(sv ** 2), np.sort(np.asarray(pred["gram_W_spectrum"]))[-3:],
                                   rtol=1e-12, atol=1e-14)
        nrc3, gamma = reg.nrc3_theory(c)
        if c >= max(reg.SPECTRUM):
            assert math.isnan(nrc3)
            continue
        # the figure's NRC3 (from its definition, on the closed-form spectrum) against the
        # library's metric evaluated at the exact minimiser
        meas = ufm.metrics.measure(p, p.params(**pred.construct(seed=0)))
        if c < min(reg.SPECTRUM):
            assert nrc3 <= 1e-20 and math.isclose(gamma, c, rel_tol=1e-6)
            assert meas["nrc3"] <= 1e-20
        else:
            assert nrc3 > 1e-3
            assert math.isclose(meas["nrc3"], nrc3, rel_tol=1e-9)


def test_imbalanced_curves_match_predict():
    imb = _load("imbalanced")
    lam = imb.LAM_MSE
    Rc = imb.r_collapse(lam, lam)
    assert math.isclose(Rc, 8.0, rel_tol=1e-12)
    for R in (1, 3, 7, 9, 15):
        p = ufm.UFM(imb.K, imb.counts(R), imb.DIM, ufm.losses.MSE(), lam, lam, bias=False)
        pred = ufm.theory.predict(p)
        G = np.asarray(pred["gram_W_spectrum"]) if "gram_W" not in pred.quantities else np.diag(pred["gram_W"])
        maj, mino = imb.mse_norms_theory(R, lam, lam)
        np.testing.assert_allclose(np.sort(G), np.sort([maj ** 2] * imb.K_A + [mino ** 2] * imb.K_B),
                                   rtol=1e-12, atol=1e-15)
        assert (mino > 0) == (R < Rc)
        assert (pred.regime == "partial-rank") == (R > Rc)
    # the geometry of an exact simplex ETF: every cosine is −1/(K−1)
    W = np.asarray(ufm.theory.frames.simplex_etf(imb.K, imb.K))
    geo = imb.geometry(W)
    for key in ("cos_minority", "cos_majority", "cos_mixed"):
        assert math.isclose(geo[key], -1 / (imb.K - 1), rel_tol=1e-12)
    # a vanished row has no angle
    W[imb.K_A:] = 0
    geo = imb.geometry(W)
    assert math.isnan(geo["cos_minority"]) and geo["norm_minority"] == 0


def test_multilabel_curve_is_the_closed_form():
    ml = _load("multilabel")
    K, counts = ml.CONFIGS["K = 5, m ∈ {1, 2, 3}"]
    # the documented example: K = 5, n_m = 1, (λ_W, λ_H, λ_b) = (3e-3, 2e-3, 1e-2)
    p = ufm.MultiLabelUFM.balanced(K, counts, K, ufm.losses.PickAllLabel(), 3e-3, 2e-3, lambda_b=1e-2)
    s = ufm.theory.predict(p).scalars
    assert round(s["rho_2"], 5) == 1.78175 and round(s["rho_3"], 5) == 2.48486
    curve = ml.rho_theory(K, counts, [1e-4, 1e-2])
    assert set(curve) == {"2", "3"}
    for m, values in curve.items():
        assert all(1 < v < int(m) for v in values)
    # the threshold λ*² is Σ_m n_m C(K−2, m−1) / N²
    N = sum(n * math.comb(K, m) for m, n in counts.items())
    P = sum(n * math.comb(K - 2, m - 1) for m, n in counts.items()) / N ** 2
    assert math.isclose(ufm.theory.threshold(p), P, rel_tol=1e-14)
