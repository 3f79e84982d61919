"""Vmapped sweeps over hyperparameters and seeds, compiled once per shape.

Hyperparameters are array leaves of the problem (and of its loss), so a sweep is one ``vmap`` of
the solve driver: one compilation, every outcome returned (DESIGN.md, Speed).

Examples:
    >>> import jax, jax.numpy as jnp, ufm
    >>> p = ufm.UFM(3, 2, 3, ufm.losses.MSE(), 1e-2, 1e-2, bias=False)
    >>> sols = vmap_solve(p, ufm.solvers.LBFGS(), p.init(jax.random.key(0)),
    ...                   {"lambda_W": jnp.array([1e-2, 2e-2])}, gtol=1e-10)
    >>> sols.value.shape
    (2,)
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Mapping, Sequence

import jax
import jax.numpy as jnp

from ufm._types import check_int
from ufm.solvers._driver import Solution, _solve


def replace_hyper(obj, name: str, value):
    """``dataclasses.replace`` along a dotted path, e.g. ``"loss.alpha"``."""
    head, _, rest = name.partition(".")
    if not dataclasses.is_dataclass(obj) or head not in {f.name for f in dataclasses.fields(obj)}:
        raise ValueError(f"unknown hyperparameter {name!r} for {type(obj).__name__}")
    if rest:
        return dataclasses.replace(obj, **{head: replace_hyper(getattr(obj, head), rest, value)})
    return dataclasses.replace(obj, **{head: value})


def vmap_solve(problem, solver, params, over: Mapping[str, jax.Array], *,
               params_batched: bool = False, max_steps: int = 10_000, gtol: float = 1e-10) -> Solution:
    """Solve ``problem`` for every row of the hyperparameter grid ``over`` in one compiled call.

    Args:
        problem: the base problem.
        solver: a stepper.
        params: a start shared by every row, or (``params_batched=True``) one start per row.
        over: hyperparameter name (a problem field, or dotted like ``"loss.alpha"``) -> values
            [B]; all of the same length.
        params_batched: whether ``params`` has a leading batch axis.
        max_steps, gtol: as in :func:`ufm.solve`.

    Returns:
        A :class:`ufm.Solution` whose fields have a leading axis of size B.
    """
    if not over:
        raise ValueError("over must name at least one hyperparameter")
    names = tuple(sorted(over))
    values = tuple(jnp.asarray(over[n]) for n in names)
    sizes = {v.shape[0] if v.ndim else None for v in values}
    if len(sizes) != 1 or None in sizes:
        raise ValueError(f"every array in over must be 1-D of one length, got shapes "
                         f"{[v.shape for v in values]}")
    for n, v in zip(names, values):  # validation before tracing
        replace_hyper(problem, n, v)
    check_int("max_steps", max_steps, low=1)
    return _vmap_solve(problem, solver, params, values, jnp.asarray(gtol), names=names,
                       max_steps=int(max_steps), params_batched=params_batched)


@functools.partial(jax.jit, static_argnames=("names", "max_steps", "params_batched"))
def _vmap_solve(problem, solver, params, values, gtol, *, names, max_steps, params_batched):
    def one(vals, start):
        prob = problem
        for n, v in zip(names, vals):
            prob = replace_hyper(prob, n, v)
        return _solve(prob, solver, start, gtol, max_steps=max_steps, record_every=0)

    return jax.vmap(one, in_axes=(0, 0 if params_batched else None))(values, params)


def multi_start(problem, solver, key: jax.Array, num_starts: int,
                scales: Sequence[float] | float = 1.0, *, max_steps: int = 10_000,
                gtol: float = 1e-10) -> Solution:
    """Solve from ``num_starts`` random starts per init scale, in one compiled call.

    Starts are ``problem.init(key_i, scale)`` for independent keys and every scale in ``scales``
    (B = num_starts × len(scales) runs). Returns the batched Solution; pick the best with
    :func:`best`.
    """
    num_starts = check_int("num_starts", num_starts, low=1)
    scales = jnp.atleast_1d(jnp.asarray(scales, dtype=jnp.asarray(0.0).dtype))
    keys = jax.random.split(key, num_starts * scales.shape[0])
    scale_per_run = jnp.repeat(scales, num_starts)
    check_int("max_steps", max_steps, low=1)
    return _multi_start(problem, solver, keys, scale_per_run, jnp.asarray(gtol), max_steps=int(max_steps))


@functools.partial(jax.jit, static_argnames=("max_steps",))
def _multi_start(problem, solver, keys, scales, gtol, *, max_steps):
    def one(key, scale):
        return _solve(problem, solver, problem.init(key, scale), gtol, max_steps=max_steps,
                      record_every=0)

    return jax.vmap(one)(keys, scales)


def best(solutions: Solution) -> Solution:
    """The run with the lowest finite value from a batched Solution (unbatched result)."""
    values = jnp.where(jnp.isfinite(solutions.value), solutions.value, jnp.inf)
    i = int(jnp.argmin(values))
    return jax.tree.map(lambda x: x[i], solutions)
