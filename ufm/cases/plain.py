"""Verification rows for the plain UFM (docs/theory/mse.md, ce-family.md): MSE with and without bias, CE.

Every threshold is crossed: with λ_W = λ_H = λ the collapse side is Kτ = K√n λ < 1. Rows that
differ only in hyperparameters share one compiled program (λ's are array leaves), so the default
table reuses a few shapes.
"""

from __future__ import annotations

from ufm.cases._registry import Case


def _case(name, K, n, d, loss, lambda_W, lambda_H, lambda_b=0.0, bias=True, tier="default",
          expect_no_closed_form=False, description=""):
    from ufm import losses
    from ufm.problems import UFM

    loss_obj = {"mse": losses.MSE, "ce": losses.CrossEntropy}[loss]
    return Case(name=name, model="ufm", loss=loss, tier=tier,
                expect_no_closed_form=expect_no_closed_form, description=description,
                build=lambda: UFM(K, n, d, loss_obj(), lambda_W, lambda_H, lambda_b=lambda_b, bias=bias))


CASES = [
    # §1 bias-free MSE: orthogonal frame, threshold Kτ = 1, d < K derived, imbalanced via T1.
    _case("ufm-mse-nobias-K4-n5-d4-collapse", 4, 5, 4, "mse", 2e-2, 2e-2, bias=False, tier="quick",
          description="OF, Kτ = 0.18 < 1"),
    _case("ufm-mse-nobias-K4-n5-d4-zero", 4, 5, 4, "mse", 0.15, 0.15, bias=False,
          description="past the threshold, Kτ = 1.34: W = H = 0"),
    _case("ufm-mse-nobias-K6-n3-d4-lowdim", 6, 3, 4, "mse", 1e-2, 1e-2, bias=False,
          description="d < K: W Wᵀ = ρ_W × rank-d projector"),
    _case("ufm-mse-nobias-K10-n4-d12-collapse", 10, 4, 12, "mse", 1e-2, 2e-3, bias=False, tier="full",
          description="OF, unequal λ, d > K"),
    _case("ufm-mse-nobias-imbalanced-6-3-1", 3, (6, 3, 1), 3, "mse", 3e-2, 3e-2, bias=False,
          description="imbalanced: s_k = (√n_k − N√(λ_Wλ_H))_+, all classes kept"),
    _case("ufm-mse-nobias-imbalanced-minority-zero", 3, (6, 3, 1), 3, "mse", 0.12, 0.12, bias=False,
          description="imbalanced: the minority class collapses to 0"),
    # §2 B1: free bias, simplex ETF.
    _case("ufm-mse-bias-K4-n5-d3-collapse", 4, 5, 3, "mse", 2e-2, 2e-2, tier="quick",
          description="ETF at d = K-1, b = 1/K"),
    _case("ufm-mse-bias-K4-n5-d3-zero", 4, 5, 3, "mse", 0.15, 0.15,
          description="past the threshold: W = H = 0, b = 1/K"),
    _case("ufm-mse-bias-K5-n4-d2-lowdim", 5, 4, 2, "mse", 1e-2, 1e-2,
          description="d < K-1: rank-d projector inside 1^⊥"),
    _case("ufm-mse-bias-K8-n3-d10-collapse", 8, 3, 10, "mse", 2e-2, 5e-3, tier="full",
          description="ETF, unequal λ"),
    # §2 B2: regularised bias, both regimes of the global-mean component u.
    _case("ufm-mse-regbias-K4-n5-d4-u0", 4, 5, 4, "mse", 2e-2, 2e-2, lambda_b=0.05,
          description="λ_b ≤ λ_b*: u = 0, b = 1/(K(1+λ_b))"),
    _case("ufm-mse-regbias-K4-n5-d4-u-positive", 4, 5, 4, "mse", 2e-2, 2e-2, lambda_b=1.0, tier="quick",
          description="λ_b > λ_b*: u > 0, b = τ/λ_b"),
    _case("ufm-mse-regbias-K4-n5-d4-zero", 4, 5, 4, "mse", 0.15, 0.15, lambda_b=0.5,
          description="Kτ ≥ 1: W = H = 0"),
    _case("ufm-mse-regbias-K4-n5-d3-u0", 4, 5, 3, "mse", 2e-2, 2e-2, lambda_b=0.05,
          description="d = K-1 with u = 0"),
    _case("ufm-mse-regbias-K6-n4-d6-u-positive", 6, 4, 6, "mse", 1e-2, 4e-3, lambda_b=2.0, tier="full"),
    # §3 CE: ETF with margin log(1/τ − (K−1)), threshold Kτ = 1.
    _case("ufm-ce-K4-n5-d3-collapse", 4, 5, 3, "ce", 5e-3, 5e-3, tier="quick",
          description="ETF at d = K-1, free bias (flat mean)"),
    _case("ufm-ce-K4-n5-d3-zero", 4, 5, 3, "ce", 0.15, 0.15,
          description="Kτ = 1.34 ≥ 1: W = H = 0, F* = log K"),
    _case("ufm-ce-K10-n5-d10-regbias", 10, 5, 10, "ce", 5e-3, 5e-3, lambda_b=1e-3,
          description="λ_b > 0: b = 0"),
    _case("ufm-ce-nobias-K5-n4-d5-collapse", 5, 4, 5, "ce", 1e-2, 1e-2, bias=False),
    _case("ufm-ce-K3-n10-d2-collapse", 3, 10, 2, "ce", 1e-2, 1e-3,
          description="ETF in the plane, unequal λ"),
    _case("ufm-ce-K6-n2-d3-open", 6, 2, 3, "ce", 5e-3, 5e-3, expect_no_closed_form=True,
          description="d < K-1: no theorem (softmax codes); predict must refuse"),
    # Larger instances for --full.
    _case("ufm-ce-K20-n5-d24-collapse", 20, 5, 24, "ce", 2e-3, 2e-3, tier="full"),
    _case("ufm-mse-bias-K16-n4-d15-collapse", 16, 4, 15, "mse", 5e-3, 5e-3, tier="full"),
    _case("ufm-mse-nobias-K16-n4-d20-collapse", 16, 4, 20, "mse", 5e-3, 5e-3, bias=False, tier="full"),
]
