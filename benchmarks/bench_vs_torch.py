#!/usr/bin/env python3
"""Seconds per gradient step of ufm against the PyTorch baseline (shared/bench/torch_reference.py).

Both run the same full-batch loop: plain gradient descent with step lr on W, b and N·lr on H, on
the library objective. ufm's loop is one compiled ``lax.while_loop`` (``ufm.solve`` with
``gtol=0`` so it runs exactly ``steps`` steps); the baseline is eager PyTorch with
``torch.optim.SGD``. The ratio torch/ufm comes from the same run on the same machine.

Usage:
    python benchmarks/bench_vs_torch.py [--device cpu] [--dtype float32] [--steps 2000]
        [--configs 10x100x64 100x10x128] [--out results/bench.json]
Needs torch (``pip install torch``) for the baseline; without it only ufm is timed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "bench" / "torch_reference.py"


def time_ufm(K, n, d, loss, steps, dtype, lr, repeats=3):
    import jax

    jax.config.update("jax_enable_x64", dtype == "float64")
    import ufm

    losses = {"ce": ufm.losses.CrossEntropy(), "mse": ufm.losses.MSE(),
              "ls": ufm.losses.LabelSmoothing(0.1), "fl": ufm.losses.Focal(2.0)}
    problem = ufm.UFM(K, n, d, losses[loss], 5e-4, 5e-4)
    solver = ufm.solvers.GradientDescent(lr)
    start = problem.init(jax.random.key(0), scale=0.1)
    sol = ufm.solve(problem, solver, start, max_steps=steps, gtol=0.0)  # compile + warm-up
    jax.block_until_ready(sol.value)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        sol = ufm.solve(problem, solver, start, max_steps=steps, gtol=0.0)
        jax.block_until_ready(sol.value)
        best = min(best, time.perf_counter() - t0)
    return dict(impl="ufm-jax-while-loop", seconds_per_step=best / steps, value=float(sol.value),
                grad_norm=float(sol.grad_norm), steps=int(sol.num_steps),
                backend=jax.default_backend(), jax=jax.__version__)


def time_torch(K, n, d, loss, steps, dtype, lr, device):
    cmd = [sys.executable, str(REFERENCE), "--K", str(K), "--n", str(n), "--d", str(d), "--loss", loss,
           "--steps", str(steps), "--dtype", dtype, "--lr", str(lr), "--device", device,
           "--lambda_W", "5e-4", "--lambda_H", "5e-4"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return dict(error=proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", nargs="+", default=["10x100x64", "100x10x128", "10x1000x512"],
                   help="KxnXd triples")
    p.add_argument("--loss", default="ce", choices=["ce", "mse", "ls", "fl"])
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    rows = []
    for cfg in args.configs:
        K, n, d = (int(x) for x in cfg.lower().split("x"))
        jax_row = time_ufm(K, n, d, args.loss, args.steps, args.dtype, args.lr)
        torch_row = time_torch(K, n, d, args.loss, args.steps, args.dtype, args.lr, args.device)
        ratio = (torch_row["seconds_per_step"] / jax_row["seconds_per_step"]
                 if "seconds_per_step" in torch_row else None)
        row = dict(K=K, n=n, d=d, loss=args.loss, dtype=args.dtype, steps=args.steps, ufm=jax_row,
                   torch=torch_row, speedup_vs_torch=ratio)
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.out:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from ufm.io import save_json

        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        save_json(args.out, dict(rows=rows, argv=sys.argv[1:]))


if __name__ == "__main__":
    main()
