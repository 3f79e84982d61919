# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Deep and extended UFMs
#
# The extended UFM of Tirer & Bruna puts one hidden ReLU layer between the free features and the
# classifier: W₂ σ(W₁ H₁). With MSE, no bias and equal decays λ, its optimum is that of the
# two-layer deep linear UFM, a function of the single number κ = K n^{1/3} λ
# (docs/theory/deep.md): the features collapse for κ < κ* = 2^{−4/3}, and at κ* the optimum jumps
# to the origin (a first-order transition). A collapsed *local* minimum survives up to
# κ_max = 3·4^{−4/3}, and the origin is a local minimum for every κ, so random restarts matter.
#
# This notebook solves the extended UFM, compares it with the closed form, scans κ across the
# threshold with multi-start L-BFGS, and measures deep neural collapse layer by layer.
# Figures go to `$UFM_NOTEBOOK_OUT` if it is set, else to a fresh temporary directory.

# %%
import os
import tempfile
from pathlib import Path

import jax
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

import ufm
from ufm.sweep import best, multi_start, summarize
from ufm.theory import deep as td

jax.config.update("jax_enable_x64", True)
out = Path(os.environ.get("UFM_NOTEBOOK_OUT") or tempfile.mkdtemp(prefix="ufm_deep_"))
K, n, L = 3, 2, 2
print(f"κ* = {td.kappa_star(L):.5f}, κ_max = {td.kappa_max(L):.5f}")


def extended(kappa):
    """The extended ReLU UFM (widths 8, 8: overparameterised layers reach the optimum more often)."""
    lam = kappa / (K * n ** (1 / 3))
    return ufm.DeepUFM.extended(K, n, 8, 8, ufm.losses.MSE(), lam, lam, bias=False)


def restarts(problem, seed=0):
    """24 L-BFGS restarts at init scales 0.1 (near the origin), 1 and 2, each polished once; one
    compiled program for every κ (the decays are array leaves)."""
    return multi_start(problem, ufm.solvers.LBFGS(), jax.random.key(seed), 8, (0.1, 1.0, 2.0),
                       max_steps=3000, gtol=1e-12, restarts=1, batching="map")


# %% [markdown]
# ## One κ below the threshold: best restart against the closed form

# %%
problem = extended(0.25)
prediction = ufm.theory.predict(problem)
sols = restarts(problem)
top = best(sols)
report = ufm.compare(problem, top, prediction, hessian=False)
print(report)
assert report.ok and abs(float(top.value) - prediction.value) <= 1e-9 * prediction.value

# %% [markdown]
# Deep neural collapse at the best restart: within-class variability (DNC1) vanishes at both
# layers; the post-ReLU class means H̄₂ form an orthogonal frame (DNC2) and W₂'s singular values
# are equal (DNC3). The first layer of a ReLU model is not unique, so only DNC1 is predicted there.

# %%
m = ufm.metrics.measure(problem, top.params)
dnc = {"DNC1, H₁": m["dnc1_1"], "DNC1, H₂": m["dnc1_2"], "DNC2, H₂": m["dnc2_means_2"],
       "DNC3, W₂": m["dnc3_spread_2"], "balancedness": m["balancedness"]}
for name, v in dnc.items():
    print(f"{name:>14}: {v:.1e}")
assert max(dnc.values()) < 1e-6

# %% [markdown]
# ## Scanning κ across the threshold
#
# Every restart stops at a critical point; for the deep linear model these are the partial-rank
# values f_r = (r ψ(σ_loc) + (K − r)/2)/K (rank r collapsed directions). The best restart should
# follow the global curve min(ψ) and jump with it at κ*.

# %%
kappas = np.array([0.1, 0.25, 0.35, 0.385, 0.41, 0.45, 0.5])
best_values, reach, norms = [], [], []
for kappa in kappas:
    p = extended(float(kappa))
    target = ufm.theory.predict(p).value
    s = restarts(p)
    summary = summarize(s, target, 1e-8)
    best_values.append(summary["best_value"])
    reach.append(summary["reach_fraction"])
    norms.append(ufm.metrics.measure(p, best(s).params)["norm_W2_sq"])
    assert summary["num_below_target"] == 0  # nothing beats the closed form
print("fraction of restarts at F*:", dict(zip(kappas.round(3).tolist(), reach)))

grid = np.linspace(0.0, 0.6, 400)
F = [td.psi(td.sigma_star(k, L), k, L) for k in grid]
W = [K * n ** (1 / 3) * td.sigma_star(k, L) ** (2 / 3) for k in grid]
local = [td.psi(td.sigma_local(k, L), k, L) for k in grid]

fig, (a, b) = plt.subplots(1, 2, figsize=(9.5, 3.6), layout="constrained")
a.plot(grid, F, "k-", lw=1.6, label="theory: global minimum")
a.plot(grid, local, ":", color="0.45", label="theory: collapsed local minimum")
a.plot(kappas, best_values, "o", color="#D55E00", mfc="none", label="best of 24 restarts")
b.plot(grid, W, "k-", lw=1.6)
b.plot(kappas, norms, "o", color="#D55E00", mfc="none")
for ax in (a, b):
    ax.axvline(td.kappa_star(L), color="0.2", ls="--", lw=1)
    ax.axvline(td.kappa_max(L), color="0.2", ls=":", lw=1)
    ax.set_xlabel("κ = K n^(1/3) λ")
    ax.grid(alpha=0.3)
a.set_ylabel("objective F*")
b.set_ylabel("‖W₂‖²_F")
a.legend(fontsize=8, loc="lower right")
fig.suptitle("Extended ReLU UFM, K = 3, n = 2: the jump at κ* (dashed); κ_max dotted", fontsize=10)
for suffix in (".png", ".pdf"):
    ufm.io.save_figure(out / f"deep_threshold{suffix}", fig, bbox_inches="tight")
np.testing.assert_allclose(best_values, [td.psi(td.sigma_star(float(k), L), float(k), L) for k in kappas],
                           rtol=1e-9)
print("figures in", out)

# %% [markdown]
# Past κ* the collapsed local minimum still exists (up to κ_max), so restarts from larger scales
# stop there, above the global value 1/2: the fraction reaching F* dips around the threshold. The
# full experiment (`python experiments/deep_threshold.py`) adds the deep linear model, the
# partial-rank levels of every restart, and a three-layer model's per-layer collapse.
