"""A trained MLP against its unconstrained features model: neural collapse on scikit-learn's digits.

An MLP (ReLU) is trained full batch with SGD + momentum and weight decay wd on every weight and
bias, to zero training error and far beyond. Every few steps the penultimate features H and the
classifier (W, b) are recorded and NC1-NC4 measured with ``ufm.metrics``. The UFM with the same
K, n, d and regularisation, ``ufm.UFM(K, n, d, CrossEntropy(), λ_W, λ_H, λ_b)``, predicts NC1 =
NC2 = NC3 = NC4 = 0 and, through ``ufm.theory.predict``, the margin, the loss and the norms. How wd
maps onto (λ_W, λ_H, λ_b) is a modelling choice (docs/real-networks.md); two identifications are
reported: λ_H = wd (the convention of the UFM literature) and λ_H from the UFM's own balance
condition λ_W‖W‖² = λ_H‖H‖² at the end of training. Digits classes have 174-183 samples; the run
uses a balanced subsample (the first n of each class) so that the balanced UFM applies exactly.

Usage:
    python experiments/mlp_collapse.py [--out DIR] [--quick]

Writes DIR/mlp_collapse.json, .png and .pdf (default DIR: results/mlp_collapse/).
"""

from __future__ import annotations

import argparse
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
import optax  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

import ufm  # noqa: E402
from ufm import io, metrics, networks  # noqa: E402

K = 10
SEED = 0
# Okabe-Ito
COLORS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000"]
DEFAULT = dict(num_per_class=100, hidden=[128, 64], weight_decay=5e-3, lr=0.05, momentum=0.9,
               num_steps=3000, record_every=20)
QUICK = dict(num_per_class=20, hidden=[32, 16], weight_decay=5e-3, lr=0.05, momentum=0.9,
             num_steps=400, record_every=50)


def digits(num_per_class: int):
    """A balanced, class-major subsample of digits, columns standardised (constant ones at 0)."""
    data = load_digits()
    idx = np.concatenate([np.flatnonzero(data.target == k)[:num_per_class] for k in range(K)])
    X, y = data.data[idx].astype(np.float64), data.target[idx]
    std = X.std(axis=0)
    return (X - X.mean(axis=0)) / np.where(std > 0, std, 1.0), y


def collapse_metrics(H, W, b, y) -> dict:
    """NC1-NC4 of penultimate features H [N, d] and classifier (W, b) (ETF frame: free bias)."""
    H, W, b = (np.asarray(a, np.float64) for a in (H, W, b))
    Wc, Mc = metrics.frame_pair(W, H, y, "etf")
    logits = H @ W.T + b[None, :]
    true = logits[np.arange(len(y)), y]
    others = (logits.sum(axis=1) - true) / (K - 1)
    return dict(
        nc1=float(metrics.nc1(H, y, K)), nc1_trace=float(metrics.nc1_trace(H, y, K)),
        nc2_W=float(metrics.etf_distance(Wc @ Wc.T)), nc2_means=float(metrics.etf_distance(Mc @ Mc.T)),
        equinorm_W=float(metrics.equinorm(Wc)), equinorm_means=float(metrics.equinorm(Mc)),
        equiangle_W=float(metrics.equiangle(Wc, "etf")),
        equiangle_means=float(metrics.equiangle(Mc, "etf")),
        nc3_duality=float(metrics.nc3_duality(W, H, y, "etf")),
        nc3_zhu=float(metrics.nc3_zhu(W, H, y, "etf")), nc4=float(metrics.nc4(H, W, b, y)),
        train_error=float(np.mean(np.argmax(logits, axis=1) != y)),
        margin=float(np.mean(true - others)), norm_W_sq=float(np.sum(W ** 2)),
        norm_H_sq=float(np.sum(H ** 2)), norm_b=float(np.linalg.norm(b)))


def ufm_prediction(n: int, d: int, lambda_W: float, lambda_H: float, lambda_b: float) -> dict:
    """The closed-form CE-UFM minimiser's numbers for these sizes and λ's."""
    problem = ufm.UFM(K, n, d, ufm.losses.CrossEntropy(), lambda_W, lambda_H, lambda_b=lambda_b)
    pred = ufm.theory.predict(problem)
    q = pred.quantities
    tau = float(np.sqrt(n * lambda_W * lambda_H))
    out = dict(lambda_W=lambda_W, lambda_H=lambda_H, lambda_b=lambda_b, regime=pred.regime,
               K_tau=K * tau, value=float(pred.value), norm_W_sq=float(q["norm_W_sq"]),
               norm_H_sq=float(q["norm_H_sq"]), margin=float(q.get("margin", 0.0)),
               nc1=0.0, nc2_W=0.0, nc2_means=0.0, nc3_duality=0.0, nc4=0.0)
    # The CE part of the value: −log p*, p* = 1 − (K−1)τ (docs/theory/ce-family.md).
    out["loss"] = float(-np.log(1 - (K - 1) * tau)) if K * tau < 1 else float(np.log(K))
    return out


