"""The one solve driver: a jitted ``lax.while_loop`` over any stepper."""

from __future__ import annotations

import enum
import functools
import math
import sys
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ufm._types import Array, PyTree, check_int, check_scalar
from ufm.protocols import Problem, Solver, StepInfo, describe_missing


_DEFAULT_CHUNK = 16  # steps per stopping test for gradient-only solvers (ufm / bare scan ≤ 1.05)


class Status(enum.IntEnum):
    """Why a solve stopped."""

    CONVERGED = 0  # (Riemannian) gradient norm ≤ gtol
    MAX_STEPS = 1  # step budget spent
    NONFINITE = 2  # value or gradient became inf/nan
    STALLED = 3  # a step changed neither the point's value nor its gradient norm (line search failed)


class Solution(NamedTuple):
    """Result of :func:`solve` (a pytree: under ``vmap`` every field gains a batch axis).

    Attributes:
        params: final point.
        value: F(params).
        grad_norm: (Riemannian) gradient norm at params.
        num_steps: steps taken.
        status: a :class:`Status` code as an integer array.
        trace: [num_records, 2] array of (value, grad_norm) every ``record_every`` steps (NaN after
            the stop), or None.
        state: the solver state: pass it back as ``solve(..., state=sol.state)`` to continue
            the same run (a warm restart, or the next chunk of a long solve).
        gtol: the gradient-norm tolerance the solve ran with (what ``ufm.compare`` judges the
            gradient norm against).
    """

    params: PyTree
    value: Array
    grad_norm: Array
    num_steps: Array
    status: Array
    trace: Optional[Array]
    state: Any
    gtol: Array = None

    @property
    def status_name(self):
        """Status as a lower-case name; for a batched solution, a nested list of names."""
        codes = np.asarray(self.status)
        if codes.ndim == 0:
            return Status(int(codes)).name.lower()
        return np.vectorize(lambda c: Status(int(c)).name.lower(), otypes=[object])(codes).tolist()


class _Carry(NamedTuple):
    params: PyTree
    state: Any
    value: Array
    grad_norm: Array
    step: Array
    stalled: Array
    trace: Optional[Array]


def _report_progress(step, value, grad_norm):
    print(f"ufm.solve: step {int(step):>8d}  F = {float(value):.15g}  |grad| = {float(grad_norm):.3e}",
          file=sys.stderr, flush=True)


def check_contracts(problem, solver) -> None:
    """Raise ``ValueError`` unless ``problem`` is a :class:`ufm.protocols.Problem` and ``solver``
    a :class:`ufm.protocols.Solver` (naming the members they lack)."""
    for name, obj, protocol in (("problem", problem, Problem), ("solver", solver, Solver)):
        if not isinstance(obj, protocol):
            raise ValueError(f"{name} must implement ufm.protocols.{protocol.__name__}; "
                             f"{type(obj).__name__} lacks {', '.join(describe_missing(obj, protocol))}")


def float_dtype(params):
    """The float dtype of ``params`` (of its first float leaf; JAX's default float if none)."""
    floats = [jnp.result_type(x) for x in jax.tree.leaves(params)
              if jnp.issubdtype(jnp.result_type(x), jnp.floating)]
    return floats[0] if floats else jnp.result_type(float)


def canonical_leaves(tree, params):
    """``tree`` with every real-number leaf (Python number or float array) as an array of the
    params' float dtype.

    A hyperparameter then enters the compiled solve with one abstract type however it was
    written (``1e-2``, ``np.float64(0.02)``, ``jnp.asarray(0.03)``): a new λ or learning rate never
    recompiles, and float32 params keep float32 hyperparameters (no float64 promotion).
    """
    dtype = float_dtype(params)

    def cast(x):
        if isinstance(x, (bool, np.bool_)):
            return x
        if isinstance(x, (int, float, np.integer, np.floating)):
            return np.asarray(x, dtype)  # NumPy, not a device array: ~20 µs less per leaf and call
        if jnp.issubdtype(jnp.result_type(x), jnp.floating):
            # a weak-typed array (jnp.asarray(0.3)) would be another abstract type: cast it too
            keep = getattr(x, "dtype", None) == dtype and not getattr(x, "weak_type", False)
            return x if keep else jnp.asarray(x, dtype)
        return x

    return jax.tree.map(cast, tree)


