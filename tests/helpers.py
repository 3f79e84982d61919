"""The one source of test tolerances (DESIGN.md, Tests), a zoo of tiny problems, and small shared
helpers."""

import functools

import numpy as np

F64_IDENTITY = 1e-12  # float64 identities (exact constructions, algebraic relations)
SOLVER_RTOL = 1e-8  # solver vs closed form, relative
F32 = 1e-4  # float32 comparisons


def rel_err(measured, expected) -> float:
    """Frobenius relative error (absolute when ``expected`` is zero)."""
    m, e = np.asarray(measured, float), np.asarray(expected, float)
    scale = np.linalg.norm(e.ravel())
    diff = np.linalg.norm((m - e).ravel())
    return float(diff / scale if scale > 0 else diff)


def taylor_slope(f, x, v, grad_dot_v, hess_vv=None, eps=(1e-2, 5e-3, 2.5e-3, 1.25e-3)):
    """Log-log slope of the Taylor remainder |f(x+εv) − f(x) − ε g·v (− ε²/2 vᵀHv)| over ε.

    Slope 2 confirms the gradient, slope 3 the Hessian (with ``hess_vv``).
    """
    f0 = f(x, 0.0)
    rem = []
    for e in eps:
        r = f(x, e) - f0 - e * grad_dot_v
        if hess_vv is not None:
            r -= 0.5 * e * e * hess_vv
        rem.append(abs(r))
    slopes = np.diff(np.log(rem)) / np.diff(np.log(eps))
    return float(np.median(slopes))


# ---- the problem zoo ---------------------------------------------------------------------------
# One tiny instance of every model under every loss it solves, built with the common API
# (num_classes, num_per_class, dim, loss, lambda_W, lambda_H, lambda_b, bias). Builders run lazily
# (on first use, inside a test), so a constructor that changes breaks only the tests that use it.
def _losses():
    import ufm
    L = ufm.losses
    return dict(mse=L.MSE(), ce=L.CrossEntropy(), ls=L.LabelSmoothing(0.1), fl=L.Focal(2.0))


def _ufm(loss, counts=2, **kw):
    import ufm
    return lambda: ufm.UFM(3, counts, 3, _losses()[loss], 1e-2, 2e-2, **kw)


def _deep(loss, widths=(3, 4), activation="relu", **kw):
    import ufm
    return lambda: ufm.DeepUFM(3, 2, widths, _losses()[loss], 1e-2, 2e-2, activation=activation, **kw)


def _extended(loss):
    import ufm
    return lambda: ufm.DeepUFM.extended(3, 2, 3, 4, _losses()[loss], (1e-2, 2e-2), 3e-2)


def _multilabel(normalised):
    import ufm
    loss = ufm.losses.PickAllLabelNormalised() if normalised else ufm.losses.PickAllLabel()
    return lambda: ufm.MultiLabelUFM.balanced(3, {1: 1, 2: 1}, 3, loss, 1e-2, 2e-2)


def _spherical(loss, **kw):
    import ufm
    return lambda: ufm.SphericalUFM(3, 2, 3, _losses()[loss], radius_W=1.0, radius_H=1.5,
                                    temperature=0.5, **kw)


def _regression():
    import ufm
    Y = np.array([[1.0, 0.0], [0.5, -1.0], [-1.0, 0.5], [0.2, 2.0], [-0.3, -0.4]])
    return lambda: ufm.RegressionUFM(Y, dim=3, lambda_W=1e-2, lambda_H=2e-2)


_ZOO = {
    "ufm-mse": _ufm("mse"),
    "ufm-mse-nobias": _ufm("mse", bias=False),
    "ufm-mse-imbalanced": _ufm("mse", bias=False, counts=(1, 2, 3)),
    "ufm-ce": _ufm("ce"),
    "ufm-ls": _ufm("ls"),
    "ufm-fl": _ufm("fl"),
    "deep-relu-mse": _deep("mse"),
    "deep-relu-ce": _deep("ce"),
    "deep-relu-ls": _deep("ls"),
    "deep-relu-fl": _deep("fl"),
    "deep-linear3-mse": _deep("mse", widths=(3, 3, 4), activation="identity"),
    "deep-linear3-ce": _deep("ce", widths=(3, 3, 4), activation="identity", bias=False),
    "extended-relu-ce": _extended("ce"),
    "multilabel-pal": _multilabel(False),
    "multilabel-paln": _multilabel(True),
    "spherical-ce": _spherical("ce"),
    "spherical-ls-bias": _spherical("ls", bias=True),
    "spherical-fl": _spherical("fl"),
    "regression": _regression(),
}

ZOO_NAMES = tuple(_ZOO)


@functools.lru_cache(maxsize=None)
def zoo(name: str):
    """The zoo's problem ``name`` (see ``ZOO_NAMES``), built on first use."""
    return _ZOO[name]()


def euclidean_zoo_names():
    """Names of the zoo problems on flat space (what L-BFGS solves): all but the spherical ones."""
    return tuple(n for n in ZOO_NAMES if not n.startswith("spherical"))


def run_script_for_json(script: str, timeout: float = 300) -> dict:
    """Run ``script`` in a fresh CPU-only Python (it sets its own XLA_FLAGS, e.g. simulated host
    devices) and return the JSON object its last stdout line prints."""
    import json
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])
