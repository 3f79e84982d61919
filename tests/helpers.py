"""The one source of test tolerances (DESIGN.md, Tests) and small shared helpers."""

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
