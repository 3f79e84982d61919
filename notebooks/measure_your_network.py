# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Measure your own network
#
# The collapse metrics of `ufm.metrics` take any features. This notebook plays both roles:
#
# 1. **The network.** A small MLP trained with optax (SGD, weight decay) on a synthetic Gaussian
#    mixture, whose penultimate features, classifier and bias are saved to an `.npz` file at a few
#    checkpoints — what you would dump from your own training run.
# 2. **You.** Read the file back *batch by batch* (memory-mapped, as for features that do not fit
#    in memory), stream the batches through `ufm.metrics.CollapseAccumulator`, and compare every
#    checkpoint with the geometry a fully collapsed UFM has for the same K (NC1 = 0, centred class
#    means a simplex ETF with cosines −1/(K−1), classifier aligned with them, NC4 = 0).
#
# Figures go to `$UFM_NOTEBOOK_OUT` if it is set, else to a fresh temporary directory.

# %%
import os
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import optax

import ufm

jax.config.update("jax_enable_x64", True)
out = Path(os.environ.get("UFM_NOTEBOOK_OUT") or tempfile.mkdtemp(prefix="ufm_measure_"))
out.mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## 1. A network, and its saved features
#
# K = 4 classes in 10 input dimensions, 150 training and 100 test samples per class; the MLP is
# 10 → 64 → 16 (ReLU) → 4, so the penultimate features have d = 16 ≥ K − 1.

# %%
K, n_train, n_test, p, d = 4, 150, 100, 10, 16
rng = np.random.default_rng(0)
centres = 3.0 * rng.standard_normal((K, p))


def sample(n):
    y = np.repeat(np.arange(K), n)
    return centres[y] + rng.standard_normal((K * n, p)), y


X, y = sample(n_train)
X_test, y_test = sample(n_test)


def init(key):
    k1, k2, k3 = jax.random.split(key, 3)
    return dict(W1=jax.random.normal(k1, (p, 64)) / np.sqrt(p), b1=jnp.zeros(64),
                W2=jax.random.normal(k2, (64, d)) / 8.0, b2=jnp.zeros(d),
                W=jax.random.normal(k3, (K, d)) / 4.0, b=jnp.zeros(K))


def features(params, X):
    h = jax.nn.relu(X @ params["W1"] + params["b1"][None, :])
    return jax.nn.relu(h @ params["W2"] + params["b2"][None, :])


def loss(params, X, y):
    logits = features(params, X) @ params["W"].T + params["b"][None, :]
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


# weight decay as an L2 term on every parameter (what the UFM's λ's model), SGD with momentum
opt = optax.chain(optax.add_decayed_weights(5e-3), optax.sgd(0.05, momentum=0.9))


@jax.jit
def train(params, state):
    def step(carry, _):
        params, state = carry
        grads = jax.grad(loss)(params, X, y)
        updates, state = opt.update(grads, state, params)
        return (optax.apply_updates(params, updates), state), None

    return jax.lax.scan(step, (params, state), length=250)[0]


params = init(jax.random.key(0))
state = opt.init(params)
saved, epochs = {}, []
for epoch in range(0, 7):
    if epoch:
        params, state = train(params, state)
    e = 250 * epoch
    epochs.append(e)
    # what a user dumps: float32 features, as a network would store them, plus the classifier
    saved[f"features_{e}"] = np.asarray(features(params, X), dtype=np.float32)
    saved[f"test_features_{e}"] = np.asarray(features(params, X_test), dtype=np.float32)
    saved[f"W_{e}"], saved[f"b_{e}"] = np.asarray(params["W"]), np.asarray(params["b"])
