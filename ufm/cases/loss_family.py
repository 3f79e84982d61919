"""Verification rows for label smoothing and focal loss on the plain UFM (docs/theory/ce-family.md, docs/theory/conventions.md).

With λ_W = λ_H = λ, τ = √n λ. Label smoothing collapses iff Kτ + α < 1 (so at Kτ < 1 ≤ Kτ + α CE
collapses while LS is zero); focal loss is zero for Kτ ≥ g_FL = (1−1/K)^γ (1 + γ log K/(K−1))
when K is small (r of §9 decreasing), and in a window above g_FL for larger K the origin is a
local minimum while the ETF is lower (the "fl-window" row, found by multi-start).
"""

from __future__ import annotations

import math

from ufm.cases._registry import Case


def _g_fl(K: int, gamma: float) -> float:
    return (1 - 1 / K) ** gamma * (1 + gamma * math.log(K) / (K - 1))


def _lam(K: int, n: int, K_tau: float) -> float:
    """λ_W = λ_H = λ giving Kτ = K√n λ = K_tau."""
    return K_tau / (K * math.sqrt(n))


def _multi_start_solve(problem):
    """Best of 12 L-BFGS runs (4 starts at each of 3 init scales): the FL window has non-ETF
    second-order stationary points and a locally stable origin (docs/theory/ce-family.md)."""
    import jax

    from ufm.solvers import LBFGS
    from ufm.sweep import best, multi_start

    sols = multi_start(problem, LBFGS(), jax.random.key(0), 4, [0.3, 1.0, 2.0], gtol=1e-12,
                       max_steps=5000)
    return best(sols)


def _case(name, K, n, d, loss, hyper, lambda_W, lambda_H=None, lambda_b=0.0, bias=True,
          tier="default", solve=None, description=""):
    from ufm import losses
    from ufm.problems import UFM

    lambda_H = lambda_W if lambda_H is None else lambda_H

    def build():
        loss_obj = {"ls": losses.LabelSmoothing, "fl": losses.Focal,
                    "ce": lambda _: losses.CrossEntropy()}[loss](hyper)
        return UFM(K, n, d, loss_obj, lambda_W, lambda_H, lambda_b=lambda_b, bias=bias)

    return Case(name=name, model="ufm", loss=loss, tier=tier, build=build, solve=solve,
                description=description)


_LAM_CE_LS = _lam(4, 5, 0.75)  # K = 4, n = 5: Kτ = 0.75 < 1 ≤ Kτ + 0.4 = 1.15

CASES = [
    # Label smoothing, K τ_α = Kτ + α against 1.
    _case("ufm-ls-K4-n5-d3-collapse", 4, 5, 3, "ls", 0.1, 5e-3,
          description="LS α = 0.1, Kτ + α = 0.145 < 1: ETF with τ_α = τ + α/K, d = K-1"),
    _case("ufm-ls-K4-n5-d3-zero-where-ce-collapses", 4, 5, 3, "ls", 0.4, _LAM_CE_LS,
          description="LS α = 0.4 at Kτ = 0.75: Kτ + α = 1.15 ≥ 1, W = H = 0, F* = log K"),
    _case("ufm-ce-K4-n5-d3-collapse-where-ls-zero", 4, 5, 3, "ce", None, _LAM_CE_LS,
          description="CE at the same λ as the LS zero row: Kτ = 0.75 < 1, ETF"),
    # Focal loss, Kτ against g_FL (small K: the local test is the global one).
    _case("ufm-fl-K4-n5-d4-collapse", 4, 5, 4, "fl", 2.0, 5e-3,
          description="FL γ = 2, Kτ = 0.045 < g_FL = 1.08: ETF, margin by bracketing"),
    _case("ufm-fl-K3-n4-d2-zero", 3, 4, 2, "fl", 2.0, _lam(3, 4, 1.2 * _g_fl(3, 2.0)),
          description="FL γ = 2, Kτ = 1.2 g_FL: W = H = 0, F* = ((K-1)/K)^γ log K"),
    # --full: more K, α, γ, biases and aspect ratios.
    _case("ufm-ls-K10-n5-d10-regbias", 10, 5, 10, "ls", 0.2, 5e-3, lambda_b=1e-3, tier="full",
          description="LS α = 0.2, λ_b > 0: b = 0"),
    _case("ufm-ls-nobias-K6-n3-d5-unequal", 6, 3, 5, "ls", 0.05, 2e-2, 5e-3, bias=False, tier="full",
          description="LS α = 0.05, bias-free, λ_W ≠ λ_H"),
    _case("ufm-ls-K6-n3-d7-near-threshold", 6, 3, 7, "ls", 0.4, _lam(6, 3, 0.55), tier="full",
          description="LS α = 0.4, Kτ + α = 0.95: small margin"),
    _case("ufm-ls-K8-n4-d9-zero", 8, 4, 9, "ls", 0.1, _lam(8, 4, 1.2), tier="full",
          description="LS α = 0.1 past the CE threshold: zero"),
    _case("ufm-fl-K10-n3-d10-gamma1", 10, 3, 10, "fl", 1.0, 4e-3, tier="full",
          description="FL γ = 1, collapse"),
    _case("ufm-fl-K5-n4-d6-gamma05", 5, 4, 6, "fl", 0.5, 2e-2, 1e-2, tier="full",
          description="FL γ = 0.5, λ_W ≠ λ_H"),
    _case("ufm-fl-nobias-K6-n3-d5-near-threshold", 6, 3, 5, "fl", 3.0, _lam(6, 3, 0.9 * _g_fl(6, 3.0)),
          bias=False, tier="full", description="FL γ = 3, Kτ = 0.9 g_FL: small margin"),
    _case("ufm-fl-K8-n3-d8-zero", 8, 3, 8, "fl", 1.0, _lam(8, 3, 1.1 * _g_fl(8, 1.0)), tier="full",
          description="FL γ = 1, Kτ = 1.1 g_FL: zero"),
    _case("ufm-fl-K30-n2-d30-window", 30, 2, 30, "fl", 3.0, _lam(30, 2, 1.23), tier="full",
          solve=_multi_start_solve,
          description="FL γ = 3, Kτ = 1.23 ≥ g_FL = 1.221: the origin is a local minimum, yet the "
                      "ETF (m* = 0.92) is the global one; best of 12 starts"),
]
