#!/usr/bin/env python3
"""PyTorch baseline for ufm's benchmarks: the plain full-batch training loop of public UFM code.

What the reference implementations of UFM papers do, and what this script does: the parameters
are leaf tensors, every step builds the graph eagerly, ``backward()`` fills the gradients, and
``torch.optim.SGD`` updates them; one Python iteration per step, no compilation.

The objective is ufm's (docs/theory/conventions.md): the mean per-sample loss plus
(λ_W/2)‖W‖² + (λ_H/2)‖H‖² + (λ_b/2)‖b‖², the H penalty a sum over samples, with W [K, d],
H [N, d], b [K] and class-major labels repeat(arange(K), n). Losses: MSE (½‖z − onehot‖²), CE,
label smoothing (α) and focal loss (γ).

The step is lr on W and b and N·lr on H (the loss is a mean over N samples, so each row of H
sees a gradient N times smaller than W does); ufm's GradientDescent scales the H block the same
way, so both run the same iteration.

Prints one JSON line: seconds per step (after warm-up), the final objective and gradient norm.

Example:
    python benchmarks/torch_reference.py --K 10 --n 100 --d 64 --loss ce --steps 2000 --device cpu

Needs torch (``pip install 'ufm[bench]'`` or ``pip install torch``); runs on CPU or CUDA.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch
import torch.nn.functional as F


def fit_term(logits: torch.Tensor, labels: torch.Tensor, loss: str, alpha: float, gamma: float):
    """Mean per-sample loss of ``logits`` [N, K] against integer ``labels`` [N]."""
    if loss == "mse":
        target = F.one_hot(labels, logits.shape[1]).to(logits.dtype)
        return 0.5 * (logits - target).pow(2).sum(dim=1).mean()
    if loss == "ce":
        return F.cross_entropy(logits, labels)
    if loss == "ls":
        # torch's label_smoothing is y = (1 − α) e_k + α/K · 1, ufm's LabelSmoothing(α).
        return F.cross_entropy(logits, labels, label_smoothing=alpha)
    if loss == "fl":
        log_p = F.log_softmax(logits, dim=1).gather(1, labels[:, None]).squeeze(1)
        return (-(1.0 - log_p.exp()).pow(gamma) * log_p).mean()
    raise ValueError(f"loss must be one of mse, ce, ls, fl; got {loss!r}")


def objective(W, H, b, labels, args) -> torch.Tensor:
    """The library objective F(W, H, b)."""
    fit = fit_term(H @ W.T + b, labels, args.loss, args.alpha, args.gamma)
    penalty = args.lambda_W * W.pow(2).sum() + args.lambda_H * H.pow(2).sum() + args.lambda_b * b.pow(2).sum()
    return fit + 0.5 * penalty


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text}")
    return value


def _nonnegative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text}")
    return value


def _nonnegative_float(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--K", type=_positive_int, default=10, help="number of classes (>= 2)")
    p.add_argument("--n", type=_positive_int, default=100, help="samples per class")
    p.add_argument("--d", type=_positive_int, default=64, help="feature dimension")
    p.add_argument("--loss", default="ce", choices=["mse", "ce", "ls", "fl"])
    p.add_argument("--alpha", type=_nonnegative_float, default=0.1, help="label smoothing α in [0, 1)")
    p.add_argument("--gamma", type=_nonnegative_float, default=2.0, help="focal γ >= 0")
    p.add_argument("--lambda_W", type=_nonnegative_float, default=5e-4)
    p.add_argument("--lambda_H", type=_nonnegative_float, default=5e-4)
    p.add_argument("--lambda_b", type=_nonnegative_float, default=0.0)
    p.add_argument("--lr", type=_nonnegative_float, default=0.1, help="step on W, b (N·lr on H)")
    p.add_argument("--steps", type=_positive_int, default=1000, help="timed steps")
    p.add_argument("--warmup", type=_nonnegative_int, default=10, help="untimed steps first")
    p.add_argument("--scale", type=_nonnegative_float, default=0.1, help="init std of W and H")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.K < 2:
        p.error(f"--K must be >= 2, got {args.K}")
    if args.alpha >= 1:
        p.error(f"--alpha must be in [0, 1), got {args.alpha}")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    dtype = getattr(torch, args.dtype)
    device = torch.device(args.device)
    gen = torch.Generator().manual_seed(args.seed)
    N = args.K * args.n
    W = (args.scale * torch.randn(args.K, args.d, generator=gen, dtype=dtype)).to(device).requires_grad_()
    H = (args.scale * torch.randn(N, args.d, generator=gen, dtype=dtype)).to(device).requires_grad_()
    b = torch.zeros(args.K, dtype=dtype, device=device, requires_grad=True)
    labels = torch.arange(args.K, device=device).repeat_interleave(args.n)
    opt = torch.optim.SGD([{"params": [W, b]}, {"params": [H], "lr": args.lr * N}], lr=args.lr)

    def step():
        opt.zero_grad(set_to_none=True)
        objective(W, H, b, labels, args).backward()
        opt.step()

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(args.warmup):
        step()
    sync()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    sync()
    seconds = time.perf_counter() - t0

    opt.zero_grad(set_to_none=True)
    value = objective(W, H, b, labels, args)
    value.backward()
    grad_norm = math.sqrt(sum(float(t.grad.pow(2).sum()) for t in (W, H, b)))
    row = {"impl": "torch-eager-sgd", "device": str(device), "dtype": args.dtype, "K": args.K,
           "n": args.n, "d": args.d, "loss": args.loss, "steps": args.steps,
           "seconds_per_step": seconds / args.steps, "value": float(value.detach()), "grad_norm": grad_norm,
           "torch": torch.__version__, "threads": torch.get_num_threads()}
    print(json.dumps(row), flush=True)
    return row


if __name__ == "__main__":
    main()
