"""Streaming collapse metrics (ufm.metrics.streaming) against the in-memory metrics.

The in-memory functions of ufm.metrics.classification / ufm.metrics.regression are the independent
reference (they see all of H at once, two-pass); the CDNV and the NC4 pass against given means are
checked against brute-force loops written here.
"""

import json
import math
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from ufm.metrics import (bias_relation, equiangle, equinorm, etf_distance, nc1, nc1_trace,
                         nc3_duality, nc3_zhu, nc4, of_distance)
from ufm.metrics import regression as reg
from ufm.metrics import streaming as st
from ufm.theory.frames import simplex_etf

TOL = 1e-12


def _batches(rng, N, sizes=(1, 0, 7, 64, 3, 200)):
    """Split range(N) into batches of cycling sizes, including an empty and a single-row batch."""
    out, start, i = [], 0, 0
    while start < N:
        b = sizes[i % len(sizes)]
        out.append(slice(start, start + b))
        start += b
        i += 1
    return out


def _stream(H, y, K, slices):
    state = st.class_stats_init(K, H.shape[1])
    for s in slices:
        state = st.class_stats_update(state, H[s], y[s])
    return state


def _cdnv_brute(H, y, K, p=1.0):
    mu = [H[y == k].mean(axis=0) for k in range(K)]
    var = [np.mean(np.sum((H[y == k] - mu[k]) ** 2, axis=1)) for k in range(K)]
    vals = [(var[k] + var[l]) / (2 * np.sum((mu[k] - mu[l]) ** 2) ** p)
            for k in range(K) for l in range(K) if k != l]
    return float(np.mean(vals))


def _close(a, b, tol=TOL):
    return abs(a - b) <= tol * max(1.0, abs(b))


def _data(rng, K=4, d=7, N=500):
    # unbalanced, shuffled labels: classes are absent from the small batches
    y = rng.choice(K, size=N, p=np.arange(1, K + 1) / (K * (K + 1) / 2))
    H = rng.standard_normal((N, d)) + 3.0 * rng.standard_normal((K, d))[y]
    return H, y


@pytest.mark.parametrize("geometry", ["etf", "of"])
def test_classification_matches_in_memory(geometry):
    rng = np.random.default_rng(0)
    K, d = 4, 7
    H, y = _data(rng, K, d)
    W, b = rng.standard_normal((K, d)), rng.standard_normal(K)
    state = _stream(H, y, K, _batches(rng, len(y)))
    passes = st.nc4_init()
    for s in _batches(rng, len(y), sizes=(50, 13)):
        passes = st.nc4_update(passes, H[s], W, b, state.means, y[s])
    r = st.collapse_report(state, W, b, geometry=geometry, nc4=passes)
    M = np.stack([H[y == k].mean(axis=0) for k in range(K)])
    Mc, Wc = M - M.mean(axis=0), W - W.mean(axis=0)
    V, Wf = (Mc, Wc) if geometry == "etf" else (M, W)
    expected = dict(
        nc1=nc1(H, y, K), nc1_trace=nc1_trace(H, y, K), cdnv=_cdnv_brute(H, y, K),
        cdnv_dist4=_cdnv_brute(H, y, K, p=2.0),
        means_etf_distance=etf_distance(Mc @ Mc.T), means_of_distance=of_distance(M @ M.T),
        means_equinorm=equinorm(V), means_equiangle=equiangle(V, geometry),
        W_etf_distance=etf_distance(Wc @ Wc.T), W_of_distance=of_distance(W @ W.T),
        W_equinorm=equinorm(Wf), W_equiangle=equiangle(Wf, geometry),
        nc3_duality=nc3_duality(W, H, y, geometry), nc3_zhu=nc3_zhu(W, H, y, geometry),
        bias_relation=bias_relation(W, H, b, y), nc4=nc4(H, W, b, y),
        classifier_accuracy=np.mean(np.argmax(H @ W.T + b, axis=1) == y))
    assert r.num_samples == len(y) and r.dim == d and r.num_classes == K
    for name, value in expected.items():
        assert _close(r[name], float(value)), (name, r[name], float(value))
    assert 0.1 < r["nc4"] < 0.9 and r["nc1"] > 0.01  # a non-trivial point: the checks can fail