def check_params(problem, params, name: str = "params") -> None:
    """Raise ``ValueError`` unless ``params`` has the tree structure, shapes and float dtype of
    ``problem.init`` (a missing bias, a transposed W or an int array would solve another problem)."""
    expected = _expected_params(_layout(problem), problem)
    exp_leaves, exp_tree = jax.tree.flatten(expected)
    try:
        got_leaves, got_tree = jax.tree.flatten(params)
    except Exception as exc:  # not a pytree at all
        raise ValueError(f"{name} must be a {type(expected).__name__} pytree, got {type(params).__name__}") from exc
    if got_tree != exp_tree:
        raise ValueError(f"{name} must have the structure of problem.init(key) "
                         f"({_describe(expected)}), got {_describe(params)}")
    dtypes = {}  # first leaf of each dtype
    for path_leaf, exp_leaf, got in zip(jax.tree_util.tree_flatten_with_path(expected)[0],
                                        exp_leaves, got_leaves):
        where = jax.tree_util.keystr(path_leaf[0])
        shape = np.shape(got)
        if tuple(shape) != tuple(exp_leaf.shape):
            raise ValueError(f"{name}{where} must have shape {tuple(exp_leaf.shape)}, got {tuple(shape)}")
        dtype = got.dtype if hasattr(got, "dtype") else np.asarray(got).dtype  # a tracer under jit has one
        if not jnp.issubdtype(dtype, jnp.floating):
            raise ValueError(f"{name}{where} must be a float array, got dtype {dtype}")
        dtypes.setdefault(np.dtype(dtype), where)
    if len(dtypes) > 1:  # the solve runs in one precision: a mixed tree fails deep inside the loop
        raise ValueError(f"{name} must hold arrays of one float dtype, got "
                         + ", ".join(f"{name}{where}: {dt}" for dt, where in dtypes.items()))


_EXPECTED: dict = {}


def _expected_params(layout, problem):
    """``eval_shape`` of ``problem.init``, once per problem layout (tree structure, leaf shapes
    and dtypes: a regression problem's sizes are its targets' shape) and default dtype (tracing
    it cost ~2 ms per solve call)."""
    key = (layout, jnp.result_type(float))
    if key not in _EXPECTED:
        if len(_EXPECTED) > 256:
            _EXPECTED.clear()
        _EXPECTED[key] = jax.eval_shape(lambda: problem.init(jax.random.key(0)))
    return _EXPECTED[key]


def _describe(tree) -> str:
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    if not leaves:
        return f"{type(tree).__name__} with no arrays"
    return type(tree).__name__ + "(" + ", ".join(
        f"{jax.tree_util.keystr(k).lstrip('.')}: {tuple(np.shape(v))}" for k, v in leaves) + ")"


_EXPECTED_STATE: dict = {}


def _layout(tree):
    leaves, structure = jax.tree.flatten(tree)
    return structure, tuple((np.shape(x), jnp.result_type(x)) for x in leaves)


def check_state(problem, solver, params, state) -> None:
    """Raise ``ValueError`` unless ``state`` has the layout (tree structure, shapes, dtypes) of
    ``solver.init(problem, params)``: a state of another solver, problem size or dtype."""
    key = (_layout((problem, solver, params)), type(solver), type(problem))
    if key not in _EXPECTED_STATE:
        if len(_EXPECTED_STATE) > 256:
            _EXPECTED_STATE.clear()
        _EXPECTED_STATE[key] = _layout(jax.eval_shape(solver.init, problem, params))
    structure, shapes = _EXPECTED_STATE[key]
    try:
        got_structure, got_shapes = _layout(state)
    except Exception:  # not a pytree of arrays
        got_structure, got_shapes = None, None
    if got_structure != structure or got_shapes != shapes:
        raise ValueError(f"state must be the Solution.state of an earlier solve with this solver "
                         f"({type(solver).__name__}) on a problem of this size, with params of this "
                         f"dtype; got a {type(state).__name__} of another layout")


