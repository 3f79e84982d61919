"""Imbalanced classes: minority collapse (bias-free MSE, closed form) and imbalanced CE (numerical).

Claims:

* Bias-free MSE with per-class counts n_k (docs/theory/mse.md, "Imbalanced classes"; the general
  orthogonal frame of Dang et al., ICML 2023): W Wᵀ = √(λ_H/λ_W) diag(s_k) with
  s_k = (√n_k − N√(λ_Wλ_H))_+, so the classifiers stay orthogonal and a class whose √n_k falls
  below N√(λ_Wλ_H) vanishes (W[k] = 0, its features 0): **minority collapse**. With K_A majority
  classes of n_A = R samples and K_B minority classes of n_B samples, N = K_A R n_B + K_B n_B and
  the minority classes vanish at R_c = (√n_B/√(λ_Wλ_H) − K_B n_B)/(K_A n_B).
* Imbalanced cross-entropy (Fang et al., PNAS 2021, minority collapse in the layer-peeled model):
  no closed form exists in the UFM with weight decay, so it is solved numerically (certified
  L-BFGS from several starts, second-order certificate by ``ufm.landscape.certify``) and the
  classifier geometry (norms, cosines between minority, majority and mixed pairs) is reported as
  it changes with R. The balanced point R = 1 is checked against the CE closed form (simplex ETF).

The figure draws the MSE classifier norms ‖w_k‖ against R from the closed form (a smooth curve in
real R) with the solver points at integer R and R_c marked, and the CE norms and cosines against R
(solver only; the figure says so).

Usage:
    python experiments/imbalanced.py [--out DIR] [--quick]

Writes DIR/imbalanced.json, DIR/imbalanced.png and DIR/imbalanced.pdf (default DIR: results/imbalanced/).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402

import ufm  # noqa: E402
from ufm import io, plots  # noqa: E402

K_A, K_B, N_B = 2, 2, 1  # majority classes, minority classes, minority count
K = K_A + K_B
DIM = K
LAM_MSE = 1.0 / 18.0  # λ_W = λ_H: R_c = (1/λ − K_B)/K_A = 8
LAM_CE = 5e-3
SEEDS = (0, 1)
INIT_SCALE = 0.5
GTOL = 1e-12
MAX_STEPS = 20_000
COLORS = plots.OKABE_ITO


def counts(R: int) -> tuple:
    return (R * N_B,) * K_A + (N_B,) * K_B


def r_collapse(lam_W: float, lam_H: float) -> float:
    """R where the minority classes vanish: √n_B = N √(λ_Wλ_H) with N = K_A R n_B + K_B n_B."""
    return (math.sqrt(N_B) / math.sqrt(lam_W * lam_H) - K_B * N_B) / (K_A * N_B)


def mse_norms_theory(R, lam_W: float, lam_H: float):
    """(‖w_majority‖, ‖w_minority‖) for real R ≥ 1, from ‖w_k‖² = √(λ_H/λ_W) s_k."""
    R = np.asarray(R, float)
    N = K_A * R * N_B + K_B * N_B
    shrink = N * math.sqrt(lam_W * lam_H)
    scale = math.sqrt(lam_H / lam_W)
    s_maj = np.maximum(np.sqrt(R * N_B) - shrink, 0.0)
    s_min = np.maximum(math.sqrt(N_B) - shrink, 0.0)
    return np.sqrt(scale * s_maj), np.broadcast_to(np.sqrt(scale * s_min), R.shape)


def geometry(W) -> dict:
    """Classifier norms and pairwise cosines: within the minority, within the majority, mixed."""
    W = np.asarray(W, float)
    norms = np.linalg.norm(W, axis=1)
    safe = np.where(norms > 1e-9 * norms.max(), norms, np.nan)
    C = (W @ W.T) / np.outer(safe, safe)
    maj, mino = range(K_A), range(K_A, K)

    def mean_cos(rows, cols):
        vals = [C[i, j] for i in rows for j in cols if i < j or rows != cols]
        vals = [v for v in vals if np.isfinite(v)]
        return float(np.mean(vals)) if vals else math.nan

    return dict(norm_majority=float(norms[:K_A].mean()), norm_minority=float(norms[K_A:].mean()),
                cos_minority=mean_cos(mino, mino), cos_majority=mean_cos(maj, maj),
                cos_mixed=mean_cos(maj, mino), norms=norms)


def _best(problem, starts):
    sols = [ufm.certified_solve(problem, ufm.solvers.LBFGS(), s, gtol=GTOL, max_steps=MAX_STEPS)
            for s in starts]
    return min(sols, key=lambda s: float(s.value)), [float(s.value) for s in sols]


def run_mse(Rs) -> list:
    rows = []
    for R in Rs:
        p = ufm.UFM(K, counts(R), DIM, ufm.losses.MSE(), LAM_MSE, LAM_MSE, bias=False)
        sol, values = _best(p, [p.init(jax.random.key(s), INIT_SCALE) for s in SEEDS[:1]])
        pred = ufm.theory.predict(p)
        report = ufm.compare(p, sol, pred)
        meas = ufm.metrics.measure(p, sol.params)
        geo = geometry(sol.params.W)
        th_maj, th_min = mse_norms_theory(R, LAM_MSE, LAM_MSE)
        # off-diagonal cosines among the surviving classes: 0 for an orthogonal frame
        G = np.asarray(sol.params.W @ sol.params.W.T)
        alive = np.diag(G) > 1e-9 * np.max(np.diag(G))
        Ga = G[np.ix_(alive, alive)]
        d = np.sqrt(np.diag(Ga))
        max_cos = float(np.max(np.abs(Ga / np.outer(d, d) - np.eye(len(d))))) if len(d) > 1 else 0.0
        err = lambda a, b: abs(a - b) / b if b > 0 else abs(a)  # noqa: E731
        rows.append(dict(
            R=int(R), counts=counts(R), regime=pred.regime, notes=list(pred.notes),
            value=float(meas["value"]), value_theory=pred.value, geometry=geo,
            norm_majority_theory=float(th_maj), norm_minority_theory=float(th_min),
            max_abs_cos_alive=max_cos, minority_alive_theory=bool(th_min > 0),
            errors=dict(value=err(float(meas["value"]), pred.value),
                        gram_W=float(np.linalg.norm(G - pred["gram_W"]) / np.linalg.norm(pred["gram_W"])),
                        norm_majority=err(geo["norm_majority"], float(th_maj)),
                        norm_minority=err(geo["norm_minority"], float(th_min))),
            compare_ok=report.ok, failures=[r.quantity for r in report.failures()],
            status=sol.status_name, num_steps=int(sol.num_steps), grad_norm=float(sol.grad_norm)))
    return rows


def run_ce(Rs, seeds) -> list:
    rows = []
    for R in Rs:
        p = ufm.UFM(K, counts(R), DIM, ufm.losses.CrossEntropy(), LAM_CE, LAM_CE, bias=False)
        sol, values = _best(p, [p.init(jax.random.key(s), INIT_SCALE) for s in seeds])
        cert = ufm.landscape.certify(p, sol.params)
        row = dict(R=int(R), counts=counts(R), value=float(sol.value), values_by_seed=values,
                   value_spread=float(max(values) - min(values)), geometry=geometry(sol.params.W),
                   local_minimum=bool(not cert.is_saddle), status=sol.status_name,
                   num_steps=int(sol.num_steps), grad_norm=float(sol.grad_norm))
        if R == 1:  # balanced: the CE closed form applies
            pred = ufm.theory.predict(p)
            report = ufm.compare(p, sol, pred)
            row.update(compare_ok=report.ok, failures=[r.quantity for r in report.failures()],
                       value_theory=pred.value,
                       value_rel_error=abs(float(sol.value) - pred.value) / pred.value)
        rows.append(row)
    return rows


def figure(mse: list, ce: list, path: Path) -> None:
    fig, (ax_m, ax_n, ax_c) = plt.subplots(1, 3, figsize=(14, 4.4), layout="constrained")
    Rs = [r["R"] for r in mse]
    Rt = np.linspace(1.0, max(Rs) * 1.05, 600)
    th_maj, th_min = mse_norms_theory(Rt, LAM_MSE, LAM_MSE)
    Rc = r_collapse(LAM_MSE, LAM_MSE)
    for th, key, col, name in ((th_maj, "norm_majority", COLORS[0], "majority"),
                               (th_min, "norm_minority", COLORS[1], "minority")):
        ax_m.plot(Rt, th, "-", color=col, lw=1.6)
        ax_m.plot(Rs, [r["geometry"][key] for r in mse], "o", mfc="none", color=col, ms=7)
    ax_m.axvline(Rc, color="0.3", ls="--", lw=1)
    ax_m.text(Rc, 0.45, f" R_c = {Rc:g}\n minority\n collapse", fontsize=8, color="0.3",
              transform=ax_m.get_xaxis_transform())
    ax_m.set(xlabel="imbalance ratio R = n_majority / n_minority", ylabel="classifier norm ‖w_k‖",
             title=f"MSE, no bias (closed form): λ_W = λ_H = {LAM_MSE:.4g}\n"
                   "classifiers stay orthogonal; minority rows vanish")
    Rce = [r["R"] for r in ce]
    for key, col, name in (("norm_majority", COLORS[0], "majority"), ("norm_minority", COLORS[1], "minority")):
        ax_n.plot(Rce, [r["geometry"][key] for r in ce], "o:", mfc="none", color=col, ms=7, lw=1)
    for key, col, name in (("cos_minority", COLORS[1], "minority–minority"),
                           ("cos_majority", COLORS[0], "majority–majority"),
                           ("cos_mixed", COLORS[2], "majority–minority")):
        ax_c.plot(Rce, [r["geometry"][key] for r in ce], "o:", mfc="none", color=col, ms=7, lw=1)
    ax_c.axhline(-1 / (K - 1), color="0.5", ls=":", lw=1)
    ax_c.text(Rce[-1], -1 / (K - 1), "ETF −1/(K−1) (R = 1 theory)", ha="right", va="bottom", fontsize=8,
              color="0.4")
    for ax, title in ((ax_n, "classifier norms"), (ax_c, "angles between classifiers")):
        ax.set(xscale="log", xlabel="imbalance ratio R = n_majority / n_minority",
               title=f"CE, no bias, λ = {LAM_CE:g}: {title}\n"
                     "no closed form: numerical only")
        ax.grid(alpha=0.3)
        ax.set_xticks(Rce, [str(r) for r in Rce])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax_n.set_ylabel("‖w_k‖ (mean over the group)")
    ax_c.set_ylabel("cosine (mean over the pairs)")
    line = lambda col, ls="-", mk="": plt.Line2D([], [], color=col, ls=ls, marker=mk, mfc="none")  # noqa: E731
    fig.legend([line(COLORS[0]), line(COLORS[1]), line(COLORS[2]), line("0.3"), line("0.3", "", "o"),
                 line("0.3", ":", "o")],
                ["majority classes (pairs)", "minority classes (pairs)", "majority–minority pairs",
                 "theory (closed form)", "certified L-BFGS", "certified L-BFGS, best of starts (CE)"],
                fontsize=8, loc="outside lower center", ncol=6)
    ax_m.grid(alpha=0.3)
    fig.suptitle(f"Imbalanced plain UFM: K = {K} ({K_A} majority classes of R·{N_B} samples, {K_B} minority "
                 f"of {N_B}), d = {DIM}", fontsize=11)
    try:
        io.save_figure(path, fig, with_pdf=True)
    finally:
        plt.close(fig)


def replot(data: dict, path: Path) -> None:
    """Redraw the figure from a saved imbalanced.json."""
    figure(data["mse"], data["ce"], path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/imbalanced", help="output directory")
    parser.add_argument("--quick", action="store_true", help="two ratios each (a smoke run)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    # No MSE ratio sits on R_c = 8, where the minority's s_k is exactly 0 (degenerate minimum).
    Rs_mse = (2, 12) if args.quick else (1, 2, 4, 6, 7, 10, 14)
    Rs_ce = (1, 4) if args.quick else (1, 2, 4, 8, 16)
    seeds = SEEDS[:1] if args.quick else SEEDS
    mse = run_mse(Rs_mse)
    t_mse = time.perf_counter() - start
    ce = run_ce(Rs_ce, seeds)
    seconds = time.perf_counter() - start
    max_err = {q: max(r["errors"][q] for r in mse) for q in ("value", "gram_W", "norm_majority", "norm_minority")}
    collapse_ok = all((r["geometry"]["norm_minority"] > 1e-6) == r["minority_alive_theory"] for r in mse)
    balanced = [r for r in ce if r["R"] == 1]
    summary = dict(
        mse=dict(max_rel_errors=max_err, all_converged=all(r["status"] == "converged" for r in mse),
                 all_compare_ok=all(r["compare_ok"] for r in mse), minority_collapse_ok=collapse_ok,
                 max_abs_cos_alive=max(r["max_abs_cos_alive"] for r in mse),
                 R_collapse=r_collapse(LAM_MSE, LAM_MSE)),
        ce=dict(all_converged=all(r["status"] == "converged" for r in ce),
                all_local_minima=all(r["local_minimum"] for r in ce),
                max_value_spread_over_seeds=max(r["value_spread"] for r in ce),
                balanced_compare_ok=all(r["compare_ok"] for r in balanced),
                balanced_value_rel_error=max((r["value_rel_error"] for r in balanced), default=None),
                note="imbalanced CE has no closed form: numbers are certified local minima, the best of "
                     f"{len(seeds)} start(s)"))
    m, c = summary["mse"], summary["ce"]
    summary["agree"] = bool(m["all_converged"] and m["all_compare_ok"] and collapse_ok
                            and max(max_err.values()) <= 1e-8 and c["all_converged"]
                            and c["all_local_minima"] and c["balanced_compare_ok"])
    io.save_json(out / "imbalanced.json", dict(
        claim="bias-free MSE: W Wᵀ = √(λ_H/λ_W) diag((√n_k − N√(λ_Wλ_H))_+), minority classes vanish "
              "beyond R_c; imbalanced CE solved numerically (no closed form)",
        config=dict(K_majority=K_A, K_minority=K_B, n_minority=N_B, dim=DIM, lambda_mse=LAM_MSE,
                    lambda_ce=LAM_CE, R_mse=list(Rs_mse), R_ce=list(Rs_ce), seeds=list(seeds),
                    init_scale=INIT_SCALE, gtol=GTOL, max_steps=MAX_STEPS, solver="LBFGS",
                    quick=bool(args.quick)),
        summary=summary, mse=mse, ce=ce, seconds=dict(mse=t_mse, total=seconds)))
    figure(mse, ce, out / "imbalanced.png")
    print(f"imbalanced: {len(mse)} MSE + {len(ce)} CE ratios in {seconds:.1f} s; MSE max relative errors "
          + ", ".join(f"{q} {e:.1e}" for q, e in max_err.items())
          + f"; minority collapse at R_c = {m['R_collapse']:g} {collapse_ok}; CE local minima "
          f"{c['all_local_minima']}, balanced compare {c['balanced_compare_ok']}")
    print(f"wrote {out / 'imbalanced.json'}, {out / 'imbalanced.png'}, {out / 'imbalanced.pdf'}")
    return 0 if summary["agree"] else 1


if __name__ == "__main__":
    sys.exit(main())
