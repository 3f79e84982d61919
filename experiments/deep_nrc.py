"""Deep neural regression collapse in trained MLPs, with and without weight decay.

An MLP (ReLU, equal hidden widths) is trained full batch (Adam on the mean ½‖f(x) − y‖² plus a
coupled L2 penalty (wd/2)Σ‖θ‖²) on two regression targets:
    * scikit-learn's diabetes (N = 442, 10 inputs, t = 1 target, standardised);
    * a synthetic low-rank target: x ~ N(0, I_20), y = tanh(x A) B with A [20, r], B [r, t],
      r = 2, t = 5: the targets span r = 2 dimensions (their covariance has rank 2), so the
      intrinsic dimension is known.
For the input H_l of every linear layer, ``ufm.metrics.regression.deep_nrc`` gives DNRC1 (share of
centred feature variance outside the top t directions), DNRC2 (linear CKA with the targets), DNRC3
(alignment of the top feature and weight subspaces), DNRC4 (linear-probe error) and the stable
rank. The first collapsed layer (DNRC1 below ``COLLAPSED``, measured with the target's intrinsic
dimension) is marked. Weight decay is what makes the deep layers collapse; the collapsed layers'
stable rank is set against the targets' own.

Usage:
    python experiments/deep_nrc.py [--out DIR] [--quick]

Writes DIR/deep_nrc.json, .png and .pdf (default DIR: results/deep_nrc/).
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
from sklearn.datasets import load_diabetes  # noqa: E402

from ufm import io, networks  # noqa: E402
from ufm.metrics import regression as nrc  # noqa: E402

SEED = 0
COLLAPSED = 0.05  # DNRC1 below this: the layer's features live in the target's dimension
COLORS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000"]  # Okabe-Ito
DEFAULT = dict(hidden=[64] * 5, weight_decays=[0.0, 3e-3], lr=1e-3, num_steps=3000, record_every=500,
               synthetic=dict(num_samples=512, dim=20, rank=2, targets=5))
QUICK = dict(hidden=[16] * 3, weight_decays=[0.0, 3e-3], lr=3e-3, num_steps=300, record_every=150,
             synthetic=dict(num_samples=96, dim=20, rank=2, targets=5))


def _standardise(A):
    A = np.asarray(A, np.float64)
    return (A - A.mean(axis=0)) / A.std(axis=0)


def diabetes():
    data = load_diabetes()
    return _standardise(data.data), _standardise(data.target[:, None]), 1


def low_rank(num_samples: int, dim: int, rank: int, targets: int, seed: int = SEED):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(num_samples, dim))
    # Orthonormal A and B: the r latent directions have equal variance, so the targets' stable
    # rank is close to r (the intrinsic dimension) rather than dominated by one direction.
    A = np.linalg.qr(rng.normal(size=(dim, rank)))[0]
    B = np.linalg.qr(rng.normal(size=(targets, rank)))[0].T
    Y = np.tanh(X @ A) @ B
    return X, Y - Y.mean(axis=0), rank


def layer_rows(params, X, Y, intrinsic: int) -> list[dict]:
    dtype = params[0]["W"].dtype
    feats = [np.asarray(H, np.float64) for H in networks.layer_inputs(params, jnp.asarray(X, dtype))]
    weights = [np.asarray(layer["W"], np.float64) for layer in params]
    rows = nrc.deep_nrc(feats, weights, Y)
    for l, (row, H) in enumerate(zip(rows, feats)):
        row["layer"] = l
        row["dnrc1_intrinsic"] = nrc.dnrc1(H, intrinsic)
    return rows


def run_one(X, Y, intrinsic: int, wd: float, cfg: dict) -> dict:
    sizes = [X.shape[1], *cfg["hidden"], Y.shape[1]]
    dtype = jnp.float32 if cfg["float32"] else jnp.float64
    params = networks.mlp_init(jax.random.key(SEED), sizes, dtype=dtype)
    t0 = time.perf_counter()
    tr = networks.train(params, jnp.asarray(X, dtype), jnp.asarray(Y, dtype), "mse", optax.adam(cfg["lr"]),
                        num_steps=cfg["num_steps"], record_every=cfg["record_every"], weight_decay=wd)
    seconds = time.perf_counter() - t0
    rows = layer_rows(tr.params, X, Y, intrinsic)
    first = next((r["layer"] for r in rows if r["dnrc1_intrinsic"] < COLLAPSED), None)
    Xd = jnp.asarray(X, dtype)
    fit = np.asarray(networks.mlp_apply(tr.params, Xd), np.float64)
    H, W = (np.asarray(a, np.float64) for a in (networks.layer_inputs(tr.params, Xd)[-1],
                                                 tr.params[-1]["W"]))
    return dict(weight_decay=wd, sizes=sizes, layers=rows, first_collapsed_layer=first,
                train_mse=float(np.mean((fit - Y) ** 2)), loss=tr.loss.tolist(),
                objective=tr.objective.tolist(), steps=[s for s, _ in tr.snapshots],
                last_layer_nrc=nrc.nrc_metrics(H, W, Y), seconds=seconds)


def figure(results: dict, path: Path) -> None:
    panels = (("dnrc1_intrinsic", "DNRC1 (top-r directions)", True),
              ("dnrc2", "DNRC2 = CKA(H̃, Ỹ)", False), ("dnrc3", "DNRC3 (subspace alignment)", False),
              ("dnrc4", "DNRC4 (linear-probe MSE)", True), ("stable_rank", "stable rank Σν²/ν₁²", False))
    fig, axes = plt.subplots(len(results), len(panels), figsize=(3.2 * len(panels), 3.3 * len(results)),
                             squeeze=False)
    for i, (name, data) in enumerate(results.items()):
        for j, (key, label, logy) in enumerate(panels):
            ax = axes[i, j]
            for c, run in enumerate(data["runs"]):
                layers = [r["layer"] for r in run["layers"]]
                vals = [r[key] for r in run["layers"]]
                lab = f"wd = {run['weight_decay']:g}"
                ax.plot(layers, vals, "o-", color=COLORS[c], label=lab)
                first = run["first_collapsed_layer"]
                if first is not None:
                    ax.plot([first], [vals[first]], marker="*", ms=15, color=COLORS[c], ls="",
                            label=f"first collapsed layer (wd = {run['weight_decay']:g})")
            if key == "stable_rank":
                ax.axhline(data["target_stable_rank"], color="gray", ls="--", label="targets' stable rank")
            if key == "dnrc1_intrinsic":
                ax.axhline(COLLAPSED, color="gray", ls=":", label=f"collapse threshold {COLLAPSED:g}")
            if logy:
                ax.set_yscale("log")
            ax.set(xlabel="layer l (0 = input)", ylabel=label)
            ax.set_xticks(layers)
            ax.grid(True, which="both", alpha=0.3)
            if j == 0:
                ax.set_title(f"{name}: t = {data['targets']}, r = {data['intrinsic_dim']}", fontsize=10)
    handles = {}
    for ax in axes.flat:  # one legend for the figure: every distinct entry once
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=len(handles), fontsize=8)
    fig.suptitle("Deep neural regression collapse: NRC metrics of each linear layer's input, trained MLPs "
                 "with and without weight decay", fontsize=11)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    try:
        io.save_figure(path.with_suffix(".png"), fig, with_pdf=True)
    finally:
        plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/deep_nrc", help="output directory")
    parser.add_argument("--quick", action="store_true", help="small networks, few steps (a smoke run)")
    parser.add_argument("--float64", action="store_true",
                        help="train in float64 (default float32 for speed; metrics are float64 always)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = dict(QUICK if args.quick else DEFAULT, float32=not args.float64, seed=SEED, quick=args.quick, collapsed_below=COLLAPSED)
    start = time.perf_counter()
    syn = cfg["synthetic"]
    datasets = {"diabetes": diabetes() if not args.quick else tuple(a[:96] if i < 2 else a
                                                                       for i, a in enumerate(diabetes())),
                "low-rank synthetic": low_rank(syn["num_samples"], syn["dim"], syn["rank"], syn["targets"])}
    results = {}
    for name, (X, Y, r) in datasets.items():
        runs = [run_one(X, Y, r, wd, cfg) for wd in cfg["weight_decays"]]
        results[name] = dict(num_samples=int(X.shape[0]), targets=int(Y.shape[1]), intrinsic_dim=r,
                             target_stable_rank=nrc.stable_rank(Y),
                             target_covariance_eigenvalues=np.linalg.eigvalsh(
                                 nrc.centred_covariance(Y))[::-1].tolist(), runs=runs)
    seconds = time.perf_counter() - start
    io.save_json(out / "deep_nrc.json", dict(
        claim="with weight decay the deep layers of a trained regression MLP collapse onto the targets' "
              "intrinsic dimension (DNRC1 -> 0, stable rank -> the targets')",
        config=cfg, results=results, seconds=seconds))
    figure(results, out / "deep_nrc")
    for name, data in results.items():
        print(f"{name}: N={data['num_samples']} t={data['targets']} r={data['intrinsic_dim']}, targets' "
              f"stable rank {data['target_stable_rank']:.3g}")
        for run in data["runs"]:
            print(f"  wd={run['weight_decay']:g} (train MSE {run['train_mse']:.3g}, {run['seconds']:.1f} s), "
                  f"first collapsed layer {run['first_collapsed_layer']}")
            for r in run["layers"]:
                print(f"    layer {r['layer']}: DNRC1 {r['dnrc1_intrinsic']:.3g} (t: {r['dnrc1']:.3g})  "
                      f"CKA {r['dnrc2']:.3f}  DNRC3 {r['dnrc3']:.3f}  DNRC4 {r['dnrc4']:.3g}  "
                      f"stable rank {r['stable_rank']:.3g}")
    print(f"wrote {out / 'deep_nrc.png'}, .pdf and .json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