def _state_at(problem, solver, params, state):
    """``state`` if it is the solver state at ``params`` of ``problem`` (its value and gradient
    agree with those evaluated there, to rounding), else a fresh ``solver.init(problem, params)``.

    A state carried over from another problem (a new λ) or another point would make the driver
    report its stale value and gradient norm as this problem's, and stop as converged on them.
    """
    fresh = solver.init(problem, params)
    manifold = problem.manifold
    eps = jnp.finfo(fresh.value.dtype).eps
    floor = 64 * eps * jnp.maximum(1.0, jnp.abs(fresh.value))
    value_gap = jnp.abs(state.value - fresh.value)
    grad_gap = manifold.norm(params, jax.tree.map(lambda a, b: a - b, state.grad, fresh.grad))
    grad_norm = manifold.norm(params, fresh.grad)
    same = (value_gap <= floor) & (grad_gap <= floor + jnp.sqrt(eps) * grad_norm)
    return jax.tree.map(lambda a, b: jnp.where(same, a, b), state, fresh)


def default_check_every(solver, record_every: int = 0, progress_every: int = 0) -> int:
    """``solve``'s ``check_every`` when none is given: 16 for a solver that reads only the
    gradient (``solver.reads_value`` False), else 1; lowered to divide the two record periods."""
    chunk = 1 if getattr(solver, "reads_value", True) else _DEFAULT_CHUNK
    return math.gcd(chunk, record_every, progress_every)


def solve(problem, solver, params, *, max_steps: int = 10_000, gtol: float = 1e-10,
          record_every: int = 0, progress_every: int = 0, state: Any = None,
          check_every: Optional[int] = None) -> Solution:
    """Minimise ``problem.value`` from ``params`` with ``solver``, as one compiled loop.

    Stops when the (Riemannian) gradient norm is ≤ ``gtol``, after ``max_steps`` steps, when the
    value or gradient is not finite, or when a step makes no progress at all. It never raises
    inside the trace, so a vmapped sweep returns every outcome.

    Args:
        problem: a :class:`ufm.protocols.Problem` (``value``, ``manifold``, ``init``, ...).
        solver: a :class:`ufm.protocols.Solver`: a stepper with ``init(problem, params)`` and
            ``step(problem, params, state)``.
        params: starting point (a pytree matching ``problem``).
        max_steps: step budget (≥ 1).
        gtol: gradient-norm tolerance (≥ 0).
        record_every: record (value, grad_norm) every this many steps; 0 records nothing.
        progress_every: print step, value and gradient norm to stderr every this many steps, from
            inside the compiled loop (``jax.debug.callback``); 0 prints nothing.
        state: a solver state from an earlier ``Solution.state`` of the same solver at
            ``params``: the run continues where it stopped (L-BFGS memory, momentum, trust radius)
            instead of starting afresh. A state of another layout (another solver, problem size
            or dtype) is refused with ``ValueError``. A state that is not the state at
            ``params`` of this problem (its stored value or gradient differ from those
            evaluated at ``params``: another λ, another starting point) is discarded and the
            solve starts afresh from ``params``, as with ``state=None``: a stale value or
            gradient would otherwise be reported (or stop the solve) as this problem's.
        check_every: test the stopping rules every this many steps (≥ 1). In between, the
            steps run as one fused ``scan`` with no gradient norm, finiteness or stall test
            (and, for a solver whose step reads only the gradient, no objective value): for
            first-order solvers on small problems these are most of the driver's cost per step
            (docs/speed.md). The solve may then run up to ``check_every − 1`` steps past the
            first point where it could have stopped (the status and values are those of the
            point returned); ``max_steps`` is still exact. ``record_every`` and
            ``progress_every`` must be multiples of it. The default (None) is 16 for solvers
            that read only the gradient (``GradientDescent``, ``Adam``: ``solver.reads_value``
            False; lowered to divide ``record_every`` and ``progress_every``) and 1 for the
            others (L-BFGS, the trust region and the line searches take few, expensive steps).

    Returns:
        A :class:`Solution`.

    Examples:
        >>> import jax, ufm
        >>> p = ufm.UFM(3, 4, 3, ufm.losses.MSE(), 1e-2, 1e-2)
        >>> sol = ufm.solve(p, ufm.solvers.LBFGS(), p.init(jax.random.key(0)), gtol=1e-10)
        >>> sol.status_name, bool(sol.grad_norm <= 1e-10)
        ('converged', True)
    """
    check_contracts(problem, solver)
    max_steps = check_int("max_steps", max_steps, low=1, high=2**31 - 1)  # an int32 counter
    record_every = check_int("record_every", record_every, low=0)
    progress_every = check_int("progress_every", progress_every, low=0)
    if check_every is None:
        check_every = default_check_every(solver, record_every, progress_every)
    check_every = check_int("check_every", check_every, low=1, high=2**31 - 1)
    for name, every in (("record_every", record_every), ("progress_every", progress_every)):
        if every % check_every:
            raise ValueError(f"{name} must be 0 or a multiple of check_every={check_every}, got {every}")
    check_scalar("gtol", gtol, low=0.0, high=None, allowed=">= 0")
    check_params(problem, params)
    problem, solver = canonical_leaves((problem, solver), params)
    if state is not None:
        check_state(problem, solver, params, state)
    gtol = np.asarray(gtol, float_dtype(params))
    return _solve(problem, solver, params, gtol, state, max_steps=max_steps,
                  record_every=record_every, progress_every=progress_every,
                  check_every=min(check_every, max_steps))


