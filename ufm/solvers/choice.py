"""Which stepper to use when the user names none: :func:`default_solver`."""

from __future__ import annotations

from ufm.solvers.lbfgs import LBFGS
from ufm.solvers.riemannian import TrustRegion


def default_solver(problem):
    """The stepper ``ufm solve``, ``ufm verify`` and the certified solves use when none is named.

    :class:`TrustRegion` (truncated CG on exact Hessian–vector products, Riemannian on the
    spherical model) on every twice-differentiable problem: from one start to gradient norm
    1e-10 it took 8–30 steps where L-BFGS took 85–584 (RGD 246 on the sphere), and its warm
    solves were 1.4–6.8× faster (``benchmarks/results/cpu-2026-12-03.md``, section "The default
    solver, per model"; docs/speed.md, "Second order, certified"). :class:`LBFGS` on piecewise
    smooth problems (``problem.smooth`` False: the deep model with ReLU): there the trust region's
    quadratic model is wrong across a kink, its steps shrink, and it ran 5,000 steps
    without converging (F = 0.048) where L-BFGS reached the optimum in 342.

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