np.savez(out / "saved_features.npz", labels=y, test_labels=y_test, epochs=np.array(epochs), **saved)
print("saved", sorted(saved)[:3], "...", (out / "saved_features.npz").stat().st_size // 1024, "KiB")

# %% [markdown]
# ## 2. Stream the saved features through the metrics
#
# `np.load(..., mmap_mode="r")` leaves the arrays on disk (the `.npz` is first unpacked to `.npy`
# files, which NumPy can map); only one batch at a time is read. The first pass accumulates class
# counts, means and the within-class scatter; the second (NC4) compares the classifier with the
# nearest **training** class mean, for the training and the test features.

# %%
npz = np.load(out / "saved_features.npz")
for name in npz.files:
    np.save(out / f"{name}.npy", npz[name])
data = {name: np.load(out / f"{name}.npy", mmap_mode="r") for name in npz.files}
batch = 128


def batches(H, labels):
    for start in range(0, len(labels), batch):
        yield H[start:start + batch], labels[start:start + batch]


reports = []
for e in epochs:
    acc = ufm.metrics.CollapseAccumulator(num_classes=K)
    for H_b, y_b in batches(data[f"features_{e}"], data["labels"]):
        acc.update(H_b, y_b)
    W, b = data[f"W_{e}"], data[f"b_{e}"]
    nc4_train = ufm.metrics.NC4Accumulator(W, b, acc.means)
    nc4_test = ufm.metrics.NC4Accumulator(W, b, acc.means)   # test features, training means
    for H_b, y_b in batches(data[f"features_{e}"], data["labels"]):
        nc4_train.update(H_b, y_b)
    for H_b, y_b in batches(data[f"test_features_{e}"], data["test_labels"]):
        nc4_test.update(H_b, y_b)
    report = acc.result(W, b, nc4=nc4_train)
    reports.append((report, nc4_test.result()))

final, final_test = reports[-1]
print(final)
print("test: NC4 against the training means", final_test)

# %% [markdown]
# The streamed numbers are the in-memory metrics' (to 1e-12 on the same float64 values): a check
# you can afford here because these features do fit in memory.

# %%
H_last = np.asarray(data[f"features_{epochs[-1]}"], dtype=np.float64)
assert abs(final["nc1"] - float(ufm.metrics.nc1(H_last, y, K))) < 1e-12 * final["nc1"]
assert abs(final["nc3_zhu"] - float(ufm.metrics.nc3_zhu(data[f"W_{epochs[-1]}"], H_last, y, "etf"))) < 1e-12
first = reports[0][0]
assert final["nc1"] < 0.2 * first["nc1"] and final["means_etf_distance"] < first["means_etf_distance"]

# %% [markdown]
# ## 3. Collapse over training, against the collapsed UFM
#
# NC1, CDNV, the distances of the class means and of the classifier from the simplex ETF and the
# self-duality all decrease towards the UFM's 0; the mean cosine of the centred class means
# approaches the simplex ETF's −1/(K−1) (from `ufm.theory.frames.simplex_etf`), drawn as a line.

# %%
palette = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00"]  # Okabe–Ito
names = [("nc1", "NC1 = tr(Σ_W Σ_B⁺)/K"), ("cdnv", "CDNV (Galanti et al.)"),
         ("means_etf_distance", "NC2: ‖Ĝ_M − E‖"), ("W_etf_distance", "NC2: ‖Ĝ_W − E‖"),
         ("nc3_duality", "NC3: ‖Ŵ − M̂‖"), ("nc4", "NC4 (train; 0 drawn at 10⁻⁴)")]
fig, axes = plt.subplots(1, 2, figsize=(10, 4.6))
for (key, label), colour in zip(names, palette):
    values = [max(r[key], 1e-4) for r, _ in reports]  # NC4 reaches exactly 0: floor for the log axis
    axes[0].semilogy(epochs, values, "o-", color=colour, label=label, ms=3)
axes[0].set_xlabel("training step")
axes[0].set_ylabel("metric (collapsed UFM: 0)")
axes[0].set_title("collapse metrics of the saved features")
cos_pred = final.prediction["means_mean_cosine"]
axes[1].plot(epochs, [r["means_mean_cosine"] for r, _ in reports], "o-", color=palette[0],
             label="mean cos(μ_k − μ_G, μ_l − μ_G)", ms=3)
axes[1].plot(epochs, [r["W_mean_cosine"] for r, _ in reports], "s-", color=palette[1],
             label="mean cos(w_k − w̄, w_l − w̄)", ms=3)
axes[1].axhline(cos_pred, color="k", lw=1.5, label=f"simplex ETF: −1/(K−1) = {cos_pred:.3f}")
axes[1].set_xlabel("training step")
axes[1].set_ylabel("mean pairwise cosine")
axes[1].set_title("equiangularity")
handles = [h for ax in axes for h in ax.get_legend_handles_labels()[0]]
fig.legend(handles, [h.get_label() for h in handles], loc="lower center", ncol=3, fontsize=8,
           frameon=False)
fig.tight_layout(rect=(0, 0.15, 1, 1))
for ext in ("png", "pdf"):
    fig.savefig(out / f"measure_your_network.{ext}", dpi=120)

# %% [markdown]
# The Gram matrix of the normalised centred class means at the end, next to the simplex ETF's.

# %%
M = acc.means - acc.means.mean(axis=0)        # the last checkpoint's centred class means
U = M / np.linalg.norm(M, axis=1, keepdims=True)
etf = ufm.theory.frames.simplex_etf(K, d)         # unit rows: its Gram holds the cosines
fig2, axes2 = plt.subplots(1, 2, figsize=(7.5, 3.2))
for ax, A, title in ((axes2[0], U @ U.T, f"cos(μ_k − μ_G, μ_l − μ_G), step {epochs[-1]}"),
                     (axes2[1], etf @ etf.T, "simplex ETF (collapsed UFM)")):
    im = ax.imshow(A, cmap="RdBu_r", vmin=-1, vmax=1)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("class l")
    ax.set_xticks(range(K))
    ax.set_yticks(range(K))
axes2[0].set_ylabel("class k")
fig2.colorbar(im, ax=axes2, shrink=0.8, label="cos")
for ext in ("png", "pdf"):
    fig2.savefig(out / f"measure_your_network_gram.{ext}", dpi=120)
print("figures in", out)