@functools.partial(jax.jit, static_argnames=("max_steps", "record_every", "progress_every", "check_every"))
def _solve(problem, solver, params, gtol, state=None, *, max_steps, record_every, progress_every=0,
           check_every=1):
    if state is None:
        state = solver.init(problem, params)
    else:
        state = _state_at(problem, solver, params, state)
    value = state.value
    grad_norm = problem.manifold.norm(params, state.grad)
    trace = None
    if record_every:
        trace = jnp.full((max_steps // record_every + 1, 2), jnp.nan, dtype=value.dtype)
        trace = trace.at[0].set(jnp.stack([value, grad_norm]))

    def running(c: _Carry, room: int = 1):
        finite = jnp.isfinite(c.value) & jnp.isfinite(c.grad_norm)
        return (c.step <= max_steps - room) & (c.grad_norm > gtol) & finite & ~c.stalled

    def steps(c: _Carry, k: int):
        """k steps from c: the last one's (params, state, info); no tests in between."""
        if k == 1:
            return solver.step(problem, c.params, c.state)

        value_free = not getattr(solver, "reads_value", True)

        def one(carry, _):
            params, state = carry
            new_params, new_state, _info = solver.step(problem, params, state)
            if value_free:
                # Nothing reads the value until the last step: carrying the old one lets XLA drop
                # the objective's own reduction from the loop (13–21% per step of GD, bench.py).
                new_state = new_state._replace(value=state.value)
            return (new_params, new_state), None  # the info is unused: XLA drops its norm

        if not value_free:
            (new_params, new_state), _ = jax.lax.scan(one, (c.params, c.state), None, length=k)
            return new_params, new_state, StepInfo(new_state.value,
                                                   problem.manifold.norm(new_params, new_state.grad))
        (params, state), _ = jax.lax.scan(one, (c.params, c.state), None, length=k - 1)
        return solver.step(problem, params, state)

    def body(c: _Carry, k: int = 1) -> _Carry:
        new_params, new_state, info = steps(c, k)
        stalled = (info.value == c.value) & (info.grad_norm == c.grad_norm)
        step = c.step + k
        trace = c.trace
        if record_every:
            row = jnp.stack([info.value, info.grad_norm])
            trace = jax.lax.cond(step % record_every == 0,
                                 lambda t: t.at[step // record_every].set(row), lambda t: t, trace)
        if progress_every:
            jax.lax.cond(step % progress_every == 0,
                         lambda: jax.debug.callback(_report_progress, step, info.value, info.grad_norm),
                         lambda: None)
        return _Carry(new_params, new_state, info.value, info.grad_norm, step, stalled, trace)

    c = _Carry(params, state, value, grad_norm, jnp.asarray(0), jnp.asarray(False), trace)
    k = check_every
    c = jax.lax.while_loop(lambda c: running(c, k), lambda c: body(c, k), c)
    if k > 1 and max_steps % k:  # the last max_steps mod k steps, tested one by one
        c = jax.lax.while_loop(running, body, c)
    finite = jnp.isfinite(c.value) & jnp.isfinite(c.grad_norm)
    status = jnp.where(~finite, Status.NONFINITE,
                       jnp.where(c.grad_norm <= gtol, Status.CONVERGED,
                                 jnp.where(c.stalled, Status.STALLED, Status.MAX_STEPS)))
    return Solution(c.params, c.value, c.grad_norm, c.step, status, c.trace, c.state,
                    jnp.broadcast_to(gtol, c.value.shape).astype(c.value.dtype))
