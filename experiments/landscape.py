#!/usr/bin/env python3
"""Landscape of the plain, deep and spherical UFMs: spectra at the global minimum and at known
strict saddles, and escape trajectories (value vs iteration) from each saddle.

For each model: the tangent-Hessian spectrum (stochastic Lanczos quadrature, the exact dense
spectrum overlaid) at the global minimiser (the symmetry zeros show as a spike at 0) and at its
known saddles (negative eigenvalues left of 0); then from each saddle one escape step along the
negative-curvature direction and a solve, recording F every iteration, against the closed-form
global value. Writes ``landscape.json`` and ``spectra.png/.pdf``, ``escape.png/.pdf`` to --out.

Usage:
    python experiments/landscape.py [--out results/landscape]
"""

from __future__ import annotations

import argparse
import os

import jax

jax.config.update("jax_enable_x64", True)

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import ufm  # noqa: E402
from ufm import landscape  # noqa: E402
from ufm.plots import OKABE_ITO, spectral_density_plot  # noqa: E402


def cases():
    plain = ufm.UFM(4, 3, 4, ufm.losses.CrossEntropy(), 1e-2, 1e-2)
    deep = ufm.DeepUFM(3, 2, (4, 4), ufm.losses.MSE(), 1e-2, 1e-2, activation="identity", bias=False)
    sph = ufm.SphericalUFM(4, 3, 5, ufm.losses.CrossEntropy(), temperature=0.5)
    return [
        ("plain CE UFM", plain, ufm.solvers.LBFGS(),
         [("origin", landscape.origin(plain)), ("group ETF (G=2)", landscape.group_etf(plain, 2))]),
        ("deep linear UFM (L=2)", deep, ufm.solvers.LBFGS(),
         [("partial rank 1 (ψ max)", landscape.deep_partial_rank(deep, 1, "max")),
          ("partial rank 3 (ψ max)", landscape.deep_partial_rank(deep, 3, "max"))]),
        ("spherical UFM", sph, ufm.solvers.TrustRegion(), [("antipodal", landscape.spherical_antipodal(sph))]),
    ]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="results/landscape")
    ap.add_argument("--probes", type=int, default=32)
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    results = []
    all_cases = cases()
    fig_s, axes_s = plt.subplots(len(all_cases), 3, figsize=(12, 3.1 * len(all_cases)), squeeze=False)
    fig_e, axes_e = plt.subplots(1, len(all_cases), figsize=(4.2 * len(all_cases), 3.3), squeeze=False)
    for row, (title, problem, solver, saddles) in enumerate(all_cases):
        pred = ufm.theory.predict(problem)
        minimiser = problem.params(**pred.construct(seed=0))
        points = [("global minimum", minimiser)] + saddles
        entry = dict(model=title, config=problem.config(), global_value=pred.value, points=[])
        for col in range(3):
            ax = axes_s[row][col]
            if col >= len(points):
                ax.axis("off")
                continue
            name, x = points[col]
            c = landscape.classify_critical_point(problem, x)
            sd = landscape.spectral_density(problem, x, num_probes=args.probes, num_matvecs=40)
            exact = landscape.hessian_eigenvalues(problem, x)
            spectral_density_plot(ax, sd, exact=exact)
            ax.set_title(f"{title}: {name}\n{c.verdict}; {c.num_symmetry} symmetry zeros", fontsize=8)
            point = dict(name=name, value=float(problem.value(x)), classification=c.summary())
            if c.verdict == "strict saddle":
                start = landscape.escape_step(problem, x)
                sol = ufm.solve(problem, solver, start, gtol=1e-11, max_steps=3000, record_every=1)
                trace = np.asarray(sol.trace)[:, 0]
                trace = trace[np.isfinite(trace)]
                point.update(escape_final=float(sol.value), escape_steps=int(sol.num_steps),
                             escape_trace=trace.tolist(),
                             escape_rel_error=abs(float(sol.value) - pred.value) / abs(pred.value))
                axe = axes_e[0][row]
                gap = np.maximum(np.concatenate([[float(problem.value(x))], trace]) - pred.value, 1e-16)
                axe.semilogy(np.arange(gap.size), gap, "-", color=OKABE_ITO[len(entry["points"]) % 8],
                             label=name)
            entry["points"].append(point)
        axe = axes_e[0][row]
        axe.set_title(title + (": ends at partial-rank values $f_r$" if "deep" in title else ""), fontsize=9)
        axe.set_xlabel("iteration $t$ (0: the saddle)")
        axe.set_ylabel(r"$F(x_t) - F^\star$")
        axe.legend(fontsize=8)
        results.append(entry)
        print(f"{title}: " + "; ".join(
            f"{p['name']}: {p['classification']['verdict']}"
            + (f", escape → rel. error {p['escape_rel_error']:.1e}" if "escape_final" in p else "")
            for p in entry["points"]), flush=True)
    axes_s[0][0].legend(fontsize=8, loc="upper right")
    fig_s.tight_layout()
    fig_e.tight_layout()
    for fig, name in ((fig_s, "spectra"), (fig_e, "escape")):
        for ext in ("png", "pdf"):
            ufm.io.save_figure(os.path.join(args.out, f"{name}.{ext}"), fig)
    ufm.io.save_json(os.path.join(args.out, "landscape.json"), dict(results=results))
    return results


if __name__ == "__main__":
    main()
