"""Extended and deep UFMs: a first-order jump at the two-layer threshold, restarts, per-layer collapse.

Claim (Tirer & Bruna, ICML 2022, the extended UFM W₂σ(W₁H₁); Dang et al., ICML 2023, deep
linear; Súkeník et al., NeurIPS 2023, deep neural collapse; docs/theory/deep.md). With equal
decays λ and κ = K n^{1/(L+1)} λ, the bias-free deep MSE UFM reduces to
ψ(σ) = (1 − σ)²/2 + ((L+1)/2) κ σ^{2/(L+1)} per output direction. For L ≥ 2 the origin is always a
local minimum, a collapsed local minimum exists for κ < κ_max, and it is the global one for
κ < κ*; at κ* the minimiser jumps from σ* = (L−1)/L to 0. At L = 2: κ* = 2^{−4/3} ≈ 0.39685 and
κ_max = 3·4^{−4/3} ≈ 0.47247. The two-layer ReLU (extended) UFM has the deep-linear optimum.

For K = 3, n = 2 the script solves the extended ReLU UFM (widths 8, 8) and the two-layer deep
linear UFM (widths 4, 4) on a κ grid across both thresholds, from seeds × init scales L-BFGS
restarts (one compiled program per model, :func:`ufm.sweep.multi_start`; the smallest scale
starts near the origin, the local minimum that is global past κ*), and compares the best run with
the closed form. It reports the fraction of restarts that reach the global value (rtol 1e-8), the
distinct final values (every run ends on a partial-rank critical value
f_r = (r ψ(σ_loc) + (K − r)/2)/K), and deep neural collapse layer by layer (DNC1-3) at one κ below
the threshold, for a three-layer deep linear UFM and the extended UFM.

Figure: (a) F* and (b) ‖W₂‖² against κ (theory: the global minimum as a smooth curve, the
metastable collapsed branch dotted; markers: best of the restarts), (c) the fraction of restarts
reaching the global value, (d) the final values of all restarts at one κ with the levels f_r,
(e) DNC1-3 by layer; κ* and κ_max marked throughout.

Usage:
    python experiments/deep_threshold.py [--out DIR] [--quick]

Writes DIR/deep_threshold.json, .png and .pdf (default DIR: results/deep_threshold/).
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
import numpy as np  # noqa: E402

import ufm  # noqa: E402
from ufm import io  # noqa: E402
from ufm.sweep import best, multi_start, reach_fraction, summarize  # noqa: E402
from ufm.theory import deep as td  # noqa: E402

# Okabe-Ito, colour-blind safe.
OKABE_ITO = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")
K, N_PER_CLASS = 3, 2
# name -> (widths, activation); the two-layer models of panels (a)-(d).
MODELS = {"extended ReLU": ((8, 8), "relu"), "deep linear": ((4, 4), "identity")}
LAYER_MODELS = {"deep linear, L = 3": ((4, 4, 4), "identity", 0.15),
                "extended ReLU, L = 2": ((8, 8), "relu", 0.20)}
SCALES = (0.1, 0.5, 1.0, 2.0)  # 0.1: near the origin, a local minimum for every κ
RTOL = 1e-8
GTOL = 1e-12
MAX_STEPS = 3000
RESTARTS = 2  # L-BFGS polishing restarts per run (ReLU runs stall at kinks otherwise)
KAPPA_LEVELS = 0.38  # panel (d): between the global collapsed and the zero value


def _problem(kappa: float, widths, activation) -> ufm.DeepUFM:
    L = len(widths)
    lam = kappa / (K * N_PER_CLASS ** (1.0 / (L + 1)))
    return ufm.DeepUFM(K, N_PER_CLASS, widths, ufm.losses.MSE(), lam, lam, bias=False,
                       activation=activation)


def theory_curves(kappas, L: int = 2) -> dict:
    """F*, ‖W_L‖² of the global minimum and of the metastable collapsed branch, from ψ alone.

    λ_l‖W_l‖² = Kθ with θ = (κ/K)σ^p and λ = κ/(K n^{1/(L+1)}), so ‖W_L‖² = K n^{1/(L+1)} σ^p.
    """
    p = 2.0 / (L + 1)
    scale = K * N_PER_CLASS ** (1.0 / (L + 1))
    out = dict(kappa=[], value=[], norm_W_sq=[], value_local=[], norm_W_sq_local=[])
    for k in kappas:
        s = td.sigma_star(float(k), L)
        sl = td.sigma_local(float(k), L)
        out["kappa"].append(float(k))
        out["value"].append(td.psi(s, float(k), L))
        out["norm_W_sq"].append(scale * s ** p)
        out["value_local"].append(td.psi(sl, float(k), L) if not math.isnan(sl) else math.nan)
        out["norm_W_sq_local"].append(scale * sl ** p if not math.isnan(sl) else math.nan)
    return out


def _rel(a, b) -> float:
    return abs(a - b) / abs(b) if b != 0 else abs(a - b)


def run_threshold(kappas, seeds: int) -> dict:
    """Multi-start every model at every κ; best run against the closed form."""
    results = {}
    for name, (widths, act) in MODELS.items():
        rows, t0 = [], time.perf_counter()
        for kappa in kappas:
            prob = _problem(float(kappa), widths, act)
            pred = ufm.theory.predict(prob)
            sols = multi_start(prob, ufm.solvers.LBFGS(), jax.random.key(0), seeds, SCALES,
                               max_steps=MAX_STEPS, gtol=GTOL, restarts=RESTARTS, batching="map")
            sols = jax.block_until_ready(sols)
            summ = summarize(sols, pred.value, RTOL, SCALES)
            top = best(sols)
            meas = ufm.metrics.measure(prob, top.params)
            curve = theory_curves([kappa], len(widths))
            levels = td.partial_rank_values(float(kappa), len(widths), K)
            values = np.asarray(summ.pop("values"))
            # Distance of every final value to the nearest critical level f_r (or 0.5).
            off_level = float(np.max(np.min(np.abs(values[:, None] - levels[None, :]), axis=1)))
            rows.append(dict(
                kappa=float(kappa), regime=pred.regime, predicted_value=pred.value,
                best_value=summ["best_value"], value_rel_error=_rel(summ["best_value"], pred.value),
                predicted_norm_W_sq=float(pred["norm_W2_sq"]),
                measured_norm_W_sq=float(meas["norm_W2_sq"]),
                norm_W_sq_error=_rel(float(meas["norm_W2_sq"]), float(pred["norm_W2_sq"]))
                if pred["norm_W2_sq"] > 0 else float(meas["norm_W2_sq"]),
                # The smooth curve (from ψ alone) against predict() at the same κ.
                curve_vs_predict=max(_rel(curve["value"][0], pred.value),
                                     abs(curve["norm_W_sq"][0] - float(pred["norm_W2_sq"]))),
                reach_fraction=summ["reach_fraction"],
                reach_fraction_per_scale=summ["reach_fraction_per_scale"],
                num_below_target=summ["num_below_target"], num_runs=summ["num_runs"],
                levels_theory=levels.tolist(), max_distance_to_a_level=off_level,
                values=values.tolist(), grad_norm_best=float(top.grad_norm)))
        results[name] = dict(widths=list(widths), activation=act, rows=rows,
                             seconds=time.perf_counter() - t0)
    return results


def run_layers(seeds: int) -> dict:
    """DNC1-3 by layer at the best of the restarts, one κ below the threshold per model."""
    out = {}
    for name, (widths, act, kappa) in LAYER_MODELS.items():
        prob = _problem(kappa, widths, act)
        pred = ufm.theory.predict(prob)
        # The scales of run_threshold: the same compiled program where the model is the same.
        sols = multi_start(prob, ufm.solvers.LBFGS(), jax.random.key(1), seeds, SCALES,
                           max_steps=MAX_STEPS, gtol=GTOL, restarts=RESTARTS, batching="map")
        top = best(jax.block_until_ready(sols))
        meas = ufm.metrics.measure(prob, top.params)
        L = len(widths)
        # Layer-1 frame tests do not apply to ReLU models (first layer not unique).
        first = 1 if act == "identity" else 2
        per = dict(dnc1={l: meas[f"dnc1_{l}"] for l in range(1, L + 1)},
                   dnc2={l: meas[f"dnc2_means_{l}"] for l in range(first, L + 1)},
                   dnc3={l: meas[f"dnc3_spread_{l}"] for l in range(first, L + 1)})
        out[name] = dict(widths=list(widths), activation=act, kappa=kappa,
                         kappa_star=td.kappa_star(L), predicted_value=pred.value,
                         best_value=float(top.value), value_rel_error=_rel(float(top.value), pred.value),
                         grad_norm=float(top.grad_norm), balancedness=float(meas["balancedness"]),
                         nc3_duality=float(meas["nc3_duality"]), dnc2_W=float(meas["dnc2_W"]),
                         per_layer=per,
                         max_dnc=max(v for d in per.values() for v in d.values()))
    return out


def _mark_thresholds(ax, label: bool = False) -> None:
    ks, km = td.kappa_star(2), td.kappa_max(2)
    ax.axvline(ks, color="0.2", ls="--", lw=1, label="κ* = 2^(−4/3)" if label else None)
    ax.axvline(km, color="0.2", ls=":", lw=1.2, label="κ_max = 3·4^(−4/3)" if label else None)


def figure(results: dict, layers: dict, curves: dict, path: Path) -> None:
    colors = {name: c for name, c in zip(MODELS, (OKABE_ITO[1], OKABE_ITO[0]))}
    markers = {"extended ReLU": "o", "deep linear": "s"}
    fig = plt.figure(figsize=(12.5, 7.2), layout="constrained")
    grid = fig.add_gridspec(2, 6)
    ax_f, ax_w, ax_r = (fig.add_subplot(grid[0, 2 * i:2 * i + 2]) for i in range(3))
    ax_l, ax_d = fig.add_subplot(grid[1, :3]), fig.add_subplot(grid[1, 3:])
    k = np.asarray(curves["kappa"])
    for ax, q, ylabel in ((ax_f, "value", "objective F*"), (ax_w, "norm_W_sq", "‖W₂‖²_F")):
        ax.plot(k, curves[q], "-", color="k", lw=1.6, label="theory: global minimum")
        ax.plot(k, curves[f"{q}_local"], ":", color="0.45", lw=1.4, label="theory: collapsed local minimum")
        for name, res in results.items():
            x = [r["kappa"] for r in res["rows"]]
            y = [r["best_value"] if q == "value" else r["measured_norm_W_sq"] for r in res["rows"]]
            ax.plot(x, y, markers[name], color=colors[name], mfc="none", ms=7 if name == "deep linear" else 5,
                    mew=1.3, label=f"{name}: best of restarts")
        _mark_thresholds(ax, label=(ax is ax_f))
        ax.set(xlabel="κ = K n^(1/3) λ", ylabel=ylabel)
    ax_f.set_title("(a) first-order jump of F* at κ*", fontsize=10)
    ax_w.set_title("(b) the classifier jumps to 0 at κ*", fontsize=10)
    for name, res in results.items():
        x = [r["kappa"] for r in res["rows"]]
        ax_r.plot(x, [r["reach_fraction"] for r in res["rows"]], "-" + markers[name], color=colors[name],
                  mfc="none", ms=5)
    _mark_thresholds(ax_r)
    ax_r.set(xlabel="κ = K n^(1/3) λ", ylabel="fraction of restarts at F* (rtol 1e-8)", ylim=(-0.03, 1.03))
    ax_r.set_title(f"(c) restarts reaching the global value ({results['deep linear']['rows'][0]['num_runs']} each)",
                   fontsize=10)
    # (d) all final values at one κ: every run ends on a partial-rank level f_r.
    for j, (name, res) in enumerate(results.items()):
        row = min(res["rows"], key=lambda r: abs(r["kappa"] - KAPPA_LEVELS))
        v = np.asarray(row["values"])
        jitter = np.random.default_rng(j).uniform(-0.25, 0.25, v.size)
        ax_l.plot(j + jitter, v, markers[name], color=colors[name], mfc="none", ms=5, alpha=0.8)
    for r, f in enumerate(row["levels_theory"]):
        ax_l.axhline(f, color="0.5", lw=0.8, ls="-" if r != K else "--")
        ax_l.text(1.45, f, f"f_{r}" + (" = F*" if r == K else ""), va="center", fontsize=8)
    ax_l.set_xticks(range(len(results)), list(results))
    ax_l.set_xlim(-0.5, 1.75)
    ax_l.set(ylabel="final value of each restart")
    ax_l.set_title(f"(d) all restarts at κ = {row['kappa']:g}; levels f_r = (r ψ(σ_loc) + (K−r)/2)/K",
                   fontsize=10)
    # (e) DNC by layer (theory: 0 at every layer).
    metric_style = {"dnc1": ("o", "DNC1 (within-class variability)"),
                    "dnc2": ("^", "DNC2 (distance of the class means to an OF)"),
                    "dnc3": ("D", "DNC3 (singular-value spread of W_l)")}
    lcol = dict(zip(layers, (OKABE_ITO[2], OKABE_ITO[1])))
    floor = 1e-16
    for i, (name, res) in enumerate(layers.items()):
        for m, (mk, _) in metric_style.items():
            ls = sorted(res["per_layer"][m], key=int)
            ax_d.plot([int(l) + 0.08 * (i - 0.5) for l in ls],
                      [max(res["per_layer"][m][l], floor) for l in ls], mk, color=lcol[name], ms=7,
                      mfc="none" if i else lcol[name])
    ax_d.set_yscale("log")
    ax_d.set_ylim(floor / 3, 1)
    ax_d.axhspan(floor / 3, 1e-8, color=OKABE_ITO[2], alpha=0.08, lw=0)
    ax_d.set_xticks([1, 2, 3])
    ax_d.set(xlabel="layer l (input H_l of W_l)", ylabel="DNC metric (theory: 0)")
    ax_d.set_title("(e) DNC1-3 by layer at the best restart (values < 1e-16 drawn at 1e-16)",
                   fontsize=10)
    handles = [plt.Line2D([], [], color="0.3", marker=mk, ls="", mfc="none", label=lab)
               for mk, lab in metric_style.values()]
    handles += [plt.Line2D([], [], color=lcol[n], lw=4, label=f"{n}, κ = {r['kappa']:g}")
                for n, r in layers.items()]
    ax_d.legend(handles=handles, fontsize=7.5, loc="upper right", ncol=1, framealpha=0.9)
    for ax in (ax_f, ax_w, ax_r, ax_l, ax_d):
        ax.grid(True, alpha=0.3)
    fig.legend(*ax_f.get_legend_handles_labels(), loc="outside upper center", ncol=6, fontsize=8.5,
               frameon=False, title=f"Bias-free MSE UFMs, K = {K}, n = {N_PER_CLASS}, equal decays "
               "λ_1 = λ_2 = λ_H = λ (L = 2 unless stated)", title_fontsize=10)
    try:
        for suffix in (".png", ".pdf"):
            io.save_figure(path.with_suffix(suffix), fig, bbox_inches="tight")
    finally:
        plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/deep_threshold", help="output directory")
    parser.add_argument("--quick", action="store_true", help="5 values of κ, 4 seeds (a smoke run)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    ks, km = td.kappa_star(2), td.kappa_max(2)
    if args.quick:
        kappas, seeds = np.array([0.2, 0.36, 0.42, 0.46, 0.55]), 4
    else:
        # Both sides of κ* and of κ_max; no point on a threshold (degenerate minimum there).
        kappas = np.concatenate([np.linspace(0.05, 0.35, 7), [0.375, 0.39, 0.405, 0.42, 0.44, 0.46,
                                                              0.49, 0.52, 0.56]])
        seeds = 16
    curves = theory_curves(np.unique(np.concatenate([np.linspace(0.0, 0.6, 601), [ks - 1e-12, ks]])))
    results = run_threshold(kappas, seeds)
    layers = run_layers(seeds)
    summary = {name: dict(
        max_value_rel_error=max(r["value_rel_error"] for r in res["rows"]),
        max_norm_W_sq_error=max(r["norm_W_sq_error"] for r in res["rows"]),
        max_curve_vs_predict=max(r["curve_vs_predict"] for r in res["rows"]),
        num_below_target=sum(r["num_below_target"] for r in res["rows"]),
        max_distance_to_a_level=max(r["max_distance_to_a_level"] for r in res["rows"]),
        reach_fraction={f"{r['kappa']:g}": r["reach_fraction"] for r in res["rows"]})
        for name, res in results.items()}
    summary["layers"] = {name: dict(value_rel_error=r["value_rel_error"], max_dnc=r["max_dnc"])
                         for name, r in layers.items()}
    ok = (all(s["max_value_rel_error"] <= RTOL and s["num_below_target"] == 0
              and s["max_norm_W_sq_error"] <= 1e-6 for n, s in summary.items() if n != "layers")
          and all(s["value_rel_error"] <= RTOL and s["max_dnc"] <= 1e-6
                  for s in summary["layers"].values()))
    seconds = time.perf_counter() - start
    io.save_json(out / "deep_threshold.json", dict(
        claim="deep MSE UFM: first-order jump at κ* (L = 2: 2^(-4/3)); collapsed local minima up to "
              "κ_max; restarts end on partial-rank levels; deep neural collapse at every layer",
        config=dict(num_classes=K, num_per_class=N_PER_CLASS, bias=False, loss="mse",
                    models={n: dict(widths=w, activation=a) for n, (w, a) in MODELS.items()},
                    layer_models={n: dict(widths=w, activation=a, kappa=k)
                                  for n, (w, a, k) in LAYER_MODELS.items()},
                    kappas=kappas.tolist(), seeds=seeds, scales=SCALES, restarts=RESTARTS,
                    gtol=GTOL, max_steps=MAX_STEPS, rtol=RTOL, solver="LBFGS", quick=bool(args.quick)),
        kappa_star=ks, kappa_max=km, agree=ok, summary=summary, results=results, layers=layers,
        curves=curves, seconds=seconds))
    figure(results, layers, curves, out / "deep_threshold.png")
    print(f"deep threshold, K={K} n={N_PER_CLASS}: {len(kappas)} κ values x {seeds * len(SCALES)} "
          f"restarts, {seconds:.1f} s; κ* = {ks:.5f}, κ_max = {km:.5f}")
    for name, s in summary.items():
        if name != "layers":
            print(f"  {name:<14} best vs F*: {s['max_value_rel_error']:.1e}  ‖W₂‖²: "
                  f"{s['max_norm_W_sq_error']:.1e}  below F*: {s['num_below_target']}  "
                  f"off every level f_r: {s['max_distance_to_a_level']:.1e}")
    for name, s in summary["layers"].items():
        print(f"  {name:<22} value {s['value_rel_error']:.1e}  max DNC1-3 {s['max_dnc']:.1e}")
    print(f"wrote {out / 'deep_threshold.png'}, .pdf and .json; theory and solver agree: {ok}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