def run(cfg: dict) -> dict:
    X, y = digits(cfg["num_per_class"])
    dtype = jnp.float32 if cfg["float32"] else jnp.float64
    sizes = [X.shape[1], *cfg["hidden"], K]
    params = networks.mlp_init(jax.random.key(SEED), sizes, dtype=dtype)
    Xj = jnp.asarray(X, dtype)
    wd = cfg["weight_decay"]
    t0 = time.perf_counter()
    opt = optax.sgd(optax.cosine_decay_schedule(cfg["lr"], cfg["num_steps"], alpha=0.02),
                    momentum=cfg["momentum"])
    tr = networks.train(params, Xj, jnp.asarray(y), "cross_entropy", opt, num_steps=cfg["num_steps"],
                        record_every=cfg["record_every"], weight_decay=wd)
    train_seconds = time.perf_counter() - t0
    history = []
    for (step, p), loss, obj in zip(tr.snapshots, tr.loss, tr.objective):
        H = networks.layer_inputs(p, Xj)[-1]
        row = collapse_metrics(H, p[-1]["W"], p[-1]["b"], y)
        history.append(dict(step=step, loss=float(loss), objective=float(obj), **row))
    d = sizes[-2]
    n = cfg["num_per_class"]
    end = history[-1]
    # The UFM's stationarity condition λ_W‖W‖² = λ_H‖H‖² (docs/theory/conventions.md, T1) solved
    # for λ_H with the network's own norms at the end of training.
    lam_H_balance = wd * end["norm_W_sq"] / end["norm_H_sq"]
    predictions = {"lambda_H = wd": ufm_prediction(n, d, wd, wd, wd),
                   "lambda_H from balance": ufm_prediction(n, d, wd, lam_H_balance, wd)}

    def per_layer(p):
        return [dict(layer=l, width=int(H.shape[1]),
                     nc1=float(metrics.nc1(np.asarray(H, np.float64), y, K)),
                     nc1_trace=float(metrics.nc1_trace(np.asarray(H, np.float64), y, K)))
                for l, H in enumerate(networks.layer_inputs(p, Xj))]

    layer_norms = [float(networks.squared_norm(layer)) for layer in tr.params]
    return dict(history=history, predictions=predictions, per_layer_start=per_layer(tr.snapshots[0][1]),
                per_layer_end=per_layer(tr.params), layer_sq_norms_end=layer_norms,
                sizes=sizes, train_seconds=train_seconds)