def test_collapsed_features_are_zero_and_match_in_memory():
    """Exactly collapsed features (an ETF, each class repeated) and nearly collapsed ones."""
    rng = np.random.default_rng(1)
    K, d, n = 5, 6, 40
    M = 2.0 * simplex_etf(K, d, rng)
    y = rng.permutation(np.repeat(np.arange(K), n))
    for noise in (0.0, 1e-6):
        H = M[y] + noise * rng.standard_normal((K * n, d))
        state = _stream(H, y, K, _batches(rng, len(y)))
        r = st.collapse_report(state, W=M, b=-M @ M.mean(axis=0))
        for name, ref in [("nc1", nc1(H, y, K)), ("nc1_trace", nc1_trace(H, y, K))]:
            # exact collapse: both are rounding noise (~1e-16); near collapse: relative agreement
            ref = float(ref)
            assert abs(r[name] - ref) <= TOL * (1.0 if noise == 0 else abs(ref)), (noise, name, r[name], ref)
        # a distance between unit-norm matrices: absolute (rounding ~1e-16 of its O(1) terms)
        assert abs(r["nc3_zhu"] - float(nc3_zhu(M, H, y, "etf"))) < TOL
        cdnv_ref = _cdnv_brute(H, y, K)
        assert abs(r["cdnv"] - cdnv_ref) <= TOL * (1.0 if noise == 0 else cdnv_ref)
        if noise == 0.0:
            for name in ("nc1", "nc1_trace", "cdnv", "means_etf_distance", "means_equiangle",
                         "W_etf_distance", "nc3_duality", "nc3_zhu", "bias_relation"):
                assert r[name] < 1e-12, (name, r[name])
            assert abs(r["means_mean_cosine"] + 1 / (K - 1)) < 1e-12


def test_large_offset_is_stable():
    """Features offset by 1e6 with spread 1: the shifted pairwise update keeps every digit, raw sums
    of squares would not. The reference is the in-memory NC1 of H − offset (exact in float64: the
    subtraction of nearby numbers is exact), since NC1 does not depend on a shift."""
    rng = np.random.default_rng(2)
    K, d, N, offset = 3, 4, 3000, 1e6
    y = rng.integers(0, K, N)
    H = offset + rng.standard_normal((N, d)) + rng.standard_normal((K, d))[y]
    Z = H - offset
    state = _stream(H, y, K, _batches(rng, N, sizes=(100, 37, 1)))
    r = st.collapse_report(state)
    for name, ref in [("nc1", nc1(Z, y, K)), ("nc1_trace", nc1_trace(Z, y, K)),
                      ("cdnv", _cdnv_brute(Z, y, K))]:
        assert abs(r[name] / float(ref) - 1) < TOL, (name, r[name], float(ref))
    # the naive accumulation the pairwise update replaces: it would fail the check above
    S = sum(H[s].T @ H[s] for s in _batches(rng, N, sizes=(100,)))
    M = np.stack([H[y == k].mean(axis=0) for k in range(K)])
    counts = np.bincount(y, minlength=K)
    Sw_naive = (S - (M.T * counts) @ M) / N
    Dz = Z - np.stack([Z[y == k].mean(axis=0) for k in range(K)])[y]
    Sw_true = Dz.T @ Dz / N
    print("raw sums:", np.abs(Sw_naive - Sw_true).max(), "streaming:",
          np.abs(state.within_scatter / N - Sw_true).max())
    assert np.abs(Sw_naive - Sw_true).max() > 1e-6
    assert np.abs(state.within_scatter / N - Sw_true).max() < TOL


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
@pytest.mark.parametrize("source", ["numpy", "jax"])
def test_input_dtypes(dtype, source):
    """Any float dtype, NumPy or JAX: the result is that of the values cast to float64."""
    rng = np.random.default_rng(3)
    K, d = 3, 5
    H64, y = _data(rng, K, d, 300)
    Hx = jnp.asarray(H64, dtype=dtype)
    H = np.asarray(Hx.astype(jnp.float64))  # the values the accumulator sees
    Hn = np.asarray(Hx)                      # float16 / bfloat16 (ml_dtypes) / ... in NumPy
    state = st.class_stats_init(K, d)
    for s in _batches(rng, len(y)):
        # JAX batches as a data loader yields them (device arrays; slicing a JAX array instead
        # would compile one slice per batch size)
        Hb, yb = (jnp.asarray(Hn[s]), jnp.asarray(y[s])) if source == "jax" else (Hn[s], y[s])
        assert Hb.dtype == jnp.dtype(dtype)
        state = st.class_stats_update(state, Hb, yb)
    r = st.collapse_report(state)
    assert state.within_scatter.dtype == np.float64
    assert _close(r["nc1"], float(nc1(H, y, K))) and _close(r["nc1_trace"], float(nc1_trace(H, y, K)))


