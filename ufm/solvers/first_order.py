"""First-order steppers: (Riemannian) gradient descent with momentum, and Adam, via optax.

Each solver is a frozen dataclass whose hyperparameters are array leaves; the optax transform is
built inside ``init``/``step`` so a new learning rate never forces a recompile. On a manifold the
update is projected onto the tangent space and retracted, which makes the same code plain GD on
:class:`ufm.UFM` and Riemannian GD on a sphere.
"""

from __future__ import annotations

import jax
import numpy as np
import optax

from ufm._types import ArrayLike, check_scalar, pytree_dataclass
from ufm.solvers._common import (SolverState, block_scale, check_flag, info, optax_promotion,
                                 precondition, value_and_riemannian_grad)


def _first_order_step(problem, params, state, transform, scale_blocks):
    direction = precondition(block_scale(problem, params, scale_blocks), state.grad)
    with optax_promotion():
        updates, inner = transform.update(direction, state.inner, params)
    manifold = problem.manifold
    new = manifold.retraction(params, manifold.projection(params, updates))
    value, _, rgrad = value_and_riemannian_grad(problem, new)
    new_state = SolverState(inner, value, rgrad)
    return new, new_state, info(problem, new, new_state)


def _has_momentum(momentum) -> bool:
    """Whether a momentum value (a number, an array of lanes, or a traced value) may be non-zero."""
    if isinstance(momentum, jax.core.Tracer):
        return True
    return bool(np.any(np.asarray(momentum) != 0))


@pytree_dataclass(meta=("nesterov", "scale_blocks", "heavy_ball"))
class GradientDescent:
    """Gradient descent with optional (Nesterov) momentum: optax.sgd on the Riemannian gradient.

    Args:
        learning_rate: step size (> 0).
        momentum: heavy-ball coefficient in [0, 1); 0 is plain gradient descent.
        nesterov: use Nesterov momentum.
        scale_blocks: multiply each block's step by ``problem.step_scale`` (N on H), as the
            reference scripts do, so that W and H move at comparable speed.
        heavy_ball: whether the compiled step keeps a momentum trace. The default (None) decides
            from ``momentum``: no trace when it is 0, so plain gradient descent pays for no
            momentum buffer (an optax trace with a traced coefficient of 0 is not folded away by
            XLA: it cost up to 65% per step at K = 10, N = 10⁴, d = 512). Pass True to sweep
            momenta that include 0 under ``vmap`` (all lanes must share one program).

    Examples:
        >>> import jax, ufm
        >>> p = ufm.UFM(3, 2, 3, ufm.losses.MSE(), 1e-2, 1e-2)
        >>> GradientDescent(0.5).heavy_ball, GradientDescent(0.5, momentum=0.9).heavy_ball
        (False, True)
        >>> sol = ufm.solve(p, GradientDescent(0.5, momentum=0.5), p.init(jax.random.key(0)),
        ...                 max_steps=3000, gtol=1e-8)
        >>> sol.status_name
        'converged'
    """

    reads_value = False  # step uses the gradient only (the driver may skip the value: _driver.py)

    learning_rate: ArrayLike = 1e-2
    momentum: ArrayLike = 0.0
    nesterov: bool = False
    scale_blocks: bool = True
    heavy_ball: bool | None = None

    def __post_init__(self):
        check_scalar("learning_rate", self.learning_rate, low=0.0, low_open=True, high=None, allowed="> 0")
        check_scalar("momentum", self.momentum, low=0.0, high=1.0, allowed="in [0, 1)")
        check_flag("nesterov", self.nesterov)
        check_flag("scale_blocks", self.scale_blocks)
        if self.heavy_ball is None:
            object.__setattr__(self, "heavy_ball", _has_momentum(self.momentum))
        check_flag("heavy_ball", self.heavy_ball)
        if not self.heavy_ball and not isinstance(self.momentum, jax.core.Tracer) and \
                _has_momentum(self.momentum):
            raise ValueError(f"heavy_ball=False needs momentum 0, got momentum={self.momentum!r}")

    def _transform(self):
        if not self.heavy_ball:
            return optax.sgd(self.learning_rate)
        return optax.sgd(self.learning_rate, momentum=self.momentum, nesterov=self.nesterov)

    def init(self, problem, params) -> SolverState:
        value, _, rgrad = value_and_riemannian_grad(problem, params)
        with optax_promotion():
            inner = self._transform().init(params)
        return SolverState(inner, value, rgrad)

    def step(self, problem, params, state):
        return _first_order_step(problem, params, state, self._transform(), self.scale_blocks)


@pytree_dataclass(meta=("scale_blocks",))
class Adam:
    """Adam (optax.adam) on the Riemannian gradient, with projection and retraction.

    Adam is invariant to a per-block rescaling of the gradient, so ``scale_blocks`` defaults off.

    Args:
        learning_rate: step size (> 0).
        b1, b2: decay rates of the first and second moment estimates, in [0, 1).
        eps: denominator offset (> 0).
        scale_blocks: multiply each block's gradient by ``problem.step_scale`` first.

    Examples:
        >>> import jax, ufm
        >>> p = ufm.UFM(3, 2, 3, ufm.losses.MSE(), 1e-2, 1e-2)
        >>> sol = ufm.solve(p, Adam(1e-2), p.init(jax.random.key(0)), max_steps=20_000, gtol=1e-8)
        >>> sol.status_name
        'converged'
    """

    reads_value = False  # step uses the gradient only (the driver may skip the value: _driver.py)

    learning_rate: ArrayLike = 1e-3
    b1: ArrayLike = 0.9
    b2: ArrayLike = 0.999
    eps: ArrayLike = 1e-8
    scale_blocks: bool = False

    def __post_init__(self):
        check_scalar("learning_rate", self.learning_rate, low=0.0, low_open=True, high=None, allowed="> 0")
        check_scalar("b1", self.b1, low=0.0, high=1.0, allowed="in [0, 1)")
        check_scalar("b2", self.b2, low=0.0, high=1.0, allowed="in [0, 1)")
        check_scalar("eps", self.eps, low=0.0, low_open=True, high=None, allowed="> 0")
        check_flag("scale_blocks", self.scale_blocks)

    def _transform(self):
        return optax.adam(self.learning_rate, b1=self.b1, b2=self.b2, eps=self.eps)

    def init(self, problem, params) -> SolverState:
        value, _, rgrad = value_and_riemannian_grad(problem, params)
        with optax_promotion():
            inner = self._transform().init(params)
        return SolverState(inner, value, rgrad)

    def step(self, problem, params, state):
        return _first_order_step(problem, params, state, self._transform(), self.scale_blocks)
