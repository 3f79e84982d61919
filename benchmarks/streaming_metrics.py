"""Streaming collapse metrics on 10⁶ × 512 features: time and peak memory.

The features come from a generator in batches of 10⁴ (float32, 2 GB if held at once); each run is a
fresh subprocess, so its peak RSS (resource.getrusage) is that of the streaming alone. Also times
one batch update in NumPy against the same update jitted in JAX, to justify the NumPy backend.

    python benchmarks/streaming_metrics.py [--samples 1000000] [--dim 512] [--batch 10000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = """
import resource, sys, time
import numpy as np
from ufm.metrics import streaming as st
N, d, B, K = (int(a) for a in sys.argv[1:5])
rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
def batches():
    rng = np.random.default_rng(0)
    centres = 3 * rng.standard_normal((K, d)).astype(np.float32)
    for start in range(0, N, B):
        y = rng.integers(0, K, min(B, N - start))
        yield centres[y] + rng.standard_normal((len(y), d), dtype=np.float32), y
t = time.perf_counter()
for _ in batches():  # the generator alone: its cost is not the accumulator's
    pass
generate = time.perf_counter() - t
t0 = time.perf_counter()
state = st.class_stats(batches(), K)
t1 = time.perf_counter()
report = st.collapse_report(state)
t2 = time.perf_counter()
print(dict(samples=N, dim=d, batch=B, classes=K, generate_s=generate,
           accumulate_s=t1 - t0 - generate, report_s=t2 - t1,
           rss_before_mib=rss0, peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           nc1=report["nc1"]))
"""

BACKENDS = """
import time, numpy as np, jax, jax.numpy as jnp
jax.config.update("jax_enable_x64", True)
B, d, K = 10_000, 512, 10
rng = np.random.default_rng(0)
H = rng.standard_normal((B, d)).astype(np.float32); y = rng.integers(0, K, B)
def numpy_stats(H, y):
    H = H.astype(np.float64); Y = np.zeros((B, K)); Y[np.arange(B), y] = 1
    n = Y.sum(0); m = (Y.T @ H) / np.maximum(n, 1)[:, None]; D = H - m[y]
    return n, m, D.T @ D
@jax.jit
def jax_stats(H, y):
    H = H.astype(jnp.float64); Y = jax.nn.one_hot(y, K, dtype=jnp.float64)
    n = Y.sum(0); m = (Y.T @ H) / jnp.maximum(n, 1)[:, None]; D = H - m[y]
    return n, m, D.T @ D
out = {}
for name, f in (("numpy", numpy_stats), ("jax_jit", jax_stats)):
    jax.block_until_ready(f(H, y))
    times = []
    for _ in range(5):
        t = time.perf_counter(); jax.block_until_ready(f(H, y)); times.append(time.perf_counter() - t)
    out[name + "_batch_s"] = min(times)
print(out)
"""


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--batch", type=int, default=10_000)
    p.add_argument("--classes", type=int, default=10)
    a = p.parse_args(argv)
    run = subprocess.run([sys.executable, "-c", CHILD, str(a.samples), str(a.dim), str(a.batch),
                          str(a.classes)], capture_output=True, text=True, check=True)
    print(run.stdout.strip())
    run = subprocess.run([sys.executable, "-c", BACKENDS], capture_output=True, text=True, check=True)
    print(run.stdout.strip())


if __name__ == "__main__":
    main()