def test_batching_is_irrelevant_and_update_is_pure():
    rng = np.random.default_rng(4)
    H, y = _data(rng, 3, 4, 120)
    one = st.class_stats_update(st.class_stats_init(3, 4), H, y)
    rows = st.class_stats_init(3, 4)
    for i in range(len(y)):
        before = rows
        rows = st.class_stats_update(rows, H[i:i + 1], y[i:i + 1])
        assert int(before.num_batches) == i  # the old state is untouched
    for a, b in [(one.counts, rows.counts), (one.means, rows.means),
                 (one.within_scatter, rows.within_scatter),
                 (one.class_variance_sums, rows.class_variance_sums)]:
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    via_iter = st.class_stats(((H[s], y[s]) for s in _batches(rng, len(y))), 3)
    np.testing.assert_allclose(via_iter.within_scatter, one.within_scatter, rtol=1e-12)


def test_empty_batch_is_a_no_op():
    rng = np.random.default_rng(5)
    H, y = _data(rng, 3, 4, 60)
    s = st.class_stats_update(st.class_stats_init(3, 4), H, y)
    e = st.class_stats_update(s, np.zeros((0, 4), np.float32), np.zeros(0, int))
    assert int(e.num_batches) == 2
    for a, b in zip(s[:-1], e[:-1]):
        assert np.array_equal(a, b)


def test_nc4_test_features_against_training_means():
    """NC4 of test features uses the *training* means: brute force over the given means."""
    rng = np.random.default_rng(6)
    K, d = 4, 6
    H, y = _data(rng, K, d, 400)
    Ht, yt = _data(rng, K, d, 250)
    W, b = rng.standard_normal((K, d)), rng.standard_normal(K)
    train = st.class_stats(((H[s], y[s]) for s in _batches(rng, len(y))), K)
    acc = st.NC4Accumulator(W, b, train.means)
    for s in _batches(rng, len(yt), sizes=(31,)):
        acc.update(Ht[s], yt[s])
    res = acc.result()
    ncc = np.array([np.argmin([np.sum((h - m) ** 2) for m in train.means]) for h in Ht])
    lin = np.argmax(Ht @ W.T + b, axis=1)
    assert res["nc4"] == np.mean(lin != ncc)
    assert res["ncc_accuracy"] == np.mean(ncc == yt) and res["classifier_accuracy"] == np.mean(lin == yt)
    # without labels only NC4; with the test features' own means it would differ
    own = st.nc4_update(st.nc4_init(), Ht, W, None, train.means)
    assert set(st.nc4_result(own)) == {"nc4"}


def _regression_data(rng, N=400, d=6, t=2, zero_rows=3):
    Y = rng.standard_normal((N, t)) @ np.array([[2.0, 0.3], [0.0, 0.7]])[:t, :t] + 1.5
    H = np.hstack([Y, 0.5 * Y[:, :1]]) @ rng.standard_normal((t + 1, d)) + 0.3 * rng.standard_normal((N, d))
    H[:zero_rows] = 0.0  # zero rows have no direction: left out of NRC1/NRC2
    return H, Y


def test_regression_matches_in_memory():
    rng = np.random.default_rng(7)
    H, Y = _regression_data(rng)
    t = Y.shape[1]
    W = rng.standard_normal((t, H.shape[1]))
    acc = st.RegressionAccumulator()
    for s in _batches(rng, len(Y)):
        acc.update(H[s].astype(np.float64), Y[s])
    r = acc.result(W)
    r3 = reg.nrc3(W, Y)
    expected = dict(nrc1=reg.nrc1(H, t), nrc2=reg.nrc2(H, W), nrc3=r3.value, nrc3_gamma=r3.gamma,
                    dnrc1=reg.dnrc1(H, t), dnrc1_squared=reg.dnrc1_squared(H, t),
                    stable_rank=reg.stable_rank(H), dnrc2=reg.dnrc2(H, Y))
    for name, value in expected.items():
        assert _close(r[name], value, 1e-10 if name == "nrc3_gamma" else TOL), (name, r[name], value)
    assert r["nrc1"] > 1e-3 and r["nrc2"] > 1e-2


