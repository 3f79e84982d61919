"""ufm: unconstrained features models of neural collapse, solved in JAX and checked against theory.

Examples:
    >>> import jax, ufm
    >>> problem = ufm.UFM(num_classes=4, num_per_class=5, dim=4, loss=ufm.losses.CrossEntropy(),
    ...                   lambda_W=5e-3, lambda_H=5e-3)
    >>> sol = ufm.solve(problem, ufm.solvers.LBFGS(), problem.init(jax.random.key(0)), gtol=1e-9)
    >>> report = ufm.compare(problem, sol, ufm.theory.predict(problem))
"""

from ufm import losses, manifolds, theory
from ufm.problems import (DeepParams, DeepUFM, MultiLabelUFM, RegressionParams, RegressionUFM,
                          SphericalParams, SphericalUFM, UFM, UFMParams)
from ufm import solvers
from ufm.solvers import Solution, Status, solve
from ufm import metrics, landscape
from ufm.compare import Report, certified_solve, compare
from ufm import distributed, io, plots, sharding, sweep
from ufm import networks, rfm
from ufm.cache import enable_compilation_cache

from ufm._version import __version__

__all__ = ["UFM", "UFMParams", "DeepUFM", "DeepParams", "SphericalUFM", "SphericalParams",
           "MultiLabelUFM", "RegressionUFM", "RegressionParams", "solve", "Solution", "Status",
           "compare", "certified_solve", "Report", "losses", "manifolds", "theory", "solvers", "metrics", "landscape",
           "sweep", "sharding", "distributed", "io", "plots", "networks", "rfm", "enable_compilation_cache", "__version__"]
