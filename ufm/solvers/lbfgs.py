"""L-BFGS with a zoom line search (optax.lbfgs) for Euclidean problems."""

from __future__ import annotations

import jax
import optax

from ufm._types import check_int, pytree_dataclass
from ufm.solvers._common import SolverState, info, optax_promotion


@pytree_dataclass(meta=("memory_size", "max_linesearch_steps"))
class LBFGS:
    """L-BFGS (optax.lbfgs with its zoom line search). Euclidean problems only.

    Args:
        memory_size: number of curvature pairs kept.
        max_linesearch_steps: zoom line-search budget per iteration.

    Examples:
        >>> import jax, ufm
        >>> p = ufm.UFM(3, 4, 3, ufm.losses.CrossEntropy(), 5e-3, 5e-3)
        >>> sol = ufm.solve(p, LBFGS(), p.init(jax.random.key(0)), gtol=1e-9)
        >>> sol.status_name, abs(float(sol.value) - ufm.theory.predict(p).value) < 1e-12
        ('converged', True)
    """

    memory_size: int = 10
    max_linesearch_steps: int = 30

    def __post_init__(self):
        check_int("memory_size", self.memory_size, low=1)
        check_int("max_linesearch_steps", self.max_linesearch_steps, low=1)

    def _transform(self):
        return optax.lbfgs(memory_size=self.memory_size, linesearch=optax.scale_by_zoom_linesearch(
            max_linesearch_steps=self.max_linesearch_steps))

    def init(self, problem, params) -> SolverState:
        if not problem.manifold.is_euclidean:
            raise ValueError(f"LBFGS is Euclidean: it cannot solve {type(problem).__name__}, whose "
                             "parameters live on a manifold; use a Riemannian solver")
        value, grad = jax.value_and_grad(problem.value)(params)
        with optax_promotion():
            inner = self._transform().init(params)
        return SolverState(inner, value, grad)

    def step(self, problem, params, state):
        transform = self._transform()
        with optax_promotion():
            updates, inner = transform.update(state.grad, state.inner, params, value=state.value,
                                              grad=state.grad, value_fn=problem.value)
        new = optax.apply_updates(params, updates)
        # The zoom line search stores value and gradient at the accepted point.
        new_state = SolverState(inner, optax.tree.get(inner, "value"), optax.tree.get(inner, "grad"))
        return new, new_state, info(problem, new, new_state)
