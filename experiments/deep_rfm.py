"""Deep RFM: the AGOP drives deep neural collapse (Beaglehole et al., NeurIPS 2024).

Runs ``ufm.rfm.deep_rfm`` (Laplace-kernel ridge regression, AGOP, projection by its square root,
random ReLU features, repeated L times) on scikit-learn's digits (all 1797 samples, imbalanced:
nc1_trace and NC2_rfm use the per-class means, whatever the counts) and on a synthetic Gaussian
mixture. Per layer it measures nc1_trace and NC2_rfm on the data X_l, after the AGOP projection
and after the nonlinearity; NC1 must fall with depth, and mostly at the projection. Figures: NC by
layer for both data sets, and the cosine Gram matrix of the features layer by layer (digits, a
class-sorted subsample).

Usage:
    python experiments/deep_rfm.py [--out DIR] [--quick]

Writes DIR/deep_rfm.json, .png, .pdf and DIR/deep_rfm_grams.png, .pdf (default DIR: results/deep_rfm/).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

from ufm import io, rfm  # noqa: E402

SEED = 0
COLORS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000"]  # Okabe-Ito
DEFAULT = dict(num_layers=5, width=512, bandwidth=2.0, ridge=1e-3, digits_per_class=None,
               mixture=dict(num_classes=4, num_per_class=100, dim=30, noise=1.4), gram_per_class=20)
QUICK = dict(num_layers=3, width=64, bandwidth=2.0, ridge=1e-3, digits_per_class=15,
             mixture=dict(num_classes=3, num_per_class=25, dim=30, noise=1.4), gram_per_class=5)


def digits(per_class: int | None):
    data = load_digits()
    if per_class is None:
        order = np.argsort(data.target, kind="stable")  # class-sorted, all samples
    else:
        order = np.concatenate([np.flatnonzero(data.target == k)[:per_class] for k in range(10)])
    return data.data[order].astype(np.float64), data.target[order]


def run_one(X, y, K, cfg, key) -> tuple[dict, rfm.DeepRFM]:
    t0 = time.perf_counter()
    res = rfm.deep_rfm(X, y, K, key=key, num_layers=cfg["num_layers"], width=cfg["width"],
                       bandwidth=cfg["bandwidth"], ridge=cfg["ridge"])
    seconds = time.perf_counter() - t0
    m = res.metrics
    nc1_depth = [r["nc1_data"] for r in m] + [m[-1]["nc1_relu"]]
    nc2_depth = [r["nc2_data"] for r in m] + [m[-1]["nc2_relu"]]
    out = dict(num_samples=int(X.shape[0]), num_classes=K, dim=int(X.shape[1]), layers=m,
               nc1_by_depth=nc1_depth, nc2_by_depth=nc2_depth,
               nc1_decreasing=bool(all(b < a for a, b in zip(nc1_depth, nc1_depth[1:]))),
               agop_share=[float(np.log(r["nc1_data"] / r["nc1_agop"]) /
                                 np.log(r["nc1_data"] / r["nc1_relu"])) if r["nc1_relu"] < r["nc1_data"]
                           else float("nan") for r in m],
               seconds=seconds)
    return out, res


def figure_curves(results: dict, cfg: dict, path: Path) -> None:
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5), sharex=True)
    L = cfg["num_layers"]
    layers = np.arange(1, L + 1)
    for col, (name, r) in enumerate(results.items()):
        for row, (q, ylabel) in enumerate((("nc1", r"NC1 = tr $\Sigma_W$ / tr $\Sigma_B$"),
                                           ("nc2", r"NC2$_\mathrm{rfm}$ = mean $(\hat G - G')^2$"))):
            ax = axes[row, col]
            m = r["layers"]
            ax.semilogy(layers, [x[f"{q}_data"] for x in m], "o-", color=COLORS[0], label="data $X_l$")
            ax.semilogy(layers, [x[f"{q}_agop"] for x in m], "s--", color=COLORS[1],
                        label=r"after AGOP projection $\tilde X_l = \bar X_l M_l^{1/2}$")
            ax.semilogy(layers, [x[f"{q}_relu"] for x in m], "^:", color=COLORS[2],
                        label=r"after ReLU: $X_{l+1} = \mathrm{ReLU}(\tilde X_l W_l^\top)$")
            ax.set(ylabel=ylabel, title=f"{name} (N = {r['num_samples']}, K = {r['num_classes']})")
            ax.grid(True, which="both", alpha=0.3)
            if row == 1:
                ax.set_xlabel("layer l")
            ax.set_xticks(layers)
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(f"Deep RFM, Laplace kernel (bandwidth {cfg['bandwidth']:g}, ridge {cfg['ridge']:g}), "
                 f"D = {cfg['width']} random ReLU features per layer", fontsize=11)
    fig.tight_layout()
    try:
        io.save_figure(path.with_suffix(".png"), fig, with_pdf=True)
    finally:
        plt.close(fig)


def figure_grams(res: rfm.DeepRFM, y, per_class: int, path: Path) -> None:
    """Cosine Gram of the centred features X_1 … X_{L+1} on a class-sorted subsample."""
    idx = np.concatenate([np.flatnonzero(y == k)[:per_class] for k in np.unique(y)])
    feats = res.features
    fig, axes = plt.subplots(1, len(feats), figsize=(2.6 * len(feats) + 0.8, 3.0))
    for l, (ax, X) in enumerate(zip(axes, feats)):
        X = np.asarray(X, np.float64)
        Z = X[idx] - X.mean(axis=0)
        Z /= np.maximum(np.linalg.norm(Z, axis=1, keepdims=True), 1e-300)
        im = ax.imshow(Z @ Z.T, cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
        ax.set_title("input X_1" if l == 0 else f"X_{l + 1} (after layer {l})", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0].set_ylabel(f"samples, {per_class} per class, sorted")
    fig.colorbar(im, ax=list(axes), shrink=0.8, label="cos(x̃_i, x̃_j), centred")
    fig.suptitle("Deep RFM on digits: feature Gram matrices by layer (block structure = collapse)",
                 fontsize=10)
    try:
        io.save_figure(path.with_suffix(".png"), fig, with_pdf=True, bbox_inches="tight")
    finally:
        plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/deep_rfm", help="output directory")
    parser.add_argument("--quick", action="store_true", help="small data, 3 layers (a smoke run)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = dict(QUICK if args.quick else DEFAULT, seed=SEED, quick=args.quick)
    start = time.perf_counter()
    k_dig, k_mix_data, k_mix = jax.random.split(jax.random.key(SEED), 3)
    Xd, yd = digits(cfg["digits_per_class"])
    res_digits, full_digits = run_one(Xd, yd, 10, cfg, k_dig)
    mix = cfg["mixture"]
    Xm, ym = rfm.gaussian_mixture(k_mix_data, mix["num_classes"], mix["num_per_class"], mix["dim"],
                                  noise=mix["noise"])
    res_mix, _ = run_one(Xm, ym, mix["num_classes"], cfg, k_mix)
    results = {"digits": res_digits, "Gaussian mixture": res_mix}
    seconds = time.perf_counter() - start
    io.save_json(out / "deep_rfm.json", dict(
        claim="Deep RFM collapses with depth (NC1 decreases layer by layer), driven by the AGOP projection",
        config=cfg, results=results, seconds=seconds))
    figure_curves(results, cfg, out / "deep_rfm")
    figure_grams(full_digits, yd, cfg["gram_per_class"], out / "deep_rfm_grams")
    for name, r in results.items():
        print(f"{name} (N={r['num_samples']}, K={r['num_classes']}, {r['seconds']:.1f} s): NC1 by depth "
              + " -> ".join(f"{v:.3g}" for v in r["nc1_by_depth"])
              + f"; decreasing: {r['nc1_decreasing']}")
        print("   after AGOP: " + " ".join(f"{x['nc1_agop']:.3g}" for x in r["layers"])
              + "; NC2_rfm by depth " + " ".join(f"{v:.2g}" for v in r["nc2_by_depth"]))
    print(f"wrote {out / 'deep_rfm.png'}, deep_rfm_grams.png (+ .pdf) and deep_rfm.json")
    return 0 if all(r["nc1_decreasing"] for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
