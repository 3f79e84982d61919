"""The MSE UFM: orthogonal frame without a bias, simplex ETF with one, the collapse threshold, d < K.

Claims (Tirer & Bruna, ICML 2022, §3; Zhou et al., ICML 2022; docs/theory/mse.md):

(a) Without a bias the minimiser's classifier is an orthogonal frame, W Wᵀ = ρ_W I, and the
    uncentred class means are orthogonal too (H̄ = βWᵀ); with a free bias both are a simplex ETF,
    W Wᵀ = ρ_W C_K, with b = 1/K. Shown at the diagonal point of (b) nearest λ = 10⁻²: the
    solver's Grams of W and of the class means beside the closed-form ones.
(b) The collapse threshold: W ≠ 0 exactly when λ_W λ_H < P* = 1/(K² n) (Kτ < 1). A phase diagram
    over a (λ_W, λ_H) grid without a bias (one vmapped, compiled solve; the diagonal λ_W = λ_H
    with a free bias is a second one) colours the solver's ‖W‖²; the theory
    boundary λ_H = P*/λ_W is drawn as a smooth curve with theory iso-lines of ‖W‖², and the
    diagonal λ_W = λ_H is shown as theory curve against solver points. The grid is offset so that
    no point lies on the boundary (where the minimum is degenerate).
(c) Partial rank, d < K: F* = 1/2 − min(d, K) c²/(2K) without a bias (d < K − 1 with a free bias:
    (K−1)/(2K) − d c²/(2K)); W Wᵀ has min(d, K) (or min(d, K−1)) eigenvalues ρ_W and the rest 0.
    Certified solves for every d against the closed form.

Every solver point is judged by ``ufm.compare`` (second-order certificate, bounds from it).

Usage:
    python experiments/mse.py [--out DIR] [--quick]

Writes DIR/mse.json, DIR/mse.png and DIR/mse.pdf (default DIR: results/mse/).
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
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402

import ufm  # noqa: E402
from ufm import io, plots  # noqa: E402
from ufm.sweep import vmap_solve  # noqa: E402

K, N_PER_CLASS, DIM = 4, 5, 4
LAM_GRAM = 1e-2
SEED = 0
INIT_SCALE = 0.5
GTOL = 1e-12
MAX_STEPS = 20_000
COLORS = plots.OKABE_ITO
P_STAR = 1.0 / (K * K * N_PER_CLASS)  # λ_W λ_H at the threshold (Kτ = 1)


def _rel(predicted, measured) -> float:
    """Relative Frobenius error, absolute where the prediction is 0."""
    p, m = np.asarray(predicted, float).ravel(), np.asarray(measured, float).ravel()
    scale = np.linalg.norm(p)
    return float(np.linalg.norm(m - p) / scale) if scale > 0 else float(np.linalg.norm(m - p))


def _problem(bias: bool, lam_W: float, lam_H: float, dim: int = DIM, K_: int = K) -> ufm.UFM:
    return ufm.UFM(K_, N_PER_CLASS, dim, ufm.losses.MSE(), lam_W, lam_H, lambda_b=0.0, bias=bias)


def _judge(problem, sol, quantities) -> dict:
    """compare + the relative errors of the named quantities, for the JSON."""
    pred = ufm.theory.predict(problem)
    report = ufm.compare(problem, sol, pred)
    meas = ufm.metrics.measure(problem, sol.params)
    return dict(regime=pred.regime, compare_ok=report.ok,
                failures=[r.quantity for r in report.failures()],
                status=sol.status_name, num_steps=int(sol.num_steps), grad_norm=float(sol.grad_norm),
                errors={q: _rel(pred[q], meas[q]) for q in quantities if q in pred.quantities},
                measured={q: np.asarray(meas[q]) for q in quantities if q in meas},
                theory={q: np.asarray(pred[q]) for q in quantities if q in pred.quantities})


def norm_W_sq_theory(K_: int, n: int, lam_W, lam_H, bias: bool, dim: int | None = None):
    """‖W‖² from docs/theory/mse.md, written out here (vectorised over λ's): r ρ_W, with
    ρ_W = (1 − Kτ)_+ √(nλ_H/λ_W) and r = min(d, K) without a bias, min(d, K−1) with a free one."""
    lam_W, lam_H = np.asarray(lam_W, float), np.asarray(lam_H, float)
    c = np.maximum(1.0 - K_ * np.sqrt(n * lam_W * lam_H), 0.0)
    r = (K_ - 1 if bias else K_) if dim is None else min(dim, K_ - 1 if bias else K_)
    return r * c * np.sqrt(n * lam_H / lam_W)


def value_theory(K_: int, n: int, lam: float, dim: int, bias: bool) -> float:
    """F* for λ_W = λ_H = λ and any d (docs/theory/mse.md, no bias / free bias)."""
    c = max(1.0 - K_ * math.sqrt(n) * lam, 0.0)
    r = min(dim, K_ - 1 if bias else K_)
    return (K_ - 1) / (2 * K_) * (1 if bias else K_ / (K_ - 1)) - r * c * c / (2 * K_)


def _grid(steps: int, h: float) -> np.ndarray:
    # log λ = log √P* + (k + ¼) h: λ_W λ_H = P* 10^{(k1+k2+½) h} is never P* itself (Kτ is at
    # least a factor 10^{h/4} away from 1).
    k = np.arange(steps) - steps // 2
    return math.sqrt(P_STAR) * 10.0 ** ((k + 0.25) * h)


def part_b(steps: int, h: float) -> dict:
    """Phase diagram over (λ_W, λ_H) without a bias, and the diagonal λ_W = λ_H with a free bias:
    one vmapped solve each, every point compared with the closed form."""
    lam = _grid(steps, h)
    LW, LH = np.meshgrid(lam, lam, indexing="ij")
    out = dict(lambdas=lam)
    for bias, (lws, lhs) in ((False, (LW.ravel(), LH.ravel())), (True, (lam, lam))):
        base = _problem(bias, float(lam[0]), float(lam[0]))
        t0 = time.perf_counter()
        sols = vmap_solve(base, ufm.solvers.LBFGS(), base.init(jax.random.key(SEED), INIT_SCALE),
                          {"lambda_W": jnp.asarray(lws), "lambda_H": jnp.asarray(lhs)},
                          gtol=GTOL, max_steps=MAX_STEPS)
        sols = jax.tree.map(np.asarray, jax.block_until_ready(sols))
        rows = []
        for k, (lw, lh) in enumerate(zip(lws, lhs)):
            p = _problem(bias, float(lw), float(lh))
            quantities = ("value", "norm_W_sq", "gram_W", "gram_means", "W_means", "nc2_W", "bias")
            r = _judge(p, jax.tree.map(lambda x: x[k], sols), quantities)
            r.update(lambda_W=float(lw), lambda_H=float(lh),
                     K_tau=K * math.sqrt(N_PER_CLASS * lw * lh))
            rows.append(r)
        key = "free bias" if bias else "no bias"
        out[key] = rows
        out[f"solve_seconds {key}"] = time.perf_counter() - t0
    return out


def part_a(b: dict) -> dict:
    """OF (no bias) and ETF (free bias): the diagonal grid point nearest λ = LAM_GRAM of (b)."""
    out = {}
    for key in ("no bias", "free bias"):
        diag = [r for r in b[key] if r["lambda_W"] == r["lambda_H"]]
        out[key] = min(diag, key=lambda r: abs(math.log(r["lambda_W"] / LAM_GRAM)))
    return out


def part_c(dims, lam: float) -> dict:
    """d < K: value and the spectrum of W Wᵀ against d, both bias settings."""
    out = {}
    for bias in (False, True):
        rows = []
        for d in dims:
            if bias and d > K - 1:  # free bias: d ≥ K − 1 is part (a)'s ETF
                continue
            p = _problem(bias, lam, lam, dim=d)
            sol = ufm.certified_solve(p, ufm.solvers.LBFGS(),
                                      p.init(jax.random.key(SEED + d), INIT_SCALE),
                                      gtol=GTOL, max_steps=MAX_STEPS)
            r = _judge(p, sol, ("value", "norm_W_sq", "gram_W_spectrum"))
            spec = np.sort(np.linalg.eigvalsh(np.asarray(sol.params.W @ sol.params.W.T)))[::-1]
            rho = float(norm_W_sq_theory(K, N_PER_CLASS, lam, lam, bias, dim=K) / (K - 1 if bias else K))
            r.update(dim=d, spectrum=spec, rho_W=rho,
                     rank=int(np.sum(spec > 1e-6 * rho)),
                     rank_theory=min(d, K - 1 if bias else K),
                     value_closed_form=value_theory(K, N_PER_CLASS, lam, d, bias))
            r["errors"]["value_vs_script_formula"] = _rel(r["value_closed_form"], r["measured"]["value"])
            rows.append(r)
        out["free bias" if bias else "no bias"] = rows
    return out


def figure(a: dict, b: dict, c: dict, lam_c: float, path: Path) -> None:
    fig = plt.figure(figsize=(15, 6.6), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[0.62, 1.0])
    axes = top.subplots(1, 8)
    for j, (name, r) in enumerate(a.items()):
        for i, (q, sym) in enumerate((("gram_W", "W Wᵀ"), ("gram_means", "H̄ᵀH̄"))):
            for s, (src, G) in enumerate((("solver", r["measured"][q]), ("theory", r["theory"][q]))):
                ax = axes[4 * j + 2 * i + s]
                plots.gram_heatmap(ax, G, f"{sym}, {src}", colorbar=False, fmt="{:.3f}")
                ax.set_xticks([]), ax.set_yticks([])
        top.text(0.25 + 0.5 * j, 0.99, f"({'a' if j == 0 else 'a′'}) {name}: "
                 f"{'orthogonal frame' if j == 0 else 'simplex ETF'}, max rel. error "
                 f"{max(r['errors'][q] for q in ('gram_W', 'gram_means')):.0e}",
                 ha="center", va="top", fontsize=10)
    top.suptitle(" ", fontsize=6)

    ax_ph, ax_dg, ax_F, ax_sp = bottom.subplots(1, 4, width_ratios=[1.25, 1, 1, 1])
    lam = np.asarray(b["lambdas"])
    rows = b["no bias"]
    Z = np.array([r["measured"]["norm_W_sq"] for r in rows]).reshape(len(lam), len(lam))
    edges = np.sqrt(lam[1:] * lam[:-1])
    edges = np.concatenate([[lam[0] ** 2 / edges[0]], edges, [lam[-1] ** 2 / edges[-1]]])
    mesh = ax_ph.pcolormesh(edges, edges, Z.T, cmap="viridis", shading="flat")
    bottom.colorbar(mesh, ax=ax_ph, label="solver ‖W‖²")
    fine = np.geomspace(edges[0], edges[-1], 300)
    FW, FH = np.meshgrid(fine, fine, indexing="ij")
    T = norm_W_sq_theory(K, N_PER_CLASS, FW, FH, bias=False)
    levels = np.nanmax(Z) * np.array([0.1, 0.3, 0.6])
    cs = ax_ph.contour(FW, FH, T, levels=levels, colors="white", linewidths=0.8, linestyles=":")
    ax_ph.clabel(cs, fmt="%.2g", fontsize=7)
    ax_ph.plot(fine, P_STAR / fine, color=COLORS[1], lw=2.2, label="theory: λ_W λ_H = 1/(K²n)")
    ax_ph.set(xscale="log", yscale="log", xlim=(edges[0], edges[-1]), ylim=(edges[0], edges[-1]),
              xlabel="λ_W", ylabel="λ_H",
              title="(b) collapse threshold, no bias (dotted: theory ‖W‖²)")
    ax_ph.legend(loc="upper right", fontsize=8, framealpha=0.9)

    xt = np.geomspace(lam[0], lam[-1], 300)
    for j, key in enumerate(("no bias", "free bias")):
        diag = [r for r in b[key] if r["lambda_W"] == r["lambda_H"]]
        plots.theory_vs_solver(ax_dg, [r["lambda_W"] for r in diag],
                               norm_W_sq_theory(K, N_PER_CLASS, xt, xt, key == "free bias"),
                               [r["measured"]["norm_W_sq"] for r in diag], "", x_theory=xt,
                               color=COLORS[2 * j])
    ax_dg.axvline(math.sqrt(P_STAR), color=COLORS[1], ls="--", lw=1.2)
    ax_dg.text(math.sqrt(P_STAR), 0.95, " Kτ = 1", color=COLORS[1], transform=ax_dg.get_xaxis_transform(),
               va="top", fontsize=8)
    ax_dg.set(xlabel="λ = λ_W = λ_H", ylabel="‖W‖²", title="(b) diagonal λ_W = λ_H")
    ax_dg.grid(alpha=0.3)

    dd = np.arange(1, K + 2)
    for j, (name, rs) in enumerate(c.items()):
        col, bias = COLORS[2 * j], name == "free bias"
        d = np.array([r["dim"] for r in rs])
        ax_F.plot(dd, [value_theory(K, N_PER_CLASS, lam_c, int(q), bias) for q in dd],
                  "-", color=col, lw=1.5, drawstyle="steps-mid")
        ax_F.plot(d, [r["measured"]["value"] for r in rs], "o", mfc="none", color=col, ms=7)
        ax_sp.plot(dd, np.minimum(dd, K - 1 if bias else K), "-", color=col, lw=1.5,
                   drawstyle="steps-mid")
        ax_sp.plot(d, [r["rank"] for r in rs], "o", mfc="none", color=col, ms=7)
    for ax in (ax_F, ax_sp):
        ax.axvline(K - 1, color="0.5", ls=":", lw=1)
        ax.axvline(K, color="0.5", ls=":", lw=1)
        ax.set_xticks(dd)
        ax.grid(alpha=0.3)
    ax_F.set(xlabel="feature dimension d", ylabel="F*", title=f"(c) value against d (λ = {lam_c:g})")
    ax_sp.set(xlabel="feature dimension d", ylabel="rank of W Wᵀ",
              title="(c) rank of W Wᵀ against d")
    ax_sp.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax_sp.set_ylim(0.5, K + 1.4)  # room for the note above the curves
    err = max(r["errors"]["gram_W_spectrum"] for rs in c.values() for r in rs)
    ax_sp.text(0.03, 0.97, f"theory: min(d, K); min(d, K−1) with bias\n"
               f"nonzero eigenvalues = ρ_W (max rel. err. {err:.0e})",
               transform=ax_sp.transAxes, ha="left", va="top", fontsize=8)
    ax_dg.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    handles = [plt.Line2D([], [], color=COLORS[0], lw=1.5), plt.Line2D([], [], color=COLORS[2], lw=1.5),
               plt.Line2D([], [], color="0.3", lw=1.5),
               plt.Line2D([], [], color="0.3", marker="o", mfc="none", ls="")]
    ax_dg.legend(handles, ["no bias", "free bias", "theory", "certified L-BFGS"], fontsize=8,
                 loc="lower left")
    lam_a = a["no bias"]["lambda_W"]
    fig.suptitle(f"MSE UFM, K = {K}, n = {N_PER_CLASS}, d = {DIM} (top: λ_W = λ_H = {lam_a:.3g}): "
                 "solver against the closed forms", fontsize=11)
    try:
        io.save_figure(path, fig, with_pdf=True)
    finally:
        plt.close(fig)


def replot(data: dict, path: Path) -> None:
    """Redraw the figure from a saved mse.json."""
    figure(data["frames"], data["phase"], data["partial_rank"], data["config"]["lambda_partial"], path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/mse", help="output directory")
    parser.add_argument("--quick", action="store_true", help="4×4 phase grid, d ∈ {2, 4} (a smoke run)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    steps, h = (4, 0.5) if args.quick else (10, 0.25)
    dims = (2, 4) if args.quick else (1, 2, 3, 4, 5)
    lam_c = LAM_GRAM
    b = part_b(steps, h)
    a = part_a(b)
    t_b = time.perf_counter()
    c = part_c(dims, lam_c)
    print(f"parts: (a, b) {t_b - start:.1f} s, (c) {time.perf_counter() - t_b:.1f} s")
    seconds = time.perf_counter() - start
    every = b["no bias"] + b["free bias"] + [r for rs in c.values() for r in rs]
    max_err = {q: max(r["errors"].get(q, 0.0) for r in every)
               for q in ("value", "norm_W_sq", "gram_W", "gram_means", "gram_W_spectrum")}
    phase_ok = all((r["measured"]["norm_W_sq"] > 1e-8) == (r["K_tau"] < 1)
                   for r in b["no bias"] + b["free bias"])
    summary = dict(max_rel_errors=max_err,
                   all_converged=all(r["status"] == "converged" for r in every),
                   all_compare_ok=all(r["compare_ok"] for r in every),
                   phase_boundary_ok=phase_ok,
                   ranks_ok=all(r["rank"] == r["rank_theory"] for rs in c.values() for r in rs),
                   threshold_P_star=P_STAR, num_points=len(every))
    summary["agree"] = bool(summary["all_converged"] and summary["all_compare_ok"] and phase_ok
                            and summary["ranks_ok"] and max(max_err.values()) <= 1e-8)
    io.save_json(out / "mse.json", dict(
        claim="MSE UFM: orthogonal frame without bias, simplex ETF with a free bias; W ≠ 0 iff "
              "λ_W λ_H < 1/(K² n); for d < K the spectrum of W Wᵀ is ρ_W on min(d, K) (K−1 with bias) "
              "directions",
        config=dict(num_classes=K, num_per_class=N_PER_CLASS, dim=DIM, lambda_gram=LAM_GRAM,
                    phase_steps=steps, phase_log10_step=h, dims=list(dims), lambda_partial=lam_c,
                    seed=SEED, init_scale=INIT_SCALE, gtol=GTOL, max_steps=MAX_STEPS, solver="LBFGS",
                    quick=bool(args.quick)),
        summary=summary, frames=a, phase=b, partial_rank=c, seconds=seconds))
    figure(a, b, c, lam_c, out / "mse.png")
    print(f"mse: {len(every)} certified points in {seconds:.1f} s; max relative errors "
          + ", ".join(f"{q} {e:.1e}" for q, e in max_err.items())
          + f"; converged {summary['all_converged']}, compare {summary['all_compare_ok']}, "
          f"phase boundary {phase_ok}, ranks {summary['ranks_ok']}")
    print(f"wrote {out / 'mse.json'}, {out / 'mse.png'}, {out / 'mse.pdf'}")
    return 0 if summary["agree"] else 1


if __name__ == "__main__":
    sys.exit(main())
