# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Landscape and saddles
#
# Below its collapse threshold the cross-entropy UFM has a strict saddle at the origin whose
# smallest Hessian eigenvalue is known in closed form (docs/theory/landscape.md), and saddles at
# rank-deficient "merged-class" ETFs. This notebook classifies the global minimiser and these
# saddles modulo the model's rotation symmetry, draws their spectra (stochastic Lanczos quadrature
# against the exact spectrum), and escapes each saddle along negative curvature to the global value.
#
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
from ufm import landscape

jax.config.update("jax_enable_x64", True)
out = Path(os.environ.get("UFM_NOTEBOOK_OUT") or tempfile.mkdtemp(prefix="ufm_landscape_"))
out.mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## The global minimiser: strict modulo symmetry
#
# With a free bias under CE the symmetry orbit has dimension d(d−1)/2 (rotations of the feature
# space) plus one (the flat mean of b): exactly that many zero eigenvalues, and nothing else.

# %%
problem = ufm.UFM(4, 3, 4, ufm.losses.CrossEntropy(), 2e-2, 2e-2)
sol = ufm.certified_solve(problem, ufm.solvers.LBFGS(), problem.init(jax.random.key(0)), gtol=1e-11)
minimum = landscape.classify_critical_point(problem, sol.params)
print(minimum.verdict, "| zeros", minimum.num_zero, "| symmetry", minimum.num_symmetry)
assert minimum.verdict == "local minimum (strict, modulo symmetry)"
assert minimum.num_zero == minimum.num_symmetry == 4 * 3 // 2 + 1

# %% [markdown]
# ## The origin: a strict saddle with a closed-form eigenvalue

# %%
zero = landscape.origin(problem)
saddle = landscape.classify_critical_point(problem, zero)
predicted = landscape.origin_smallest_eigenvalue(problem)
print(saddle.verdict, "| λ_min", saddle.min_eigenvalue, "| closed form", predicted)
assert saddle.verdict == "strict saddle" and abs(saddle.min_eigenvalue - predicted) < 1e-10

# %% [markdown]
# The matrix-free path (restarted Lanczos on Hessian-vector products, the symmetry projected out
# implicitly) gives the same eigenvalue; it is the one that scales to millions of parameters.

# %%
free = landscape.classify_critical_point(problem, zero, method="matrix-free")
print(free.verdict, free.min_eigenvalue, free.num_hvps, "Hessian-vector products")
assert abs(free.min_eigenvalue - predicted) < 1e-10

# %% [markdown]
# ## Spectra: a spike at 0 (symmetry) at the minimum, negative eigenvalues at the saddles

# %%
points = {"global minimum": sol.params, "origin": zero, "merged ETF (G = 2)": landscape.group_etf(problem, 2)}
fig, axes = plt.subplots(1, 3, figsize=(12, 3.4), constrained_layout=True)
for ax, (name, x) in zip(axes, points.items()):
    density = landscape.spectral_density(problem, x, num_probes=8, num_matvecs=40)
    ufm.plots.spectral_density_plot(ax, density, exact=landscape.hessian_eigenvalues(problem, x))
    ax.set_title(f"{name}: {landscape.classify_critical_point(problem, x).verdict}", fontsize=9)
axes[0].legend(frameon=False)
fig.savefig(out / "landscape_spectra.png", dpi=120)

# %% [markdown]
# ## Escape and solve again: every saddle leads to the global value

# %%
values = {}
for name in ("origin", "merged ETF (G = 2)"):
    start = landscape.escape_step(problem, points[name])
    after = ufm.certified_solve(problem, ufm.solvers.LBFGS(), start, gtol=1e-11)
    values[name] = float(after.value)
print(values, "global", float(sol.value))
assert all(abs(v - float(sol.value)) < 1e-10 for v in values.values())
print("figures in", out)