def test_regression_collapsed_construction():
    """At the regression UFM's minimiser (c < λ_min) NRC1 = NRC2 = NRC3 = 0 and γ̂ = c."""
    from ufm.problems.regression import synthetic_targets
    from ufm.theory.regression import predict_regression

    Y = synthetic_targets(0, 60, [1.0, 0.5, 0.2])
    x = predict_regression(Y, dim=5, lambda_W=0.01, lambda_H=0.01).construct(seed=0)
    c = 60 * 0.01 * 0.01
    state = st.regression_stats(((x["H"][i:i + 16], Y[i:i + 16]) for i in range(0, 60, 16)))
    r = st.regression_report(state, x["W"])
    assert r["nrc1"] < 1e-12 and r["nrc2"] < 1e-12 and r["nrc3"] < 1e-12
    assert abs(r["nrc3_gamma"] - c) < 1e-8
    assert abs(r["nrc1"] - reg.nrc1(x["H"], 3)) < TOL and abs(r["nrc3"] - reg.nrc3(x["W"], Y).value) < TOL


def test_report_prints_round_trips_and_predicts():
    rng = np.random.default_rng(8)
    K, d = 5, 6
    H, y = _data(rng, K, d, 200)
    W = rng.standard_normal((K, d))
    r = st.CollapseAccumulator(K)
    r.update(H, y)
    report = r.result(W)
    text = str(report)
    for name in ("nc1", "cdnv", "nc3_zhu", "bias_relation", "collapsed UFM"):
        assert name in text
    back = st.CollapseReport.from_json(report.to_json())
    assert back == report and json.loads(report.to_json())["kind"] == "classification"
    # the collapsed geometry comes from the theory's frame: cos = −1/(K−1) (ETF), 0 (OF)
    assert abs(report.prediction["means_mean_cosine"] + 1 / (K - 1)) < 1e-15
    assert report.prediction["nc1"] == 0.0 and "bias_relation" not in report.prediction
    of = r.result(W, geometry="of")
    assert of.prediction["means_mean_cosine"] == 0.0 and "means_etf_distance" in of.prediction
    # no ETF of K = 5 vectors in d = 3: frame quantities are not predicted, and it says so
    small = st.collapse_report(st.class_stats_update(st.class_stats_init(K, 3), H[:, :3], y))
    assert "means_etf_distance" not in small.prediction and "d >= K-1" in " ".join(small.notes)
    nan = st.CollapseReport("regression", 3, 2, 1, None, {"nrc1": math.nan}, {"nrc1": 0.0})
    assert math.isnan(st.CollapseReport.from_json(nan.to_json())["nrc1"])


def test_report_with_nan_round_trips_equal():
    # all class means equal (to 0): the frame metrics are NaN; the JSON round trip
    # must still compare equal (NaN == NaN by value), and a real difference must not
    H = np.array([[1.0, 0.0], [-1.0, 0.0], [2.0, 1.0], [-2.0, -1.0]])
    report = st.collapse_report(st.class_stats_update(st.class_stats_init(2, 2), H, [0, 0, 1, 1]))
    assert math.isnan(report["means_equinorm"])
    back = st.CollapseReport.from_json(report.to_json())
    assert back == report and back.to_json() == report.to_json()
    other = st.CollapseReport.from_dict({**report.to_dict(), "values": {**report.to_dict()["values"],
                                                                        "nc1_trace": 1.0}})
    assert other != report


