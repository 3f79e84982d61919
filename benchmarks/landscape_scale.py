"""Matrix-free classification at research scale: time, Hessian-vector products, peak memory.

Classifies the global minimiser (simplex ETF, constructed from the closed form) and the origin
(a strict saddle below the threshold) of a CE UFM with K = n = d = 100 (P = 1,010,100 parameters)
by Lanczos on the Hessian with the rotation orbit projected out implicitly. Each point runs in a
fresh subprocess, whose peak resident memory (ru_maxrss) is reported.

    python benchmarks/landscape_scale.py [--K 100 --n 100 --d 100 --lam 5e-4] [--out results.json]
"""

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, math, resource, sys, time
import jax
jax.config.update("jax_enable_x64", True)
import ufm
from ufm import landscape
K, n, d, lam, point = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
p = ufm.UFM(K, n, d, ufm.losses.CrossEntropy(), lam, lam, lambda_b=0.0)
x = p.params(**ufm.theory.predict(p).construct(seed=0)) if point == "minimiser" else landscape.origin(p)
P = sum(a.size for a in jax.tree.leaves(x))
t0 = time.perf_counter()
c = landscape.classify_critical_point(p, x, method="matrix-free", k=4)
seconds = time.perf_counter() - t0
expected = landscape.origin_smallest_eigenvalue(p) if point == "origin" else None
print(json.dumps(dict(point=point, K=K, n=n, d=d, lam=lam, P=P, seconds=seconds, verdict=c.verdict,
                      num_hvps=c.num_hvps, num_symmetry=c.num_symmetry, eigenvalues=c.eigenvalues.tolist(),
                      tol=c.tol, complete=c.complete, grad_norm=c.grad_norm, expected_min=expected,
                      peak_rss_gb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
                      backend=jax.default_backend())))
"""


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--K", type=int, default=100)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--d", type=int, default=100)
    ap.add_argument("--lam", type=float, default=5e-4, help="lambda_W = lambda_H (K tau = 0.5 at the default)")
    ap.add_argument("--points", default="minimiser,origin")
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    rows = []
    for point in args.points.split(","):
        out = subprocess.run([sys.executable, "-c", CHILD, str(args.K), str(args.n), str(args.d),
                              str(args.lam), point], capture_output=True, text=True, check=True)
        row = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
