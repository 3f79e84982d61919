"""Which stepper to use when the user names none: :func:`default_solver`."""

from __future__ import annotations

from ufm.solvers.lbfgs import LBFGS
from ufm.solvers.riemannian import TrustRegion


def default_solver(problem):
    """The stepper ``ufm solve``, ``ufm verify`` and the certified solves use when none is named.

    :class:`TrustRegion` (truncated CG on exact Hessian–vector products, Riemannian on the
    spherical model) on every twice-differentiable problem: on the rows of ``ufm verify`` it
    reached the certified tolerance in 4–16 steps where L-BFGS took 8–420, and its first call
    (compile included) took 0.6–1.3 s against L-BFGS's 1.2–3.6 s (docs/speed.md, "Second order,
    certified", measured per model). :class:`LBFGS` on piecewise
    smooth problems (``problem.smooth`` False: the deep model with ReLU): there the trust region's
    quadratic model is wrong across a kink, its steps shrink, and it measured 20,000 steps
    without converging where L-BFGS converged in 40–233.

    Examples:
        >>> import ufm
        >>> type(default_solver(ufm.UFM(3, 2, 3, ufm.losses.CrossEntropy(), 1e-2, 1e-2))).__name__
        'TrustRegion'
        >>> type(default_solver(ufm.DeepUFM(3, 2, (4, 4), ufm.losses.MSE(), 1e-2, 1e-2))).__name__
        'LBFGS'
    """
    if getattr(problem, "smooth", True) or not problem.manifold.is_euclidean:
        return TrustRegion()
    return LBFGS()