def test_bad_input():
    K, d = 3, 4
    s = st.class_stats_init(K, d)
    H, y = np.ones((5, d)), np.array([0, 1, 2, 0, 1])
    s1 = st.class_stats_update(s, H, y)  # batch 0 is good
    cases = [
        (lambda: st.class_stats_update(s1, np.ones(d), y[:1]), "batch 1: features must be a 2-D"),
        (lambda: st.class_stats_update(s1, H, y[:4]), "one entry per feature row"),
        (lambda: st.class_stats_update(s1, np.vstack([H[:2], [[np.nan] * d]]), y[:3]),
         "batch 1: features row 2 has non-finite"),
        (lambda: st.class_stats_update(s1, H, np.array([0, 1, 3, 0, 1])), "batch 1: labels[2] = 3"),
        (lambda: st.class_stats_update(s1, H, y + 0.5), "integer class indices"),
        (lambda: st.class_stats_update(s1, np.ones((5, d + 1)), y), "same feature dimension"),
        (lambda: st.class_stats_update(s1, H.astype(complex), y), "real numbers"),
        (lambda: st.class_stats_init(1, d), "num_classes must be an integer >= 2"),
        (lambda: st.class_stats_init(K, 0), "dim must be an integer >= 1"),
        (lambda: st.collapse_report(st.class_stats_update(s, H, np.zeros(5, int))), "class 1 has no samples"),
        (lambda: st.collapse_report(s1, np.ones((K, d + 1))), "W must be the classifier"),
        (lambda: st.collapse_report(s1, None, np.ones(K)), "b needs W"),
        (lambda: st.collapse_report(s1, geometry="simplex"), "geometry must be"),
        (lambda: st.nc4_update(st.nc4_init(), H, np.ones((K, d)), np.ones(K + 1), s1.means), "b must be"),
        (lambda: st.cdnv(np.ones((3, 2)), np.ones(3), dist_exp=0), "dist_exp"),
        (lambda: st.regression_stats_update(st.regression_stats_init(d, 2), H, np.ones((4, 2))),
         "same number of rows"),
        (lambda: st.regression_stats_update(st.regression_stats_init(d, 2), H, np.ones((5, 3))),
         "targets has 3 columns"),
        (lambda: st.regression_report(st.regression_stats_init(d, 2)), "no samples"),
        (lambda: st.CollapseAccumulator(K).result(), "no batch"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(")):
            call()
    with pytest.raises(TypeError, match="ClassStats"):
        st.class_stats_update({"counts": 1}, H, y)


@pytest.mark.slow
def test_million_by_512_in_bounded_memory():
    """10⁶ × 512 float32 features in batches of 10⁴ from a generator (2 GB as float32 if held at
    once): the peak RSS of the streaming process stays far below that."""
    code = """
import resource, time, numpy as np
from ufm.metrics import streaming as st
K, d, B, N = 10, 512, 10_000, 1_000_000
def batches():
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((K, d)).astype(np.float32)
    for _ in range(N // B):
        y = rng.integers(0, K, B)
        yield centres[y] + 0.1 * rng.standard_normal((B, d), dtype=np.float32), y
t = time.perf_counter()
r = st.collapse_report(st.class_stats(batches(), K))
print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, r["nc1"])
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    seconds, rss_mib, value = map(float, out.stdout.split())
    assert rss_mib < 1024 and 0 < value < 1


def test_state_size_does_not_grow_with_samples():
    """Bounded memory: the state after 50 batches holds exactly as many bytes as after one."""
    rng = np.random.default_rng(9)
    one = st.class_stats_update(st.class_stats_init(3, 8), rng.standard_normal((10, 8)), np.arange(10) % 3)
    many = one
    for _ in range(49):
        many = st.class_stats_update(many, rng.standard_normal((10, 8)), rng.integers(0, 3, 10))
    assert sum(a.nbytes for a in many) == sum(a.nbytes for a in one) and many.counts.sum() == 500
    r = st.regression_stats([(rng.standard_normal((10, 8)), rng.standard_normal((10, 2)))] * 3)
    r50 = st.regression_stats([(rng.standard_normal((10, 8)), rng.standard_normal((10, 2)))] * 50)
    assert sum(a.nbytes for a in r) == sum(a.nbytes for a in r50)


def test_docs_page_examples_run(tmp_path):
    """The Python blocks of docs/metrics-streaming.md run as written, in order, in one namespace."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "docs" / "metrics-streaming.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) == 2
    namespace = {}
    for block in blocks:
        exec(compile(block, "docs/metrics-streaming.md", "exec"), namespace)
    assert namespace["report"]["nc4"] < 0.05 and namespace["report"].num_samples == 20_000
