#!/usr/bin/env python3
"""Every model family solved in float32 on the default backend (a GPU in benchmarks/gpu_check.sh),
compared with its closed form at float32 tolerances: the objective to 1e-4 relative and the
certificate's verdict. Prints one line per model and exits 1 if any fails.

Usage: python benchmarks/float32_check.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import jax  # noqa: E402

jax.config.update("jax_enable_x64", False)

import ufm  # noqa: E402

MODELS = {
    "ufm-mse": (ufm.UFM(4, 20, 8, ufm.losses.MSE(), 5e-3, 5e-3), ufm.solvers.LBFGS()),
    "ufm-ce": (ufm.UFM(10, 20, 16, ufm.losses.CrossEntropy(), 5e-3, 5e-3), ufm.solvers.LBFGS()),
    "ufm-ls": (ufm.UFM(5, 10, 8, ufm.losses.LabelSmoothing(0.1), 5e-3, 5e-3), ufm.solvers.LBFGS()),
    "spherical-ce": (ufm.SphericalUFM(5, 10, 8, ufm.losses.CrossEntropy(), temperature=0.5),
                     ufm.solvers.TrustRegion()),
    "deep-mse": (ufm.DeepUFM(4, 10, (8, 8), ufm.losses.MSE(), [5e-3, 5e-3], 5e-3, bias=False), ufm.solvers.LBFGS()),
    "multilabel-pal": (ufm.MultiLabelUFM.balanced(4, {1: 6, 2: 2}, 8, ufm.losses.PickAllLabel(), 5e-3, 5e-3),
                       ufm.solvers.LBFGS()),
    "regression": (ufm.RegressionUFM(jax.random.normal(jax.random.key(1), (40, 3)), 3, 1e-2, 1e-2),
                   ufm.solvers.LBFGS()),
}


def main() -> int:
    failed = 0
    print(f"backend {jax.default_backend()}, devices {jax.devices()}")
    for name, (problem, solver) in MODELS.items():
        target = ufm.theory.predict(problem).value
        sol = ufm.solve(problem, solver, problem.init(jax.random.key(0)), max_steps=20_000, gtol=1e-5)
        rel = abs(float(sol.value) - target) / max(abs(target), 1e-30)
        ok = rel <= 1e-4 and str(sol.params.H.dtype) == "float32"
        failed += not ok
        print(f"{'PASS' if ok else 'FAIL'} {name}: F = {float(sol.value):.7g}, closed form {target:.7g}, "
              f"rel. error {rel:.1e}, |grad| {float(sol.grad_norm):.1e}, {sol.status_name}, "
              f"{int(sol.num_steps)} steps, dtype {sol.params.H.dtype}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
