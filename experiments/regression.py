"""Neural regression collapse: three regimes as c = N λ_W λ_H crosses the target eigenvalues.

Claim (Andriopoulos et al., NeurIPS 2024, converted to ufm's normalisation; docs/theory/regression.md):
for the regression UFM with targets whose centred covariance Σ has eigenvalues λ_1 < … < λ_t, the
minimiser has W Wᵀ = √(Nλ_H/λ_W) Σ_j (√λ_j − √c)_+ u_j u_jᵀ with c = N λ_W λ_H: full rank for
c < λ_min, rank #{j : λ_j > c} for λ_min ≤ c < λ_max, and W = H = 0 for c ≥ λ_max;
F* = Σ_j φ(λ_j) with φ(λ) = √(cλ) − c/2 for λ > c and λ/2 otherwise. At the minimiser NRC1 =
NRC2 = 0, and NRC3 = 0 (with γ̂ = c) for c < λ_min; in the partial-rank regime NRC3 > 0 even at
the exact optimum.

The targets come from ``ufm.problems.regression.synthetic_targets``, so Σ has exactly the chosen
spectrum and the thresholds c = λ_j sit where they are drawn. λ_W = λ_H = λ is swept in one
vmapped, compiled L-BFGS solve (no grid point on an eigenvalue, where the minimum is degenerate);
every point is judged by ``ufm.compare`` (second-order certificate). The figure shows F*, the
singular values of W and NRC1-3 against c, theory as smooth curves, solver points, and the
eigenvalues as vertical lines. The theory NRC3 curve is computed here from its definition on the
closed-form spectrum (a bounded 1-D minimisation over γ), not by the library.

Usage:
    python experiments/regression.py [--out DIR] [--quick]

Writes DIR/regression.json, DIR/regression.png and DIR/regression.pdf (default DIR: results/regression/).
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
from ufm.problems.regression import synthetic_targets  # noqa: E402
from ufm.sweep import vmap_solve  # noqa: E402

N, DIM = 20, 4
SPECTRUM = (0.25, 1.0, 4.0)  # λ_1 < λ_2 < λ_3 of the centred target covariance
TARGET_MEAN = (1.0, -0.5, 2.0)
SEED = 0
INIT_SCALE = 0.5
GTOL = 1e-12
MAX_STEPS = 50_000
COLORS = plots.OKABE_ITO
FLOOR = 1e-20  # where exact zeros are drawn on the log axis of the NRC panel


def value_theory(c):
    """F*(c) = Σ_j φ(λ_j), φ(λ) = √(cλ) − c/2 if λ > c else λ/2 (vectorised over c)."""
    c = np.asarray(c, float)[..., None]
    lam = np.asarray(SPECTRUM)
    return np.where(lam > c, np.sqrt(c * lam) - c / 2, lam / 2).sum(-1)


def singular_values_theory(c, lam_W, lam_H):
    """σ_j(W) = (√(Nλ_H/λ_W) (√λ_j − √c)_+)^{1/2}, largest first, [..., t]."""
    s = np.maximum(np.sqrt(np.asarray(SPECTRUM))[::-1] - np.sqrt(np.asarray(c, float))[..., None], 0)
    return np.sqrt(np.sqrt(N * np.asarray(lam_H)[..., None] / np.asarray(lam_W)[..., None]) * s)


def nrc3_theory(c: float) -> tuple[float, float]:
    """NRC3 at the closed-form minimiser, from its definition: min over γ ∈ [0, λ_min] of
    ‖ŝ − b̂_γ‖², with s_j = (√λ_j − √c)_+ and b_γ,j = √λ_j − √γ (W Wᵀ and B_γ share the
    eigenvectors u_j). Golden-section search after a coarse scan. Returns (NRC3, γ̂)."""
    root = np.sqrt(np.asarray(SPECTRUM))
    s = np.maximum(root - math.sqrt(c), 0.0)
    if not s.any():
        return math.nan, math.nan
    s = s / np.linalg.norm(s)

    def f(g):
        b = root - math.sqrt(g)
        return float(np.sum((s - b / np.linalg.norm(b)) ** 2))

    hi = min(SPECTRUM) * (1 - 1e-12)
    grid = np.linspace(0.0, hi, 401)
    k = int(np.argmin([f(g) for g in grid]))
    a, b = grid[max(k - 1, 0)], grid[min(k + 1, len(grid) - 1)]
    ratio = (math.sqrt(5) - 1) / 2
    for _ in range(200):
        x1, x2 = b - ratio * (b - a), a + ratio * (b - a)
        a, b = (a, x2) if f(x1) < f(x2) else (x1, b)
    g = 0.5 * (a + b)
    return f(g), g


def run(cs: np.ndarray) -> dict:
    Y = synthetic_targets(SEED, N, SPECTRUM, mean=TARGET_MEAN)
    lam = np.sqrt(cs / N)  # λ_W = λ_H = λ, c = N λ²
    base = ufm.RegressionUFM(Y, DIM, float(lam[0]), float(lam[0]))
    t0 = time.perf_counter()
    sols = vmap_solve(base, ufm.solvers.LBFGS(), base.init(jax.random.key(SEED), INIT_SCALE),
                      {"lambda_W": jnp.asarray(lam), "lambda_H": jnp.asarray(lam)},
                      gtol=GTOL, max_steps=MAX_STEPS)
    sols = jax.tree.map(np.asarray, jax.block_until_ready(sols))
    seconds = time.perf_counter() - t0
    rows = []
    for k, (c, l) in enumerate(zip(cs, lam)):
        p = ufm.RegressionUFM(Y, DIM, float(l), float(l))
        sol = jax.tree.map(lambda x: x[k], sols)
        pred = ufm.theory.predict(p)
        report = ufm.compare(p, sol, pred)
        meas = ufm.metrics.measure(p, sol.params)
        sv = np.linalg.svd(np.asarray(sol.params.W), compute_uv=False)[:len(SPECTRUM)]
        sv_th = singular_values_theory(c, l, l)
        nrc3, gamma = nrc3_theory(float(c))
        rows.append(dict(
            c=float(c), lam=float(l), regime=pred.regime, rank_theory=int(np.sum(np.asarray(SPECTRUM) > c)),
            value=float(meas["value"]), value_theory=float(value_theory(c)),
            singular_values=sv, singular_values_theory=sv_th,
            nrc1=float(meas["nrc1"]), nrc2=float(meas["nrc2"]), nrc3=float(meas["nrc3"]),
            nrc3_gamma=float(meas["nrc3_gamma"]), nrc3_theory=nrc3, nrc3_gamma_theory=gamma,
            errors=dict(value=abs(float(meas["value"]) - float(value_theory(c))) / float(value_theory(c)),
                        value_vs_predict=abs(float(meas["value"]) - pred.value) / pred.value,
                        singular_values=float(np.linalg.norm(sv - sv_th) / max(np.linalg.norm(sv_th), 1e-300))
                        if np.any(sv_th > 0) else float(np.linalg.norm(sv)),
                        nrc3=abs(float(meas["nrc3"]) - nrc3) / nrc3 if nrc3 > 1e-12 else
                        (abs(float(meas["nrc3"])) if math.isfinite(nrc3) else 0.0)),
            compare_ok=report.ok, failures=[r.quantity for r in report.failures()],
            status=sol.status_name, num_steps=int(sol.num_steps), grad_norm=float(sol.grad_norm)))
    return dict(rows=rows, solve_seconds=seconds)


def figure(res: dict, path: Path) -> None:
    rows = res["rows"]
    c = np.array([r["c"] for r in rows])
    ct = np.geomspace(c[0] / 1.5, c[-1] * 1.5, 500)
    fig, (ax_F, ax_s, ax_n) = plt.subplots(1, 3, figsize=(14, 4.3), layout="constrained")
    plots.theory_vs_solver(ax_F, c, value_theory(ct), [r["value"] for r in rows], "", x_theory=ct,
                           color=COLORS[0])
    ax_F.axhline(sum(SPECTRUM) / 2, color="0.5", lw=0.8, ls=":")
    ax_F.text(0.02, sum(SPECTRUM) / 2, "tr Σ / 2 (W = 0)", va="top", ha="left", fontsize=8,
              color="0.4", transform=ax_F.get_yaxis_transform())
    ax_F.set(xlabel="c = N λ_W λ_H", ylabel="F*", title="value")
    sv_t = singular_values_theory(ct, np.sqrt(ct / N), np.sqrt(ct / N))
    sv = np.array([r["singular_values"] for r in rows])
    for j in range(len(SPECTRUM)):
        ax_s.plot(ct, sv_t[:, j], "-", color=COLORS[j], lw=1.5)
        ax_s.plot(c, sv[:, j], "o", mfc="none", color=COLORS[j], ms=6)
    ax_s.set(xscale="log", xlabel="c = N λ_W λ_H", ylabel="singular values σ_j(W)",
             title="head W: one direction drops at each eigenvalue")
    live = [r for r in rows if r["regime"] != "zero"]  # at W = H = 0 the NRCs are undefined
    for q, col, mk in (("nrc1", COLORS[3], "s"), ("nrc2", COLORS[4], "^"), ("nrc3", COLORS[2], "o")):
        ax_n.plot([r["c"] for r in live], np.maximum([r[q] for r in live], FLOOR), mk, mfc="none",
                  color=col, ms=6, label=f"{q.upper()} solver")
    th = np.array([nrc3_theory(float(x))[0] for x in ct])
    ax_n.plot(ct, np.where(np.isfinite(th), np.maximum(th, FLOOR), np.nan), "-", color=COLORS[2], lw=1.5,
              label="NRC3 theory")
    ax_n.axhline(FLOOR, color="0.3", lw=1.5, label="NRC1 = NRC2 = 0 theory")
    ax_n.set(xscale="log", yscale="log", xlabel="c = N λ_W λ_H", ylabel="NRC (exact 0 drawn at 1e-20)",
             title="NRC1-3 at the minimiser", ylim=(FLOOR / 10, 1))
    ax_n.legend(fontsize=8, loc="center left")
    for ax in (ax_F, ax_s, ax_n):
        for j, lam in enumerate(SPECTRUM):
            ax.axvline(lam, color="0.55", ls="--", lw=0.9)
            ax.text(lam, 0.99, f" λ_{j + 1}", transform=ax.get_xaxis_transform(), va="top", fontsize=8,
                    color="0.35")
        ax.axvspan(max(SPECTRUM), ct[-1], color="0.9", zorder=0)
        ax.grid(alpha=0.3)
        ax.set_xlim(ct[0], ct[-1])
    ax_n.text(0.99, 0.5, "W = H = 0:\nundefined", transform=ax_n.transAxes, ha="right",
              fontsize=8, color="0.35")
    handles = [plt.Line2D([], [], color="0.3", lw=1.5),
               plt.Line2D([], [], color="0.3", marker="o", mfc="none", ls=""),
               plt.Line2D([], [], color="0.55", ls="--", lw=0.9)]
    ax_F.legend(handles, ["theory", "L-BFGS (certified by compare)", "eigenvalues λ_j of Σ"],
                fontsize=8, loc="lower right")
    fig.suptitle(f"Regression UFM, N = {N}, t = {len(SPECTRUM)}, d = {DIM}, λ_W = λ_H, spec Σ = "
                 f"{list(SPECTRUM)}: full rank, partial rank, zero", fontsize=11)
    try:
        io.save_figure(path, fig, with_pdf=True)
    finally:
        plt.close(fig)


def replot(data: dict, path: Path) -> None:
    """Redraw the figure from a saved regression.json."""
    figure(data["results"], path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/regression", help="output directory")
    parser.add_argument("--quick", action="store_true", help="one c per regime (a smoke run)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    if args.quick:
        cs = np.array([0.08, 0.5, 2.0, 6.0])
    else:
        # log grid, every point at least 10% away from an eigenvalue (degenerate minimum there)
        cs = np.geomspace(0.02, 10.0, 18)
        cs = cs[np.min(np.abs(np.log(cs[:, None] / np.asarray(SPECTRUM)[None, :])), axis=1) > 0.1]
    res = run(cs)
    seconds = time.perf_counter() - start
    rows = res["rows"]
    keys = ("value", "value_vs_predict", "singular_values", "nrc3")
    max_err = {q: max(r["errors"][q] for r in rows) for q in keys}
    full = [r for r in rows if r["c"] < min(SPECTRUM)]
    summary = dict(
        max_rel_errors=max_err, all_converged=all(r["status"] == "converged" for r in rows),
        all_compare_ok=all(r["compare_ok"] for r in rows),
        regimes=sorted({r["regime"] for r in rows}),
        max_nrc1_nrc2=max(max(r["nrc1"], r["nrc2"]) for r in rows if r["regime"] != "zero"),
        max_nrc3_gamma_rel_error_full_rank=max((abs(r["nrc3_gamma"] - r["c"]) / r["c"] for r in full),
                                               default=None))
    summary["agree"] = bool(summary["all_converged"] and summary["all_compare_ok"]
                            and max(max_err.values()) <= 1e-8 and summary["max_nrc1_nrc2"] <= 1e-12)
    io.save_json(out / "regression.json", dict(
        claim="regression UFM: W Wᵀ = √(Nλ_H/λ_W)(Σ^{1/2} − √c I)_+, rank drops at each eigenvalue "
              "c = λ_j, W = 0 for c ≥ λ_max; NRC1 = NRC2 = 0, NRC3 = 0 only for c < λ_min",
        config=dict(num_samples=N, dim=DIM, spectrum=list(SPECTRUM), target_mean=list(TARGET_MEAN),
                    c=cs.tolist(), seed=SEED, init_scale=INIT_SCALE, gtol=GTOL, max_steps=MAX_STEPS,
                    solver="LBFGS", quick=bool(args.quick)),
        summary=summary, results=res, seconds=seconds))
    figure(res, out / "regression.png")
    print(f"regression: {len(rows)} points in {seconds:.1f} s; max relative errors "
          + ", ".join(f"{q} {e:.1e}" for q, e in max_err.items())
          + f"; max NRC1/2 {summary['max_nrc1_nrc2']:.1e}; converged {summary['all_converged']}, "
          f"compare {summary['all_compare_ok']}")
    print(f"wrote {out / 'regression.json'}, {out / 'regression.png'}, {out / 'regression.pdf'}")
    return 0 if summary["agree"] else 1


if __name__ == "__main__":
    sys.exit(main())