def figure(res: dict, cfg: dict, path: Path) -> None:
    """NC1-NC4 and the scales over training (UFM predictions as lines), and NC1 by layer."""
    h = res["history"]
    steps = np.array([r["step"] for r in h], float)
    x = np.maximum(steps, 1.0)
    fig, axes = plt.subplots(2, 3, figsize=(14, 8))
    ax = axes[0, 0]
    ax.semilogy(x, [r["nc1"] for r in h], color=COLORS[0], label="NC1 = tr(Σ_W Σ_B⁺)/K")
    ax.semilogy(x, [r["nc1_trace"] for r in h], color=COLORS[1], label="tr Σ_W / tr Σ_B")
    ax.set(title="NC1 (UFM: 0)", ylabel="NC1")
    ax = axes[0, 1]
    for key, c, lab in (("nc2_W", 0, "ETF distance of W_c W_cᵀ"), ("nc2_means", 1, "ETF distance of M Mᵀ"),
                        ("equinorm_W", 2, "equinorm W"), ("equiangle_means", 3, "equiangle M")):
        ax.semilogy(x, [max(r[key], 1e-16) for r in h], color=COLORS[c], label=lab)
    ax.set(title="NC2 (UFM: 0)", ylabel="distance")
    ax.set_ylim(bottom=min(1e-2, ax.get_ylim()[0]))  # room for the legend below the curves
    ax = axes[0, 2]
    ax.semilogy(x, [r["nc3_duality"] for r in h], color=COLORS[0], label="NC3 ‖W/‖W‖ − M/‖M‖‖")
    ax.semilogy(x, [r["nc3_zhu"] for r in h], color=COLORS[1], label="NC3 (Zhu) of W Mᵀ")
    ax.set(title="NC3 (UFM: 0)", ylabel="distance")
    ax = axes[1, 0]
    # NC4 and the training error reach exactly 0: symlog keeps the zeros on the plot.
    ax.plot(x, [r["nc4"] for r in h], color=COLORS[0], label="NC4 (classifier ≠ nearest mean)")
    ax.plot(x, [r["train_error"] for r in h], color=COLORS[1], ls="--", label="training error")
    ax.set_yscale("symlog", linthresh=1e-3)
    ax.set(title="NC4 (UFM: 0)", ylabel="fraction of samples")
    ax = axes[1, 1]
    # The mean margin is negative at initialisation (wrong class ahead): not on a log axis.
    ax.semilogy(x, [r["margin"] if r["margin"] > 0 else np.nan for r in h], color=COLORS[0],
                label="margin m (network)")
    ax.semilogy(x, [r["loss"] for r in h], color=COLORS[1], label="CE loss (network)")
    for (name, p), ls in zip(res["predictions"].items(), (":", "--")):
        lab = "λ_H = wd" if name == "lambda_H = wd" else "λ_H from balance"
        if p["margin"] > 0:
            ax.axhline(p["margin"], color=COLORS[0], ls=ls, lw=1.2, label=f"UFM m*, {lab}")
        ax.axhline(p["loss"], color=COLORS[1], ls=ls, lw=1.2, label=f"UFM −log p*, {lab}")
    ax.set(title="scales against the UFM (lines)", ylabel="value")
    for a in axes.flat[:5]:
        a.set_xscale("log")
        a.set_xlabel("training step t (t = 0 drawn at 1)")
        a.grid(True, which="both", alpha=0.3)
        a.legend(fontsize=7, loc="lower right" if a is axes[0, 1] else "best")
    ax = axes[1, 2]
    for key, c, lab in (("per_layer_start", 1, "initialisation"), ("per_layer_end", 0, "end of training")):
        rows = res[key]
        ax.semilogy([r["layer"] for r in rows], [r["nc1"] for r in rows], "o-", color=COLORS[c], label=lab)
    ax.set_xticks([r["layer"] for r in res["per_layer_end"]])
    ax.set_xticklabels([f"{r['layer']}\n(d={r['width']})" for r in res["per_layer_end"]])
    ax.set(title="NC1 of each linear layer's input", xlabel="layer l (0 = data, last = penultimate)",
           ylabel="NC1")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.suptitle(f"MLP {res['sizes']} on digits (n = {cfg['num_per_class']} per class), SGD, weight decay "
                 f"wd = {cfg['weight_decay']:g} on all parameters; UFM K = {K}, d = {res['sizes'][-2]}, "
                 f"λ_W = λ_b = wd", fontsize=11)
    fig.tight_layout()
    try:
        io.save_figure(path.with_suffix(".png"), fig, with_pdf=True)
    finally:
        plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/mlp_collapse", help="output directory")
    parser.add_argument("--quick", action="store_true", help="a small network, few steps (a smoke run)")
    parser.add_argument("--float64", action="store_true",
                        help="train in float64 (default float32 for speed; metrics are float64 always)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = dict(QUICK if args.quick else DEFAULT, float32=not args.float64, seed=SEED, quick=args.quick)
    start = time.perf_counter()
    res = run(cfg)
    seconds = time.perf_counter() - start
    h0, h1 = res["history"][0], res["history"][-1]
    first_zero = next((r["step"] for r in res["history"] if r["train_error"] == 0), None)
    summary = dict(nc1_start=h0["nc1"], nc1_end=h1["nc1"], nc1_ufm=0.0,
                   nc2_W_start=h0["nc2_W"], nc2_W_end=h1["nc2_W"], nc3_end=h1["nc3_duality"],
                   nc4_end=h1["nc4"], train_error_end=h1["train_error"],
                   first_zero_error_step=first_zero, margin_end=h1["margin"], loss_end=h1["loss"],
                   predictions={k: dict(margin=p["margin"], loss=p["loss"], norm_W_sq=p["norm_W_sq"],
                                        norm_H_sq=p["norm_H_sq"], lambda_H=p["lambda_H"])
                                for k, p in res["predictions"].items()},
                   nc1_by_layer_end=[r["nc1"] for r in res["per_layer_end"]])
    io.save_json(out / "mlp_collapse.json", dict(
        claim="a trained MLP approaches the collapse its UFM predicts (NC1-NC4 -> 0)",
        config=cfg, mapping=dict(lambda_W="wd (exact: the last layer's weight decay)",
                                 lambda_b="wd", lambda_H="no exact counterpart: two identifications"),
        summary=summary, seconds=seconds, **res))
    figure(res, cfg, out / "mlp_collapse")
    print(f"MLP {res['sizes']} on digits, n={cfg['num_per_class']}/class, wd={cfg['weight_decay']:g}, "
          f"{cfg['num_steps']} steps in {res['train_seconds']:.1f} s (zero training error from step "
          f"{first_zero})")
    print(f"last layer NC1: start {h0['nc1']:.3g} -> end {h1['nc1']:.3g} (UFM 0); NC2(W) "
          f"{h0['nc2_W']:.3g} -> {h1['nc2_W']:.3g}; NC3 {h1['nc3_duality']:.3g}; NC4 {h1['nc4']:.3g}")
    for k, p in res["predictions"].items():
        print(f"UFM with {k} ({p['lambda_H']:.3g}): margin {p['margin']:.3g} (network "
              f"{h1['margin']:.3g}), loss {p['loss']:.3g} (network {h1['loss']:.3g}), ‖W‖² "
              f"{p['norm_W_sq']:.3g} (network {h1['norm_W_sq']:.3g})")
    print("NC1 by layer at the end:", " ".join(f"{v:.3g}" for v in summary["nc1_by_layer_end"]))
    print(f"wrote {out / 'mlp_collapse.png'}, .pdf and .json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
