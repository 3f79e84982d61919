"""Solvers: one driver (:func:`solve`) and steppers with ``init``/``step``."""

from ufm.solvers._common import SolverState, StepInfo, value_and_riemannian_grad
from ufm.solvers._driver import Solution, Status, solve
from ufm.solvers.first_order import Adam, GradientDescent
from ufm.solvers.lbfgs import LBFGS

__all__ = ["solve", "Solution", "Status", "SolverState", "StepInfo", "GradientDescent", "Adam",
           "LBFGS", "value_and_riemannian_grad"]
from ufm.solvers.riemannian import RiemannianGradientDescent, TrustRegion  # noqa: E402
__all__ += ["RiemannianGradientDescent", "TrustRegion"]
from ufm.solvers.choice import default_solver  # noqa: E402
__all__ += ["default_solver"]
