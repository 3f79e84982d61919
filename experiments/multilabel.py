"""Multi-label neural collapse: the tag-wise factor ρ_m against λ (Li, Li, Wang & Qu, ICML 2024).

Claim (docs/theory/multilabel.md): under the pick-all-label loss, with data balanced within each
multiplicity m (every label set of size m occurs n_m times), a sample with label set S has the
feature h_S = ρ_{|S|} · mean_{k∈S} h_{{k}}, the classifier is a simplex ETF and b = 0 (λ_b > 0).
The tag-wise factor ρ_m = m β_m/β_1 comes from the scalar system (A_m), (B) solved by nested
bisection; it is < m and tends to m only logarithmically as λ → 0. A non-zero minimiser exists
iff λ_W λ_H < P* = Σ_m n_m C(K−2, m−1)/N².

For two label configurations (K = 4 with m ∈ {1, 2}; K = 5 with m ∈ {1, 2, 3}) λ = λ_W = λ_H = λ_b
is swept in one vmapped, compiled L-BFGS solve per configuration; every point is judged by
``ufm.compare`` (second-order certificate), and ρ̂_m is measured on the solver's features
(mean_{|S|=m} ⟨h̄_S, ā_S⟩/‖ā_S‖²). The figure draws ρ_m(λ) from the closed form as a smooth curve,
the solver points, the bound ρ_m = m and the threshold λ* = √P*.

Usage:
    python experiments/multilabel.py [--out DIR] [--quick]

Writes DIR/multilabel.json, DIR/multilabel.png and DIR/multilabel.pdf (default DIR: results/multilabel/).
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

# name -> (K, counts_by_size {m: n_m}); d = K
CONFIGS = {"K = 4, m ∈ {1, 2}": (4, {1: 1, 2: 1}), "K = 5, m ∈ {1, 2, 3}": (5, {1: 1, 2: 1, 3: 1})}
SEED = 0
INIT_SCALE = 0.5
GTOL = 1e-12
MAX_STEPS = 20_000
COLORS = plots.OKABE_ITO
MARKERS = {2: "o", 3: "s"}


def _problem(K: int, counts: dict, lam: float) -> ufm.MultiLabelUFM:
    return ufm.MultiLabelUFM.balanced(K, counts, K, ufm.losses.PickAllLabel(), lam, lam, lambda_b=lam)


def rho_theory(K: int, counts: dict, lams) -> dict:
    """ρ_m(λ) for every m ≥ 2 of the configuration, from ``ufm.theory.predict`` (the closed-form
    scalar system; no solver involved)."""
    out = {str(m): [] for m in counts if m >= 2}
    for lam in lams:
        s = ufm.theory.predict(_problem(K, counts, float(lam))).scalars
        for m in out:
            out[m].append(s[f"rho_{m}"])
    return out


def run(name: str, lams: np.ndarray) -> dict:
    K, counts = CONFIGS[name]
    base = _problem(K, counts, float(lams[0]))
    t0 = time.perf_counter()
    sols = vmap_solve(base, ufm.solvers.LBFGS(), base.init(jax.random.key(SEED), INIT_SCALE),
                      {"lambda_W": jnp.asarray(lams), "lambda_H": jnp.asarray(lams),
                       "lambda_b": jnp.asarray(lams)}, gtol=GTOL, max_steps=MAX_STEPS)
    sols = jax.tree.map(np.asarray, jax.block_until_ready(sols))
    seconds = time.perf_counter() - t0
    ms = [m for m in counts if m >= 2]
    rows = []
    for k, lam in enumerate(lams):
        p = _problem(K, counts, float(lam))
        sol = jax.tree.map(lambda x: x[k], sols)
        pred = ufm.theory.predict(p)
        report = ufm.compare(p, sol, pred)
        meas = ufm.metrics.measure(p, sol.params)
        rho = {str(m): float(meas[f"rho_{m}"]) for m in ms}
        rho_th = {str(m): float(pred.scalars[f"rho_{m}"]) for m in ms}
        rows.append(dict(
            lam=float(lam), regime=pred.regime, rho=rho, rho_theory=rho_th,
            value=float(meas["value"]), value_theory=pred.value,
            errors=dict(value=abs(float(meas["value"]) - pred.value) / pred.value,
                        rho=max(abs(rho[m] - rho_th[m]) / rho_th[m] for m in rho),
                        gram_W=float(np.linalg.norm(np.asarray(meas["gram_W"]) - pred["gram_W"])
                                     / np.linalg.norm(pred["gram_W"]))),
            compare_ok=report.ok, failures=[r.quantity for r in report.failures()],
            status=sol.status_name, num_steps=int(sol.num_steps), grad_norm=float(sol.grad_norm)))
    threshold = ufm.theory.threshold(base)
    return dict(K=K, counts={str(m): n for m, n in counts.items()}, dim=K, rows=rows,
                threshold_P_star=threshold, lambda_star=math.sqrt(threshold), solve_seconds=seconds)


def figure(results: dict, curves: dict, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6.4, 4.4), layout="constrained")
    handles, labels = [], []
    for j, (name, res) in enumerate(results.items()):
        col = COLORS[j]
        lam = [r["lam"] for r in res["rows"]]
        for m, curve in curves[name]["rho"].items():
            mk = MARKERS.get(int(m), "D")
            ax.plot(curves[name]["lam"], curve, "-", color=col, lw=1.6)
            (pts,) = ax.plot(lam, [r["rho"][m] for r in res["rows"]], mk, mfc="none", color=col,
                             ms=7, ls="")
            handles.append(pts)
            labels.append(f"ρ_{m}, {name}")
        ax.axvline(res["lambda_star"], color=col, ls="--", lw=1)
        ax.text(res["lambda_star"], 0.02, f" λ* ", color=col, transform=ax.get_xaxis_transform(),
                ha="right" if j == 0 else "left", fontsize=8)
    for m in (2, 3):
        if any(str(m) in c["rho"] for c in curves.values()):
            ax.axhline(m, color="0.5", ls=":", lw=1)
            ax.text(0.01, m, f"bound ρ_{m} < {m}", va="bottom", fontsize=8, color="0.4",
                    transform=ax.get_yaxis_transform())
    handles += [plt.Line2D([], [], color="0.3", lw=1.6), plt.Line2D([], [], color="0.3", ls="--", lw=1)]
    labels += ["theory (closed-form system)", "threshold λ* = √P*"]
    ax.legend(handles, labels, fontsize=8, loc="best", framealpha=0.9)
    ax.set(xscale="log", xlabel="λ = λ_W = λ_H = λ_b", ylabel="tag-wise factor ρ_m",
           title="Multi-label UFM (PAL loss): h_S = ρ_|S| · mean_{k∈S} h_{k}\n"
                 "lines: closed form; markers: certified L-BFGS")
    ax.grid(alpha=0.3)
    try:
        io.save_figure(path, fig, with_pdf=True)
    finally:
        plt.close(fig)


def replot(data: dict, path: Path) -> None:
    """Redraw the figure from a saved multilabel.json."""
    figure(data["results"], data["curves"], path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/multilabel", help="output directory")
    parser.add_argument("--quick", action="store_true", help="K = 4 only, 3 values of λ (a smoke run)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    names = list(CONFIGS)[:1] if args.quick else list(CONFIGS)
    results, curves = {}, {}
    for name in names:
        K, counts = CONFIGS[name]
        lam_star = math.sqrt(ufm.theory.threshold(_problem(K, counts, 1e-3)))
        lams = (np.geomspace(1e-3, 0.8 * lam_star, 3) if args.quick
                else np.geomspace(1e-4, 0.9 * lam_star, 10))
        results[name] = run(name, lams)
        fine = np.geomspace(lams[0] / 1.5, lam_star * (1 - 1e-6), 80 if args.quick else 160)
        curves[name] = dict(lam=fine, rho=rho_theory(K, counts, fine))
    seconds = time.perf_counter() - start
    rows = [r for res in results.values() for r in res["rows"]]
    max_err = {q: max(r["errors"][q] for r in rows) for q in ("value", "rho", "gram_W")}
    summary = dict(max_rel_errors=max_err, all_converged=all(r["status"] == "converged" for r in rows),
                   all_compare_ok=all(r["compare_ok"] for r in rows),
                   rho_below_m=all(v < int(m) for r in rows for m, v in r["rho"].items()),
                   lambda_star={n: res["lambda_star"] for n, res in results.items()})
    summary["agree"] = bool(summary["all_converged"] and summary["all_compare_ok"]
                            and summary["rho_below_m"] and max(max_err.values()) <= 1e-8)
    io.save_json(out / "multilabel.json", dict(
        claim="multi-label UFM (PAL): h_S = ρ_|S| mean_{k∈S} h_{k}, ρ_m < m from the closed-form "
              "system (A_m), (B)",
        config=dict(configs={n: dict(K=CONFIGS[n][0], counts_by_size=CONFIGS[n][1], dim=CONFIGS[n][0])
                             for n in names}, lambda_b="= λ", seed=SEED, init_scale=INIT_SCALE,
                    gtol=GTOL, max_steps=MAX_STEPS, solver="LBFGS", quick=bool(args.quick)),
        summary=summary, results=results, curves=curves, seconds=seconds))
    figure(results, curves, out / "multilabel.png")
    print(f"multilabel: {len(rows)} points in {seconds:.1f} s; max relative errors "
          + ", ".join(f"{q} {e:.1e}" for q, e in max_err.items())
          + f"; converged {summary['all_converged']}, compare {summary['all_compare_ok']}")
    print(f"wrote {out / 'multilabel.json'}, {out / 'multilabel.png'}, {out / 'multilabel.pdf'}")
    return 0 if summary["agree"] else 1


if __name__ == "__main__":
    sys.exit(main())
