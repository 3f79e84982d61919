"""Verification rows for the multi-label UFM under the pick-all-label loss (docs/theory/multilabel.md).

Data balanced within each multiplicity ({m: n_m}: every label set of size m occurs n_m times).
The existence condition is λ_Wλ_H < Σ_m n_m C(K−2, m−1)/N²; for K = 4, {1: 2, 2: 1} (N = 14) the
threshold is 1/49 ≈ 0.0204, so λ_W = λ_H = 0.13 is below it and 0.16 above it.
"""

from __future__ import annotations

from ufm.cases._registry import Case


def _check(problem, solution):
    from ufm.compare import compare
    from ufm.theory import predict

    return compare(problem, solution, predict(problem))  # bounds from the certificate


def _case(name, K, counts, d, lambda_W, lambda_H, lambda_b=0.0, bias=True, tier="default",
          loss="pal", label_sets=None, expect_no_closed_form=False, description=""):
    def build():
        from ufm import losses
        from ufm.problems import MultiLabelUFM

        loss_obj = {"pal": losses.PickAllLabel, "pal_normalised": losses.PickAllLabelNormalised}[loss]()
        if label_sets is not None:
            return MultiLabelUFM(K, label_sets, d, loss_obj, lambda_W, lambda_H, lambda_b=lambda_b,
                                 bias=bias)
        return MultiLabelUFM.balanced(K, counts, d, loss_obj, lambda_W, lambda_H, lambda_b=lambda_b,
                                      bias=bias)

    return Case(name=name, model="multilabel_ufm", loss=loss, build=build, tier=tier,
                check=None if expect_no_closed_form else _check,
                expect_no_closed_form=expect_no_closed_form, description=description)


CASES = [
    # Default tier: four solved rows (two multiplicity sets, both sides of the threshold) and two
    # refusals that cost no solve.
    _case("ml-pal-K4-m12-n21-d4-collapse", 4, {1: 2, 2: 1}, 4, 2e-3, 5e-3, lambda_b=1e-2,
          tier="quick", description="docs/theory/multilabel.md example: ρ_2 = 1.77816"),
    _case("ml-pal-K5-m123-n111-d5-collapse", 5, {1: 1, 2: 1, 3: 1}, 5, 3e-3, 2e-3, lambda_b=1e-2,
          description="docs/theory/multilabel.md example: ρ_2 = 1.78175, ρ_3 = 2.48486"),
    _case("ml-pal-K4-m12-n21-d4-below-threshold", 4, {1: 2, 2: 1}, 4, 0.13, 0.13,
          description="λ_Wλ_H = 0.0169 < 1/49: small non-zero solution, free bias"),
    _case("ml-pal-K4-m12-n21-d4-zero", 4, {1: 2, 2: 1}, 4, 0.16, 0.16, lambda_b=0.1,
          description="λ_Wλ_H = 0.0256 ≥ 1/49: W = H = 0, b = 0, F* = Σ_m (N_m/N) m log K"),
    _case("ml-pal-normalised-refused", 4, {1: 2, 2: 1}, 4, 2e-3, 5e-3, loss="pal_normalised",
          expect_no_closed_form=True, description="PAL-N is not covered: predict must refuse"),
    _case("ml-pal-unbalanced-refused", 3, None, 3, 1e-2, 1e-2,
          label_sets=((0,), (1,), (2,), (0, 1)), expect_no_closed_form=True,
          description="not balanced within each multiplicity: predict must refuse"),
    # Full tier: unequal n_m, no bias, d = K-1, the full label set, a multiplicity set without
    # single labels, a shuffled explicit list, the zero side with a free bias, larger K.
    _case("ml-pal-K5-m123-n312-d6-nobias", 5, {1: 3, 2: 1, 3: 2}, 6, 3e-3, 2e-3, bias=False,
          tier="full", description="unequal n_m, no bias"),
    _case("ml-pal-K4-m12-n21-d3-freebias", 4, {1: 2, 2: 1}, 3, 2e-3, 5e-3, tier="full",
          description="d = K-1, λ_b = 0 (mean(b) flat)"),
    _case("ml-pal-K3-m123-n211-d3-fullset", 3, {1: 2, 2: 1, 3: 1}, 3, 1e-2, 1e-2, tier="full",
          description="the full label set {0,1,2} occurs: its feature is 0"),
    _case("ml-pal-K4-m2-d4-no-single-labels", 4, {2: 1}, 4, 2e-2, 5e-2, lambda_b=0.1, tier="full",
          description="𝕄 = {2}: no single-label metrics"),
    _case("ml-pal-K4-m12-n21-d4-near-threshold", 4, {1: 2, 2: 1}, 4, 0.14, 0.14, lambda_b=0.1,
          tier="full", description="λ_Wλ_H = 0.0196, just below 1/49"),
    _case("ml-pal-K4-m12-n21-d4-zero-freebias", 4, {1: 2, 2: 1}, 4, 0.16, 0.16, tier="full",
          description="zero side with λ_b = 0: b constant, F* = Σ_m (N_m/N) m log K"),
    _case("ml-pal-K6-m12-n11-d6-collapse", 6, {1: 1, 2: 1}, 6, 1e-3, 1e-2, lambda_b=1e-3,
          tier="full"),
    _case("ml-pal-K8-m123-n421-d9-collapse", 8, {1: 4, 2: 2, 3: 1}, 9, 1e-3, 1e-3, tier="full",
          description="N = 32 + 56 + 56 = 144"),
]
