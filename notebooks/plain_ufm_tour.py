# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # A tour of the plain UFM
#
# Solve the cross-entropy UFM, check its minimiser against the closed form (a simplex ETF with
# margin log(1/τ − (K−1)), docs/theory/ce-family.md), then sweep λ in one compiled call and watch the margin
# follow theory down to the collapse-to-zero threshold Kτ = 1.

# %%
import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

import ufm

jax.config.update("jax_enable_x64", True)

# %% [markdown]
# ## One solve, one comparison

# %%
problem = ufm.UFM(num_classes=5, num_per_class=4, dim=6, loss=ufm.losses.CrossEntropy(),
                  lambda_W=5e-3, lambda_H=5e-3)
sol = ufm.solve(problem, ufm.solvers.LBFGS(), problem.init(jax.random.key(0), scale=0.5), gtol=1e-12)
prediction = ufm.theory.predict(problem)
report = ufm.compare(problem, sol, prediction)
print(sol.status_name, int(sol.num_steps), "steps")
print(report)
assert report.ok

# %% [markdown]
# The classifier Gram W Wᵀ is a scaled simplex ETF: equal diagonal, off-diagonal −1/(K−1) of it.

# %%
G = np.asarray(sol.params.W @ sol.params.W.T)
fig, axes = plt.subplots(1, 2, figsize=(8, 3.5))
axes[0].imshow(G, cmap="RdBu_r", vmin=-np.abs(G).max(), vmax=np.abs(G).max())
axes[0].set_title("W Wᵀ (solver)")
axes[1].imshow(prediction["gram_W"], cmap="RdBu_r", vmin=-np.abs(G).max(), vmax=np.abs(G).max())
axes[1].set_title("W Wᵀ (theory)")

# %% [markdown]
# ## A λ sweep, compiled once
#
# λ is an array leaf of the problem, so `vmap_solve` runs the whole grid as one program.

# %%
lams = jnp.geomspace(1e-3, 0.15, 12)
sols = ufm.sweep.vmap_solve(problem, ufm.solvers.LBFGS(), problem.init(jax.random.key(1), scale=0.5),
                            {"lambda_W": lams, "lambda_H": lams}, gtol=1e-11, max_steps=20_000)
K, n = problem.num_classes, problem.num_per_class
measured_margin = []
for i in range(len(lams)):
    params = jax.tree.map(lambda x: x[i], sols.params)
    measured_margin.append(ufm.metrics.measure(problem, params)["margin"])
theory_margin = [ufm.theory.plain.ce_margin(K, float(np.sqrt(n) * lam)) for lam in lams]
np.testing.assert_allclose(measured_margin, theory_margin, rtol=1e-6, atol=1e-9)

fig, ax = plt.subplots(figsize=(5, 3.5))
ax.plot(lams, theory_margin, "-", label="theory")
ax.plot(lams, measured_margin, "o", label="L-BFGS")
ax.axvline(1 / (K * np.sqrt(n)), color="gray", ls=":", label="Kτ = 1")
ax.set_xscale("log")
ax.set_xlabel("λ_W = λ_H")
ax.set_ylabel("margin m*")
ax.legend()
