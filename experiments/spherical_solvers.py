#!/usr/bin/env python3
"""Riemannian trust region vs Riemannian gradient descent on the spherical UFM (issue 5).

Both solve SphericalUFM(K, n, d) from the same random starts to Riemannian gradient norm ``gtol``
through ``ufm.solve`` (one compiled loop each) and are compared with the closed form of
docs/theory/spherical.md. Wall times exclude compilation (each solve is run once to compile, then timed).
Prints one JSON line.

Usage:
    python experiments/spherical_solvers.py [--K 10] [--n 20] [--d 16] [--s 1 5 10] [--seeds 3]
        [--gtol 1e-12] [--gd-budget 100000]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402

import ufm  # noqa: E402
from ufm.solvers import RiemannianGradientDescent, TrustRegion  # noqa: E402


def _rel(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def run_one(problem, solver, start, gtol, max_steps, repeats=3):
    t0 = time.perf_counter()
    sol = ufm.solve(problem, solver, start, gtol=gtol, max_steps=max_steps)
    jax.block_until_ready(sol.value)
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        sol = ufm.solve(problem, solver, start, gtol=gtol, max_steps=max_steps)
        jax.block_until_ready(sol.value)
        times.append(time.perf_counter() - t0)
    pred = ufm.theory.predict(problem)
    m = ufm.metrics.measure(problem, sol.params)
    inner = sol.state.inner
    row = dict(solver=type(solver).__name__, status=sol.status_name, iterations=int(sol.num_steps),
               grad_norm=float(sol.grad_norm), value_rel_err=_rel(sol.value, pred.value),
               gram_W_rel_err=_rel(m["gram_W"], pred["gram_W"]),
               W_means_rel_err=_rel(m["W_means"], pred["W_means"]),
               max_sphere_error=m["max_sphere_error"], wall_s=min(times),
               first_call_s=first)
    if isinstance(solver, TrustRegion):
        row.update(hessian_vector_products=int(inner.inner_iterations), rejections=int(inner.rejections))
    else:
        row.update(objective_evaluations=int(inner.evaluations))
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--K", type=int, default=10)
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--d", type=int, default=16)
    ap.add_argument("--s", type=float, nargs="+", default=[1.0, 5.0, 10.0],
                    help="inverse temperatures s = r_W r_H / T (radii 1, T = 1/s)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--gtol", type=float, default=1e-12)
    ap.add_argument("--tr-budget", type=int, default=200)
    ap.add_argument("--gd-budget", type=int, default=100_000)
    args = ap.parse_args(argv)

    results = []
    for s in args.s:
        problem = ufm.SphericalUFM(args.K, args.n, args.d, ufm.losses.CrossEntropy(),
                                   temperature=1.0 / s)
        for seed in range(args.seeds):
            start = problem.init(jax.random.key(seed))
            for solver, budget in ((TrustRegion(), args.tr_budget),
                                   (RiemannianGradientDescent(), args.gd_budget)):
                row = run_one(problem, solver, start, args.gtol, budget)
                results.append(dict(s=s, seed=seed, **row))

    summary = {}
    for name in ("TrustRegion", "RiemannianGradientDescent"):
        rows = [r for r in results if r["solver"] == name]
        summary[name] = dict(
            converged=sum(r["status"] == "converged" for r in rows), runs=len(rows),
            max_iterations=max(r["iterations"] for r in rows),
            median_iterations=float(np.median([r["iterations"] for r in rows])),
            median_wall_s=float(np.median([r["wall_s"] for r in rows])),
            max_value_rel_err=max(r["value_rel_err"] for r in rows),
            max_gram_W_rel_err=max(r["gram_W_rel_err"] for r in rows))
    print(json.dumps(dict(experiment="spherical_solvers", K=args.K, n=args.n, d=args.d,
                          gtol=args.gtol, device=str(jax.devices()[0]), machine=platform.machine(),
                          jax=jax.__version__, ufm=ufm.__version__, summary=summary,
                          results=results)))


if __name__ == "__main__":
    main()
