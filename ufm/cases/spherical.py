"""Verification rows for the spherical UFM (docs/theory/spherical.md): several K, d ∈ {K−1, K, K+3} and a
range of inverse temperatures s = r_W r_H / T, solved by the Riemannian trust region from a random
start to gradient norm 1e-12 and compared with the closed form at the issue-5 tolerances
(objective 1e-10, Grams 1e-7, points on the spheres to 1e-14).

s is kept ≤ 10: the CE of logits of size s is rounded at ≈ eps·s absolutely, so for larger s
(F* ≈ (K−1)e^{−sK/(K−1)} tiny) a relative objective error of 1e-10 is below float64 resolution.
"""

from __future__ import annotations

from ufm.cases._registry import Case


def _solve_tr(problem, seed: int = 0, gtol: float = 1e-12):
    import jax

    from ufm.solvers import Status, TrustRegion, solve

    sol = solve(problem, TrustRegion(), problem.init(jax.random.key(seed)), gtol=gtol, max_steps=300)
    if int(sol.status) != Status.CONVERGED:  # warm restart with a fresh trust region
        sol = solve(problem, TrustRegion(), sol.params, gtol=gtol, max_steps=300)
    return sol


def _solve_rgd(problem, seed: int = 0, gtol: float = 1e-12):
    import jax

    from ufm.solvers import RiemannianGradientDescent, solve

    return solve(problem, RiemannianGradientDescent(), problem.init(jax.random.key(seed)), gtol=gtol,
                 max_steps=50_000)


def _check(problem, solution):
    from ufm.compare import compare
    from ufm.theory import predict

    return compare(problem, solution, predict(problem))  # bounds from the certificate


def _case(name, K, n, d, radius_W=1.0, radius_H=1.0, temperature=1.0, bias=False, loss="ce",
          tier="default", solver="tr", expect_no_closed_form=False, description=""):
    from ufm import losses
    from ufm.problems.spherical import SphericalUFM

    loss_obj = {"ce": losses.CrossEntropy, "ls": lambda: losses.LabelSmoothing(0.1),
                "fl": lambda: losses.Focal(2.0)}[loss]
    return Case(name=name, model="spherical", loss=loss, tier=tier,
                solve=None if expect_no_closed_form else (_solve_tr if solver == "tr" else _solve_rgd),
                check=None if expect_no_closed_form else _check,
                expect_no_closed_form=expect_no_closed_form, description=description,
                build=lambda: SphericalUFM(K, n, d, loss_obj(), radius_W=radius_W, radius_H=radius_H,
                                           temperature=temperature, bias=bias))


CASES = [
    _case("spherical-ce-K4-n3-d3-s2", 4, 3, 3, temperature=0.5, tier="quick",
          description="d = K-1, s = 2: simplex ETF, H = (r_H/r_W) W"),
    _case("spherical-ce-K4-n3-d4-s8", 4, 3, 4, radius_W=2.0, radius_H=0.5, temperature=0.125,
          description="d = K, s = 8 with unequal radii"),
    _case("spherical-ce-K3-n4-d6-s0.6", 3, 4, 6, radius_H=0.6, temperature=1.0,
          description="d = K+3, s = 0.6 (hot)"),
    _case("spherical-ce-K5-n2-d4-s4-bias", 5, 2, 4, temperature=0.25, bias=True,
          description="[derived] free bias: same F*, b - mean(b) = 0"),
    _case("spherical-ce-K6-n2-d4-open", 6, 2, 4, expect_no_closed_form=True,
          description="d < K-1: no theorem; predict must refuse"),
    _case("spherical-ls-K4-n3-d4-open", 4, 3, 4, loss="ls", expect_no_closed_form=True,
          description="label smoothing: no closed form on the sphere; predict must refuse"),
    _case("spherical-fl-K4-n3-d4-open", 4, 3, 4, loss="fl", expect_no_closed_form=True,
          description="focal loss: no closed form on the sphere; predict must refuse"),
    # --full: larger K and the whole s range, trust region and Riemannian GD.
    *[_case(f"spherical-ce-K10-n5-d{d}-s{s:g}", 10, 5, d, temperature=1.0 / s, tier="full",
            description=f"d = {label}, s = {s:g}")
      for d, label in ((9, "K-1"), (10, "K"), (13, "K+3")) for s in (0.5, 2.0, 10.0)],
    _case("spherical-ce-K10-n20-d16-s5", 10, 20, 16, temperature=0.2, tier="full",
          description="the solver benchmark's problem (too large for the dense Hessian check)"),
    _case("spherical-ce-K6-n3-d5-s10", 6, 3, 5, temperature=0.1, tier="full",
          description="d = K-1, s = 10 (Hessian scale ~1e-4)"),
    _case("spherical-ce-K8-n5-d11-s3-rgd", 8, 5, 11, radius_W=1.5, radius_H=2.0, temperature=1.0,
          tier="full", solver="rgd", description="d = K+3, Riemannian GD with Armijo"),
    _case("spherical-ce-K2-n6-d2-s1", 2, 6, 2, tier="full", description="K = 2: antipodal classifiers"),
]
