"""Riemannian solvers with globalisation: gradient descent with Armijo backtracking along the
retraction curve, and a trust-region method with truncated CG (Steihaug–Toint) on Hessian-vector
products (docs/theory/spherical.md). Both run one driver step per outer iteration of :func:`ufm.solve`.

Both work on any problem with a ``manifold`` (Euclidean problems included). With
``scale_blocks`` the metric is rescaled block by block with ``problem.step_scale`` (N on H for the
UFMs, whose H gradient carries the 1/N of the mean loss): a constant rescaling of the metric on each
factor, which leaves the minimisers alone and makes the blocks equally well conditioned. The
driver's gradient norm (and ``gtol``) stays the unscaled one of ``problem.manifold``.

A step never returns a rejected point: backtracking (RGD) and radius reductions (TR) happen inside
the step, with fixed budgets so everything stays one compiled loop. When the budget is spent the
step returns the current point unchanged and the driver reports ``STALLED``.

Examples:
    >>> import jax, ufm
    >>> p = ufm.SphericalUFM(4, 3, 5, ufm.losses.CrossEntropy(), temperature=0.5)
    >>> sol = ufm.solve(p, TrustRegion(), p.init(jax.random.key(0)), gtol=1e-12, max_steps=100)
    >>> sol.status_name, abs(float(sol.value) - ufm.theory.predict(p).value) < 1e-12
    ('converged', True)
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from ufm._types import Array, ArrayLike, check_int, check_scalar, pytree_dataclass
from ufm.solvers._common import (SolverState, block_scale, check_flag, info, precondition,
                                 riemannian_hessian_operator, value_and_riemannian_grad)

# Pytree arithmetic: add_scale(y, a, x) = y + a·x, scale, sub, div, vdot, where, zeros_like.
_tree = optax.tree


# ---- Riemannian gradient descent with Armijo backtracking ---------------------------------------
class ArmijoState(NamedTuple):
    """Inner state of :class:`RiemannianGradientDescent`: the last accepted step length and the
    number of objective evaluations so far."""

    step: Array
    evaluations: Array


@pytree_dataclass(meta=("max_backtracks", "scale_blocks"))
class RiemannianGradientDescent:
    """Riemannian gradient descent with Armijo backtracking on the retraction curve.

    Trial point R_x(−t S grad F(x)) (S = ``problem.step_scale`` when ``scale_blocks``); accept when
    F drops by at least ``sufficient_decrease``·t·⟨grad, S grad⟩, else shrink t. Each step starts
    from ``growth`` × the last accepted t (at most ``max_step``). Near the minimiser, where that
    predicted decrease falls below the rounding level of F, the test is undecidable in floating
    point: there the step stops growing and is accepted unless F visibly increases, so the method
    keeps converging linearly down to gradient norms of ≈ 1e-13.

    Args:
        initial_step: first trial step length (> 0).
        max_step: largest trial step (> 0).
        shrink: backtracking factor in (0, 1).
        growth: factor ≥ 1 applied to the last accepted step for the next first trial.
        sufficient_decrease: Armijo constant c₁ in (0, 1).
        max_backtracks: backtracking budget per step (≥ 1); when spent, the step is rejected and
            the driver stops with STALLED.
        scale_blocks: rescale the metric with ``problem.step_scale`` (N on H).

    Examples:
        >>> import jax, ufm
        >>> p = ufm.SphericalUFM(3, 2, 3, ufm.losses.CrossEntropy())
        >>> sol = ufm.solve(p, RiemannianGradientDescent(), p.init(jax.random.key(1)),
        ...                 gtol=1e-10, max_steps=2000)
        >>> sol.status_name
        'converged'
    """

    initial_step: ArrayLike = 1.0
    max_step: ArrayLike = 1e12
    shrink: ArrayLike = 0.5
    growth: ArrayLike = 2.0
    sufficient_decrease: ArrayLike = 1e-4
    max_backtracks: int = 40
    scale_blocks: bool = True

    def __post_init__(self):
        check_scalar("initial_step", self.initial_step, low=0.0, low_open=True, high=None, allowed="> 0")
        check_scalar("max_step", self.max_step, low=0.0, low_open=True, high=None, allowed="> 0")
        check_scalar("shrink", self.shrink, low=0.0, low_open=True, high=1.0, allowed="in (0, 1)")
        check_scalar("growth", self.growth, low=1.0, high=None, allowed=">= 1")
        check_scalar("sufficient_decrease", self.sufficient_decrease, low=0.0, low_open=True,
                     high=1.0, allowed="in (0, 1)")
        check_int("max_backtracks", self.max_backtracks, low=1)
        check_flag("scale_blocks", self.scale_blocks)

    def init(self, problem, params) -> SolverState:
        value, _, rgrad = value_and_riemannian_grad(problem, params)
        dtype = value.dtype
        return SolverState(ArmijoState(jnp.asarray(self.initial_step, dtype), jnp.asarray(1)),
                           value, rgrad)

    def step(self, problem, params, state):
        manifold = problem.manifold
        f0, g = state.value, state.grad
        direction = manifold.projection(
            params, _tree.scale(-1.0, precondition(block_scale(problem, params, self.scale_blocks), g)))
        slope = _tree.vdot(g, direction)  # ⟨grad, −S grad⟩ ≤ 0
        eps = jnp.finfo(f0.dtype).eps
        # Rounding level of F: the CE of logits of size s is a difference of O(s) numbers, so
        # its absolute error does not shrink with F (as pymanopt's ρ regularisation, max(1, |F|)).
        noise = 64 * eps * jnp.maximum(jnp.abs(f0), 1.0)

        def decidable(t):
            return -self.sufficient_decrease * t * slope > noise

        grown = jnp.minimum(self.growth * state.inner.step, self.max_step)
        t0 = jnp.where(decidable(grown), grown, jnp.minimum(state.inner.step, self.max_step))

        def trial(t):
            x = manifold.retraction(params, _tree.scale(t, direction))
            return x, problem.value(x)

        def accepted(t, f):
            armijo = f <= f0 + self.sufficient_decrease * t * slope
            # Undecidable in floating point: accept unless F visibly increases.
            flat = ~decidable(t) & (f <= f0 + noise)
            return (armijo | flat) & jnp.isfinite(f)

        x0, v0 = trial(t0)

        def cond(c):
            t, x, f, k = c
            return ~accepted(t, f) & (k < self.max_backtracks)

        def body(c):
            t, _, _, k = c
            t = t * self.shrink
            x, f = trial(t)
            return t, x, f, k + 1

        t, x, f, k = jax.lax.while_loop(cond, body, (t0, x0, v0, jnp.asarray(0)))
        ok = accepted(t, f)
        value, _, rgrad = value_and_riemannian_grad(problem, x)
        new_params = _tree.where(ok, x, params)
        new_state = SolverState(
            ArmijoState(jnp.where(ok, t, state.inner.step), state.inner.evaluations + k + 2),
            jnp.where(ok, value, f0), _tree.where(ok, rgrad, g))
        return new_params, new_state, info(problem, new_params, new_state)


# ---- Riemannian trust region with truncated CG --------------------------------------------------
class TrustRegionState(NamedTuple):
    """Inner state of :class:`TrustRegion`.

    Attributes:
        radius: current trust-region radius Δ (in the metric rescaled by ``step_scale``).
        max_radius: cap Δ̄.
        rho: ratio of actual to predicted decrease of the last accepted step.
        inner_iterations: total truncated-CG iterations (= Hessian-vector products) so far.
        rejections: total rejected trial steps so far.
        capped: total subproblems whose truncated CG spent ``max_inner`` iterations without
            meeting its residual rule or a boundary (a sign of an ill-conditioned Hessian: the
            step is still used, but local convergence is no longer superlinear). ``ufm solve``
            reports it.
    """

    radius: Array
    max_radius: Array
    rho: Array
    inner_iterations: Array
    rejections: Array
    capped: Array


class _CG(NamedTuple):
    j: Array
    eta: object
    r: object
    z_r: Array
    delta: object
    e_Pe: Array
    e_Pd: Array
    d_Pd: Array
    model: Array
    rq_max: Array
    done: Array
    boundary: Array


def truncated_cg(hess, grad, scale, radius, *, kappa, theta, max_inner, project,
                 curvature_tol=1e-8):
    """Steihaug–Toint truncated CG for min m(η) = ⟨g, η⟩ + ½⟨Hess η, η⟩ s.t. ‖η‖_{S⁻¹} ≤ Δ.

    Preconditioned by S (``scale``; the trust region is measured in the matching norm
    ⟨η, S⁻¹η⟩), following Absil, Baker & Gallivan (2007) and pymanopt's ``truncated_cg``. Stops on
    negative curvature or at the boundary (then η lies on it), on ‖r‖ ≤ ‖r₀‖ min(‖r₀‖^θ, κ)
    (superlinear convergence for θ > 0), when the model stops decreasing, when a later direction
    has curvature ≤ ``curvature_tol`` × the largest seen (then η is kept), or after ``max_inner``
    iterations.

    The model value is carried by CG's scalar recurrence (the residual r = g + Hess η is
    orthogonal to the previous direction, so ⟨r, δ⟩ = −⟨z, r⟩): m(η + tδ) = m(η) − t⟨z, r⟩ +
    ½t²⟨δ, Hess δ⟩. No Hess η is kept, which saves two vector updates and two inner products per
    iteration (a third of an iteration's memory traffic at paper size).

    Returns:
        (η, m(η), number of iterations, whether η is on the boundary, whether the iteration cap
        was reached before any other stopping rule).
    """
    eta0 = _tree.zeros_like(grad)
    z0 = precondition(scale, grad)
    z_r0 = _tree.vdot(z0, grad)
    norm_r0 = jnp.sqrt(jnp.maximum(z_r0, 0.0))
    target = norm_r0 * jnp.minimum(norm_r0 ** theta, kappa)
    tiny = jnp.finfo(z_r0.dtype).tiny

    def cond(c: _CG):
        return ~c.done & (c.j < max_inner)

    def body(c: _CG):
        Hd = hess(c.delta)
        d_Hd = _tree.vdot(c.delta, Hd)
        alpha = c.z_r / jnp.where(d_Hd != 0, d_Hd, tiny)
        e_Pe_new = c.e_Pe + 2 * alpha * c.e_Pd + alpha ** 2 * c.d_Pd
        # Negative curvature: follow the direction to the boundary (Steihaug; escapes saddles).
        # Negligible curvature in a later direction (|curvature| ≤ curvature_tol × the largest
        # seen) keeps the current η instead: near a minimiser whose Hessian has a null space
        # (the O(d)-orbit of §10.3), CG's late directions live in that null space with
        # curvature ±rounding, and a long step along them moves along the orbit at no visible
        # change of F but spoils the gradient. (Keeping η on clearly negative curvature too
        # left the iterate crawling near the CE saddle: 837 interior steps of 2 CG iterations
        # at Kτ = 0.77, where following it takes a handful.)
        rq = d_Hd / jnp.maximum(c.d_Pd, tiny)  # Rayleigh quotient in the S⁻¹ metric
        rq_max = jnp.maximum(c.rq_max, jnp.abs(rq))
        late_flat = (c.j >= 1) & (jnp.abs(rq) <= curvature_tol * rq_max)
        to_boundary = ~late_flat & ((d_Hd <= 0) | (e_Pe_new >= radius ** 2))
        # Step to the boundary: the positive root of ‖η + τδ‖² = Δ².
        disc = jnp.maximum(c.e_Pd ** 2 + c.d_Pd * (radius ** 2 - c.e_Pe), 0.0)
        tau = (-c.e_Pd + jnp.sqrt(disc)) / jnp.maximum(c.d_Pd, tiny)
        model_b = c.model - tau * c.z_r + 0.5 * tau ** 2 * d_Hd
        model_i = c.model - alpha * c.z_r + 0.5 * alpha ** 2 * d_Hd
        no_decrease = late_flat | (~to_boundary & (model_i >= c.model))  # keep the previous η
        step = jnp.where(to_boundary, tau, jnp.where(no_decrease, 0.0, alpha))
        eta = _tree.add_scale(c.eta, step, c.delta)
        # Only an interior step continues: the rest of the state is unused once CG stops.
        r = project(_tree.add_scale(c.r, alpha, Hd))
        z = precondition(scale, r)
        z_r = _tree.vdot(z, r)
        small = (c.j >= 1) & (jnp.sqrt(jnp.maximum(z_r, 0.0)) <= target)
        beta = z_r / jnp.maximum(c.z_r, tiny)
        delta = project(_tree.sub(_tree.scale(beta, c.delta), z))
        e_Pd = beta * (c.e_Pd + alpha * c.d_Pd)
        d_Pd = z_r + beta ** 2 * c.d_Pd
        model = jnp.where(to_boundary, model_b, jnp.where(no_decrease, c.model, model_i))
        return _CG(c.j + 1, eta, r, z_r, delta, e_Pe_new, e_Pd, d_Pd, model, rq_max,
                   to_boundary | no_decrease | small, to_boundary)

    zero = jnp.zeros((), z_r0.dtype)
    start = _CG(jnp.asarray(0), eta0, grad, z_r0, _tree.scale(-1.0, z0), zero, zero,
                z_r0, zero, zero, norm_r0 == 0, jnp.asarray(False))
    c = jax.lax.while_loop(cond, body, start)
    return c.eta, c.model, c.j, c.boundary, ~c.done


@pytree_dataclass(meta=("max_inner", "max_rejections", "scale_blocks"))
class TrustRegion:
    """Riemannian trust region with truncated CG on Hessian-vector products (Absil, Baker &
    Gallivan 2007): a second-order method with superlinear local convergence (quadratic for
    θ = 1). It follows negative curvature of the first CG direction to the trust-region boundary
    (which escapes strict saddles from nearby points), but stops CG on nonpositive curvature found
    later (see :func:`truncated_cg`), so reaching a second-order point is not guaranteed: certify a
    solution with the Hessian check of :func:`ufm.compare` (its ``hessian_min_eig`` row).

    Each driver step solves the trust-region subproblem with :func:`truncated_cg`, retracts, and
    compares the actual with the predicted decrease (ρ, regularised against rounding as in
    pymanopt). A rejected trial shrinks Δ by 4 and is retried inside the same step (at most
    ``max_rejections`` times), so every step the driver sees is an accepted one.

    Args:
        initial_radius: Δ₀ (> 0), or None for Δ̄/8.
        max_radius: Δ̄ (> 0), or None for π·max(‖x₀‖_{S⁻¹}, 1) (the size of the starting point).
        accept_ratio: ρ′ in [0, 1/4): trial steps with ρ > ρ′ are accepted.
        kappa, theta: inner stopping rule ‖r‖ ≤ ‖r₀‖ min(‖r₀‖^θ, κ); θ = 1 gives quadratic
            convergence.
        curvature_tol: after the first CG direction, curvature ≤ curvature_tol × the largest
            Rayleigh quotient seen counts as flat and ends the subproblem (see
            :func:`truncated_cg`).
        max_inner: truncated-CG iteration cap per subproblem.
        max_rejections: trial budget per step.
        scale_blocks: precondition with (and measure Δ in the metric of) ``problem.step_scale``.

    Examples:
        >>> import jax, ufm
        >>> p = ufm.UFM(3, 2, 3, ufm.losses.CrossEntropy(), 1e-2, 1e-2)
        >>> sol = ufm.solve(p, TrustRegion(), p.init(jax.random.key(0)), gtol=1e-12, max_steps=100)
        >>> sol.status_name
        'converged'
    """

    initial_radius: Optional[ArrayLike] = None
    max_radius: Optional[ArrayLike] = None
    accept_ratio: ArrayLike = 0.1
    kappa: ArrayLike = 0.1
    theta: ArrayLike = 1.0
    curvature_tol: ArrayLike = 1e-8
    max_inner: int = 1000
    max_rejections: int = 30
    scale_blocks: bool = True

    def __post_init__(self):
        for name in ("initial_radius", "max_radius"):
            if getattr(self, name) is not None:
                check_scalar(name, getattr(self, name), low=0.0, low_open=True, high=None, allowed="> 0 or None")
        check_scalar("accept_ratio", self.accept_ratio, low=0.0, high=0.25, allowed="in [0, 1/4)")
        check_scalar("kappa", self.kappa, low=0.0, low_open=True, high=1.0, allowed="in (0, 1)")
        check_scalar("theta", self.theta, low=0.0, high=None, allowed=">= 0")
        check_scalar("curvature_tol", self.curvature_tol, low=0.0, high=1.0, allowed="in [0, 1)")
        check_int("max_inner", self.max_inner, low=1)
        check_int("max_rejections", self.max_rejections, low=1)
        check_flag("scale_blocks", self.scale_blocks)

    def init(self, problem, params) -> SolverState:
        value, _, rgrad = value_and_riemannian_grad(problem, params)
        dtype = value.dtype
        if self.max_radius is None:
            scale = block_scale(problem, params, self.scale_blocks)
            inv = params if scale is None else _tree.div(params, scale)
            size = jnp.sqrt(jnp.maximum(_tree.vdot(params, inv), 1.0))
            max_radius = math.pi * size
        else:
            max_radius = jnp.asarray(self.max_radius, dtype)
        radius = max_radius / 8 if self.initial_radius is None else jnp.asarray(self.initial_radius, dtype)
        inner = TrustRegionState(jnp.asarray(radius, dtype), jnp.asarray(max_radius, dtype),
                                 jnp.zeros((), dtype), jnp.asarray(0), jnp.asarray(0), jnp.asarray(0))
        return SolverState(inner, value, rgrad)

    def step(self, problem, params, state):
        manifold = problem.manifold
        f0, g = state.value, state.grad
        scale = block_scale(problem, params, self.scale_blocks)
        _, hess = riemannian_hessian_operator(problem, params)
        eps = jnp.finfo(f0.dtype).eps
        rho_reg = jnp.maximum(1.0, jnp.abs(f0)) * eps * 1e3

        def project(v):
            return manifold.projection(params, v)

        def attempt(radius):
            eta, model, j, boundary, capped = truncated_cg(hess, g, scale, radius, kappa=self.kappa,
                                                           theta=self.theta, max_inner=self.max_inner,
                                                           project=project, curvature_tol=self.curvature_tol)
            x = manifold.retraction(params, eta)
            f, _, rg = value_and_riemannian_grad(problem, x)
            model_decrease = -model
            rho = (f0 - f + rho_reg) / (model_decrease + rho_reg)
            rho = jnp.where(jnp.isfinite(rho) & (model_decrease >= 0), rho, -jnp.inf)
            # Radius update (Absil et al. 2007, Alg. 10).
            new_radius = jnp.where(rho < 0.25, radius / 4,
                                   jnp.where((rho > 0.75) & boundary,
                                             jnp.minimum(2 * radius, state.inner.max_radius), radius))
            return x, f, rg, rho, new_radius, j, capped

        def cond(c):
            k, accepted = c[0], c[1]
            return ~accepted & (k < self.max_rejections)

        def body(c):
            k, _, radius, _, _, _, _, inner_its, caps = c
            x, f, rg, rho, new_radius, j, capped = attempt(radius)
            return (k + 1, rho > self.accept_ratio, new_radius, x, f, rg, rho, inner_its + j,
                    caps + capped.astype(caps.dtype))

        dtype = f0.dtype
        start = (jnp.asarray(0), jnp.asarray(False), state.inner.radius, params, f0, g,
                 jnp.zeros((), dtype), jnp.asarray(0), jnp.asarray(0))
        k, ok, radius, x, f, rg, rho, inner_its, caps = jax.lax.while_loop(cond, body, start)
        new_params = _tree.where(ok, x, params)
        new_inner = TrustRegionState(radius, state.inner.max_radius, jnp.where(ok, rho, state.inner.rho),
                                     state.inner.inner_iterations + inner_its,
                                     state.inner.rejections + k - ok.astype(k.dtype),
                                     state.inner.capped + caps)
        new_state = SolverState(new_inner, jnp.where(ok, f, f0), _tree.where(ok, rg, g))
        return new_params, new_state, info(problem, new_params, new_state)
