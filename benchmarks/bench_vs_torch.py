#!/usr/bin/env python3
"""Seconds per gradient step of ufm against the PyTorch baseline (benchmarks/torch_reference.py).

Both run the same full-batch iteration on the library objective: plain gradient descent with step
lr on W, b and N·lr on H. ufm's loop is one compiled ``lax.while_loop`` (``ufm.solve`` with
``gtol=0`` so it runs exactly ``steps`` steps); the baseline is eager PyTorch with
``torch.optim.SGD``, one Python iteration per step, as in the public reference code of UFM papers.
The contestants alternate for ``--rounds`` rounds on the same machine and each keeps its best
round; the ratio torch/ufm of those is reported, never an absolute time alone.

Usage:
    python benchmarks/bench_vs_torch.py [--device cpu] [--dtype float32] [--steps 2000]
        [--configs 10x100x64 100x10x128] [--loss ce] [--rounds 3] [--out results/bench.json]

Needs torch for the baseline (``pip install -e '.[bench]'``); without it only ufm is timed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REFERENCE = HERE / "torch_reference.py"
# Time this checkout's ufm, not whichever copy happens to be installed.
sys.path.insert(0, str(HERE.parent))

LAMBDA = 5e-4  # λ_W = λ_H for both contestants
INIT_SCALE = 0.1


def _config(text: str) -> tuple[int, int, int]:
    try:
        K, n, d = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a config is KxNxD with three integers, e.g. 10x100x64; got {text!r}")
    if K < 2 or n < 1 or d < 1:
        raise argparse.ArgumentTypeError(f"need K >= 2, n >= 1, d >= 1; got {text!r}")
    return K, n, d


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


class UfmRunner:
    """One compiled ufm solve of exactly ``steps`` gradient steps; compiled at construction."""

    def __init__(self, K, n, d, loss, steps, lr):
        import jax

        import ufm

        losses = {"ce": ufm.losses.CrossEntropy(), "mse": ufm.losses.MSE(),
                  "ls": ufm.losses.LabelSmoothing(0.1), "fl": ufm.losses.Focal(2.0)}
        self.jax, self.ufm, self.steps = jax, ufm, steps
        self.problem = ufm.UFM(K, n, d, losses[loss], LAMBDA, LAMBDA)
        self.solver = ufm.solvers.GradientDescent(lr)
        self.start = self.problem.init(jax.random.key(0), scale=INIT_SCALE)
        self.sol = self._solve()  # compile + warm-up

    def _solve(self):
        sol = self.ufm.solve(self.problem, self.solver, self.start, max_steps=self.steps, gtol=0.0)
        self.jax.block_until_ready(sol.value)
        return sol

    def seconds_per_step(self) -> float:
        t0 = time.perf_counter()
        self.sol = self._solve()
        return (time.perf_counter() - t0) / self.steps

    def row(self, seconds_per_step: float) -> dict:
        return dict(impl="ufm-jax-while-loop", seconds_per_step=seconds_per_step,
                    value=float(self.sol.value), grad_norm=float(self.sol.grad_norm),
                    steps=int(self.sol.num_steps), backend=self.jax.default_backend(),
                    jax=self.jax.__version__)


def time_torch(K, n, d, loss, steps, dtype, lr, device) -> dict:
    cmd = [sys.executable, str(REFERENCE), "--K", str(K), "--n", str(n), "--d", str(d),
           "--loss", loss, "--steps", str(steps), "--dtype", dtype, "--lr", repr(lr),
           "--device", device, "--lambda_W", repr(LAMBDA), "--lambda_H", repr(LAMBDA),
           "--scale", repr(INIT_SCALE)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines()
        return dict(error=lines[-1] if lines else f"exit status {proc.returncode}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", nargs="+", type=_config, default=[(10, 100, 64), (100, 10, 128), (10, 1000, 512)],
                   metavar="KxNxD", help="K x n x d triples")
    p.add_argument("--loss", default="ce", choices=["ce", "mse", "ls", "fl"])
    p.add_argument("--steps", type=_positive_int, default=2000)
    p.add_argument("--rounds", type=_positive_int, default=3, help="alternating timed rounds per contestant")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--lr", type=_positive_float, default=0.1)
    p.add_argument("--device", default="cpu", help="torch device (ufm uses JAX's default backend)")
    p.add_argument("--out", default=None, help="also write the rows to this JSON file")
    args = p.parse_args(argv)

    import jax

    jax.config.update("jax_enable_x64", args.dtype == "float64")
    has_torch = _torch_available()
    if not has_torch:
        print("torch is not installed: timing ufm only (pip install -e '.[bench]')", file=sys.stderr)
    rows = []
    for K, n, d in args.configs:
        runner = UfmRunner(K, n, d, args.loss, args.steps, args.lr)
        ufm_best, torch_best = float("inf"), None
        for _ in range(args.rounds):  # alternate, so both see the same machine load
            ufm_best = min(ufm_best, runner.seconds_per_step())
            if has_torch:
                t = time_torch(K, n, d, args.loss, args.steps, args.dtype, args.lr, args.device)
                if "seconds_per_step" not in t:
                    torch_best = t
                    break
                if torch_best is None or t["seconds_per_step"] < torch_best["seconds_per_step"]:
                    torch_best = t
        ratio = (torch_best["seconds_per_step"] / ufm_best
                 if torch_best and "seconds_per_step" in torch_best else None)
        row = dict(K=K, n=n, d=d, loss=args.loss, dtype=args.dtype, steps=args.steps,
                   rounds=args.rounds, ufm=runner.row(ufm_best), torch=torch_best,
                   speedup_vs_torch=ratio)
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.out:
        from ufm.io import save_json

        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        save_json(args.out, dict(rows=rows, argv=sys.argv[1:] if argv is None else list(argv)))
    return rows


if __name__ == "__main__":
    main()
