"""All losses give the same collapsed geometry, at different scales (Zhou et al., NeurIPS 2022).

For one plain UFM (K, n, d) with a free bias, sweep λ = λ_W = λ_H and solve, for every λ at once
(one vmapped, compiled L-BFGS solve per loss family), under MSE, CE, label smoothing (two α) and
focal loss (two γ). Every minimiser is a simplex ETF (docs/theory/mse.md, ce-family.md); what changes with the loss
and λ is only its scale: the margin m* (a closed form for MSE/CE/LS, a bracketed root for FL) and
‖W‖² = (K−1) m* √(nλ_H/λ_W). The figure sets the theory curves against the solver points and
shows the Gram matrices W Wᵀ at one λ; the JSON holds every number.

Usage:
    python experiments/loss_family.py [--out DIR] [--quick]

Writes DIR/loss_family.json, .png and .pdf (default DIR: results/loss_family/). The collapse
threshold of each loss (``ufm.theory.threshold``: Kτ = 1 for CE and MSE, Kτ + α = 1 for LS, the
global FL threshold) is marked.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import ufm  # noqa: E402
from ufm import io, plots  # noqa: E402
from ufm.sweep import vmap_solve  # noqa: E402

K, N_PER_CLASS, DIM = 4, 5, 4
SEED = 0
INIT_SCALE = 0.5
GTOL = 1e-13
MAX_STEPS = 4000
# name -> (loss constructor, the loss hyperparameter swept inside the same compiled call, values)
FAMILIES = {
    "MSE": (ufm.losses.MSE, None, [None]),
    "CE": (ufm.losses.CrossEntropy, None, [None]),
    "LS": (ufm.losses.LabelSmoothing, "alpha", [0.1, 0.3]),
    "FL": (ufm.losses.Focal, "gamma", [1.0, 2.0]),
}
QUANTITIES = ("value", "margin", "norm_W_sq", "gram_W")  # reported relative errors
# Okabe-Ito, colour-blind safe.
OKABE_ITO = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")


def _label(family: str, hyper: str | None, h) -> str:
    return family if hyper is None else f"{family} {'α' if hyper == 'alpha' else 'γ'}={h:g}"


def _problem(family: str, hyper: str | None, h, lam: float) -> ufm.UFM:
    make = FAMILIES[family][0]
    loss = make() if hyper is None else make(h)
    return ufm.UFM(K, N_PER_CLASS, DIM, loss, lam, lam, lambda_b=0.0, bias=True)


def _theory(problem) -> dict:
    pred = ufm.theory.predict(problem)
    return dict(value=pred.value, margin=pred.quantities.get("margin", 0.0),
                norm_W_sq=pred["norm_W_sq"], regime=pred.regime, prediction=pred)


def _error(predicted, measured) -> float:
    """Relative Frobenius error, absolute where the prediction is 0 (the zero solution)."""
    p, m = np.asarray(predicted, float), np.asarray(measured, float)
    scale = np.linalg.norm(p.ravel())
    diff = np.linalg.norm((m - p).ravel())
    return float(diff / scale) if scale > 0 else float(diff)


def run(lambdas: np.ndarray, lambdas_theory: np.ndarray, lambda_gram: float) -> dict:
    """Solve every (loss, λ), compare with the closed forms, return the JSON-ready results."""
    base_key = jax.random.key(SEED)
    results = {}
    for family, (make, hyper, hs) in FAMILIES.items():
        t0 = time.perf_counter()
        # One compiled call per family: the λ grid times the loss hyperparameter values.
        lam_all = np.tile(lambdas, len(hs))
        over = {"lambda_W": jnp.asarray(lam_all), "lambda_H": jnp.asarray(lam_all)}
        if hyper is not None:
            over[f"loss.{hyper}"] = jnp.asarray(np.repeat(hs, len(lambdas)))
        base = _problem(family, hyper, hs[0], float(lambdas[0]))
        sols = vmap_solve(base, ufm.solvers.LBFGS(), base.init(base_key, INIT_SCALE), over,
                          gtol=GTOL, max_steps=MAX_STEPS)
        sols = jax.tree.map(np.asarray, jax.block_until_ready(sols))
        seconds = time.perf_counter() - t0
        for j, h in enumerate(hs):
            label = _label(family, hyper, h)
            rows = []
            for i, lam in enumerate(lambdas):
                k = j * len(lambdas) + i
                prob = _problem(family, hyper, h, float(lam))
                th = _theory(prob)
                sol = jax.tree.map(lambda x: x[k], sols)
                meas = ufm.metrics.measure(prob, sol.params)
                report = ufm.compare(prob, sol, th["prediction"], hessian=False)
                errors = {q: _error(th["prediction"][q], meas[q]) for q in QUANTITIES
                          if q in th["prediction"].quantities}
                if "margin" not in th["prediction"].quantities:  # zero solution: margin 0
                    errors["margin"] = abs(float(meas["margin"]))
                rows.append(dict(
                    lam=float(lam), K_tau=K * math.sqrt(N_PER_CLASS) * float(lam),
                    regime=th["regime"], theory=dict(value=th["value"], margin=th["margin"],
                                                     norm_W_sq=th["norm_W_sq"]),
                    measured=dict(value=float(meas["value"]), margin=float(meas["margin"]),
                                  norm_W_sq=float(meas["norm_W_sq"]), nc2_W=float(meas["nc2_W"])),
                    errors=errors, compare_ok=report.ok,
                    failures=[r.quantity for r in report.failures()],
                    status=ufm.Status(int(sol.status)).name.lower(), num_steps=int(sol.num_steps),
                    grad_norm=float(sol.grad_norm)))
            curve = [_theory(_problem(family, hyper, h, float(lam))) for lam in lambdas_theory]
            gram_prob = _problem(family, hyper, h, lambda_gram)
            gram_pred = ufm.theory.predict(gram_prob)
            i_gram = int(np.argmin(np.abs(lambdas - lambda_gram)))
            W = sols.params.W[j * len(lambdas) + i_gram]
            # λ_W = λ_H = λ, so P = λ² and the collapse threshold is λ* = √P*.
            lam_threshold = math.sqrt(ufm.theory.threshold(gram_prob))
            results[label] = dict(
                family=family, hyper={hyper: h} if hyper else {}, rows=rows,
                threshold_lambda=lam_threshold,
                curve=dict(lam=lambdas_theory.tolist(), margin=[c["margin"] for c in curve],
                           norm_W_sq=[c["norm_W_sq"] for c in curve], value=[c["value"] for c in curve]),
                gram=dict(lam=float(lambdas[i_gram]), measured=W @ W.T,
                          theory=np.asarray(gram_pred["gram_W"]) if "gram_W" in gram_pred.quantities
                          else np.zeros((K, K))),
                max_errors={q: max(r["errors"].get(q, 0.0) for r in rows) for q in QUANTITIES},
                all_converged=all(r["status"] == "converged" for r in rows),
                all_compare_ok=all(r["compare_ok"] for r in rows),
                solve_seconds_family=seconds)
    return results


def figure(results: dict, path: Path) -> None:
    """Margin and ‖W‖² against λ (theory lines, solver markers) and the Grams W Wᵀ at one λ."""
    labels = list(results)
    fig = plt.figure(figsize=(2.55 * len(labels), 7.4), layout="constrained")
    grid = fig.add_gridspec(2, len(labels), height_ratios=[1.45, 1.0])
    half = len(labels) // 2
    ax_m = fig.add_subplot(grid[0, :half])
    ax_w = fig.add_subplot(grid[0, half:])
    colors = OKABE_ITO
    for c, label in zip(colors, labels):
        res = results[label]
        lam = [r["lam"] for r in res["rows"]]
        for ax, q in ((ax_m, "margin"), (ax_w, "norm_W_sq")):
            plots.theory_vs_solver(ax, lam, res["curve"][q], [r["measured"][q] for r in res["rows"]],
                                   label, x_theory=res["curve"]["lam"], color=c)
            # Collapse threshold of this loss: the zero solution is global beyond it.
            ax.axvline(res["threshold_lambda"], color=c, ls="--", lw=1.0, alpha=0.9)
    ax_m.set(xlabel="λ = λ_W = λ_H", ylabel="margin m*", title="(a) optimal margin m*")
    ax_w.set(xlabel="λ = λ_W = λ_H", ylabel="‖W‖²_F", title="(b) ‖W‖²_F = (K−1) √n m*  (λ_W = λ_H)")
    ax_w.set_yscale("symlog", linthresh=1e-1)
    ax_m.set_yscale("symlog", linthresh=1e-1)
    for ax in (ax_m, ax_w):
        ax.grid(True, alpha=0.3)
        ax.set_ylim(bottom=0)  # nothing is negative: no empty lower half of the symlog axis
    # One legend entry per loss (colour), plus the line/marker convention.
    handles = [plt.Line2D([], [], color=c, lw=2) for c in colors[:len(labels)]]
    handles += [plt.Line2D([], [], color="gray", lw=1.5),
                plt.Line2D([], [], color="gray", marker="o", mfc="none", ls=""),
                plt.Line2D([], [], color="gray", ls="--", lw=1.0)]
    lam_gram = results[labels[0]]["gram"]["lam"]
    fig.legend(handles, labels + ["theory", "L-BFGS", "collapse threshold λ* = √P*"], fontsize=9,
               loc="outside upper center", ncol=len(labels) + 3, frameon=False,
               title=f"Plain UFM, K = {K}, n = {N_PER_CLASS}, d = {DIM}, free bias: every loss gives "
               f"a simplex ETF at its own scale, up to its own threshold. Bottom: solver W Wᵀ at "
               f"λ = {lam_gram:.3g}", title_fontsize=10.5)
    for j, label in enumerate(labels):
        ax = fig.add_subplot(grid[1, j])
        g = results[label]["gram"]
        G = np.asarray(g["measured"])
        err = _error(g["theory"], G)
        plots.gram_heatmap(ax, G, f"{label}: tr = {np.trace(G):.3f}\nerror {err:.0e}")
        ax.title.set_fontsize(9)
    try:
        for suffix in (".png", ".pdf"):
            io.save_figure(path.with_suffix(suffix), fig, bbox_inches="tight")
    finally:
        plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/loss_family", help="output directory")
    parser.add_argument("--quick", action="store_true", help="3 values of λ (a smoke run)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    lam_star = 1.0 / (K * math.sqrt(N_PER_CLASS))  # Kτ = 1: the CE / MSE threshold
    if args.quick:
        lambdas = np.array([1e-3, 3e-2, 1.3 * lam_star])
        lambdas_theory = np.geomspace(5e-4, 1.6 * lam_star, 60)
    else:
        # Log grid towards the thresholds, then past every one of them (the zero solution). No
        # point sits on a threshold (Kτ = 1, Kτ + α = 1, Kτ = g_FL), where the minimum is
        # degenerate and convergence sublinear.
        lambdas = np.concatenate([np.geomspace(1e-4, 0.5 * lam_star, 11),
                                  np.array([0.65, 0.85, 1.2, 1.4]) * lam_star])
        lambdas_theory = np.geomspace(8e-5, 1.6 * lam_star, 400)
    lambda_gram = float(lambdas[np.argmin(np.abs(lambdas - 1e-2))])
    results = run(lambdas, lambdas_theory, lambda_gram)
    seconds = time.perf_counter() - start
    summary = {label: dict(max_errors=r["max_errors"], all_converged=r["all_converged"],
                           all_compare_ok=r["all_compare_ok"],
                           max_steps=max(x["num_steps"] for x in r["rows"]),
                           max_grad_norm=max(x["grad_norm"] for x in r["rows"]))
               for label, r in results.items()}
    io.save_json(out / "loss_family.json", dict(
        claim="all losses give the same collapsed geometry (simplex ETF) at different scales",
        config=dict(num_classes=K, num_per_class=N_PER_CLASS, dim=DIM, bias=True, lambda_b=0.0,
                    lambdas=lambdas.tolist(), lambda_gram=lambda_gram, seed=SEED,
                    init_scale=INIT_SCALE, gtol=GTOL, max_steps=MAX_STEPS, solver="LBFGS",
                    quick=bool(args.quick)),
        summary=summary, results=results, seconds=seconds))
    figure(results, out / "loss_family.png")
    print(f"loss family, K={K} n={N_PER_CLASS} d={DIM}, {len(lambdas)} λ values, {seconds:.1f} s")
    print(f"{'loss':<10} {'value':>9} {'margin':>9} {'‖W‖²':>9} {'Gram':>9}  converged  compare")
    for label, s in summary.items():
        e = s["max_errors"]
        print(f"{label:<10} {e['value']:9.1e} {e['margin']:9.1e} {e['norm_W_sq']:9.1e} "
              f"{e['gram_W']:9.1e}  {str(s['all_converged']):>9}  {str(s['all_compare_ok']):>7}")
    print(f"wrote {out / 'loss_family.png'}, .pdf and .json")
    ok = all(s["all_converged"] and s["all_compare_ok"] for s in summary.values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
