# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Multi-label and regression UFMs
#
# Two relatives of the plain UFM with closed-form minimisers:
#
# * the **multi-label** UFM under the pick-all-label loss, where a sample with label set S has the
#   feature h_S = ρ_|S| · mean_{k∈S} h_{k} (the tag-wise average, docs/theory/multilabel.md);
# * the **regression** UFM, whose head W collapses onto the top eigen-directions of the target
#   covariance Σ, dropping one direction each time c = N λ_W λ_H crosses an eigenvalue of Σ
#   (docs/theory/regression.md).
#
# Figures are saved to `$UFM_NOTEBOOK_OUT` (or a temporary directory).

# %%
import os
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

import ufm
from ufm.problems.regression import synthetic_targets

jax.config.update("jax_enable_x64", True)
OUT = Path(os.environ.get("UFM_NOTEBOOK_OUT") or tempfile.mkdtemp(prefix="ufm-notebook-"))
OUT.mkdir(parents=True, exist_ok=True)
COLORS = ufm.plots.OKABE_ITO

# %% [markdown]
# ## Multi-label: ρ_2 against λ, compiled once
#
# K = 4 labels; every single label occurs twice and every pair of labels once
# (`counts_by_size={1: 2, 2: 1}`: "balanced within each multiplicity"). λ_W, λ_H and λ_b are
# array leaves of the problem, so `vmap_solve` runs a whole λ grid as one program.

# %%
K, COUNTS = 4, {1: 2, 2: 1}


def pal_problem(lam):
    return ufm.MultiLabelUFM.balanced(K, COUNTS, K, ufm.losses.PickAllLabel(), lam, lam, lambda_b=lam)


problem = pal_problem(1e-3)
lam_star = float(np.sqrt(ufm.theory.threshold(problem)))
lams = np.geomspace(1e-3, 0.7 * lam_star, 4)
over = {"lambda_W": jnp.asarray(lams), "lambda_H": jnp.asarray(lams), "lambda_b": jnp.asarray(lams)}
sols = ufm.sweep.vmap_solve(problem, ufm.solvers.LBFGS(), problem.init(jax.random.key(1), 0.5), over,
                            gtol=1e-12, max_steps=20_000)

# %% [markdown]
# One row of the sweep against the closed form: `compare` certifies the point (gradient norm,
# smallest Hessian eigenvalue modulo the rotations) and bounds every error from the certificate.

# %%
row = jax.tree.map(lambda x: x[1], sols)
prediction = ufm.theory.predict(pal_problem(float(lams[1])))
report = ufm.compare(pal_problem(float(lams[1])), row, prediction)
print(report)
assert report.ok

# %% [markdown]
# The tag-wise factor on every row (ρ̂_2 is read off the features alone), against the closed form
# (a scalar system solved by bisection) as a smooth curve.

# %%
rho_solver = [ufm.metrics.measure(problem, jax.tree.map(lambda x, i=i: x[i], sols.params))["rho_2"]
              for i in range(len(lams))]
fine = np.geomspace(lams[0] / 1.5, lam_star * (1 - 1e-6), 80)


def rho_2(lam):
    return ufm.theory.predict(pal_problem(lam)).scalars["rho_2"]


np.testing.assert_allclose(rho_solver, [rho_2(float(x)) for x in lams], rtol=1e-8)
fig, ax = plt.subplots(figsize=(5, 3.4), layout="constrained")
ufm.plots.theory_vs_solver(ax, lams, [rho_2(float(x)) for x in fine], rho_solver, "ρ_2", x_theory=fine,
                           color=COLORS[0])
ax.axvline(lam_star, color=COLORS[1], ls="--", label="threshold λ* = √P*")
ax.axhline(2, color="0.5", ls=":", lw=1)
ax.set(xlabel="λ = λ_W = λ_H = λ_b", ylabel="tag-wise factor ρ_2")
ax.legend(fontsize=8)
ufm.io.save_figure(OUT / "multilabel_rho.png", fig)

# %% [markdown]
# ## Regression: three regimes
#
# Targets with an exactly known centred covariance spectrum (0.25, 1, 4). With λ_W = λ_H = λ the
# threshold parameter is c = N λ². One point per regime: full rank, rank 2, rank 1, zero.

# %%
N, spectrum = 20, (0.25, 1.0, 4.0)
Y = synthetic_targets(0, N, spectrum)
cs = np.array([0.08, 0.5, 2.0, 6.0])
lam = np.sqrt(cs / N)
reg = ufm.RegressionUFM(Y, 4, float(lam[0]), float(lam[0]))
rsols = ufm.sweep.vmap_solve(reg, ufm.solvers.LBFGS(), reg.init(jax.random.key(0), 0.5),
                             {"lambda_W": jnp.asarray(lam), "lambda_H": jnp.asarray(lam)},
                             gtol=1e-12, max_steps=50_000)
sv = np.array([np.linalg.svd(np.asarray(W), compute_uv=False)[:3] for W in rsols.params.W])
for i, x in enumerate(lam):
    p = ufm.RegressionUFM(Y, 4, float(x), float(x))
    pred = ufm.theory.predict(p)
    print(f"c = {cs[i]:4g}: regime {pred.regime:12s} F* theory {pred.value:.12f}, solver {float(rsols.value[i]):.12f}")
    np.testing.assert_allclose(float(rsols.value[i]), pred.value, rtol=1e-10)


def sigma_theory(c):
    # σ_j(W)² = √(Nλ_H/λ_W) (√λ_j − √c)_+ and λ_W = λ_H here
    return np.sqrt(np.sqrt(N) * np.maximum(np.sqrt(spectrum)[::-1] - np.sqrt(c)[:, None], 0))


ct = np.geomspace(0.05, 8, 300)
fig, ax = plt.subplots(figsize=(5, 3.4), layout="constrained")
for j in range(3):
    ax.plot(ct, sigma_theory(ct)[:, j], "-", color=COLORS[j])
    ax.plot(cs, sv[:, j], "o", mfc="none", color=COLORS[j])
for e in spectrum:
    ax.axvline(e, color="0.5", ls="--", lw=0.8)
ax.set(xscale="log", xlabel="c = N λ_W λ_H", ylabel="singular values σ_j(W)",
       title="lines: theory, markers: L-BFGS, dashed: eigenvalues of Σ")
np.testing.assert_allclose(sv, sigma_theory(cs), atol=1e-8)
ufm.io.save_figure(OUT / "regression_regimes.png", fig)
print("figures in", OUT)
