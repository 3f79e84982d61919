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

import concurrent.futures
import dataclasses
import functools
import os
from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ufm._types import (SOLVE_COPIES, available_memory, check_int, check_scalar, default_float,
                        replace_keeping_derived)
from ufm.solvers._driver import (Solution, _solve, canonical_leaves, check_contracts, check_params,
                                default_check_every, float_dtype)


def replace_hyper(obj, name: str, value):
    """``dataclasses.replace`` along a dotted path, e.g. ``"loss.alpha"``."""
    head, _, rest = name.partition(".")
    if not dataclasses.is_dataclass(obj) or head not in {f.name for f in dataclasses.fields(obj)}:
        raise ValueError(f"unknown hyperparameter {name!r} for {type(obj).__name__}")
    if head in getattr(type(obj), "_pytree_meta", ()):
        # A static field (a size, the bias switch, an activation) is part of the compiled
        # program, not an array leaf: a batched solve would silently keep the base value.
        raise ValueError(f"{name!r} is a static field of {type(obj).__name__} (it sets the shapes or "
                         "the program), not a hyperparameter leaf: it cannot be swept in one compiled "
                         "solve; build one problem per value")
    if rest:
        return replace_keeping_derived(obj, **{head: replace_hyper(getattr(obj, head), rest, value)})
    return replace_keeping_derived(obj, **{head: value})


def _batch_placement(devices, size: int):
    """(padded size, sharding of batched leaves, sharding of shared leaves) for ``devices``.

    The batch axis is split over a 1-D mesh; it is padded (by repeating its last row) to a multiple
    of the device count, and the caller slices the padding off the result.
    """
    devices = list(jax.devices() if devices == "all" else devices)
    if not devices:
        raise ValueError("devices must name at least one device")
    mesh = jax.sharding.Mesh(np.asarray(devices), ("batch",))
    padded = -(-size // len(devices)) * len(devices)
    P = jax.sharding.PartitionSpec
    return padded, jax.sharding.NamedSharding(mesh, P("batch")), jax.sharding.NamedSharding(mesh, P())


def _pad_rows(tree, padded: int):
    return jax.tree.map(lambda x: jnp.concatenate([x, jnp.repeat(x[-1:], padded - x.shape[0], axis=0)])
                        if padded > x.shape[0] else x, tree)


def vmap_solve(problem, solver, params, over: Mapping[str, jax.Array], *,
               params_batched: bool = False, max_steps: int = 10_000, gtol: float = 1e-10,
               devices=None, batching: str | int = "auto") -> Solution:
    """Solve ``problem`` for every row of the hyperparameter grid ``over`` in one compiled call.

    Args:
        problem: the base problem.
        solver: a stepper.
        params: a start shared by every row, or (``params_batched=True``) one start per row.
        over: hyperparameter name (a problem field, or dotted like ``"loss.alpha"``) -> values
            [B]; all of the same length.
        params_batched: whether ``params`` has a leading batch axis.
        max_steps, gtol: as in :func:`ufm.solve`.
        devices: ``None`` (default placement), ``"all"`` (every local device) or a list of
            devices: the grid is split over them along its batch axis (a 1-D ``Mesh`` with
            ``NamedSharding``; one program, each device solving its share of the rows).
        batching: how the rows share the compiled program. ``"vmap"``: all rows in lockstep, the
            loop running until the slowest row stops (each stopped row still pays for every
            step; right where a step of B rows costs about one step, on a GPU or TPU).
            ``"map"``: one row after another inside the same program (``lax.map``); each row
            stops on its own. An integer b: rows in vmapped chunks of b, chunk after chunk.
            ``"loop"``: the single-problem program of :func:`ufm.solve` (compiled once, the
            row's hyperparameters passed as arguments) called for every row, the rows running
            concurrently on :func:`loop_workers` threads; each row's solution is bitwise the
            one ``ufm.solve`` returns for it. Not with ``devices``. ``"auto"`` (default):
            ``"loop"`` on a CPU backend, ``"vmap"`` on accelerators or with ``devices``.
            Measured on a 2-core CPU (docs/speed.md, paper-size CE problems, float64, the trust
            region): ``"loop"`` about 2× the rows solved one after another, ``"map"`` about 1×,
            vmapped chunks and lockstep ``"vmap"`` 0.05–0.4× (the lanes' CG iterations and
            rejected trials do not stay in step).

    Returns:
        A :class:`ufm.Solution` whose fields have a leading axis of size B.
    """
    check_contracts(problem, solver)
    if not isinstance(over, Mapping):
        raise ValueError(f"over must be a mapping of hyperparameter names to 1-D value arrays "
                         f"(e.g. {{'lambda_W': [1e-3, 1e-2]}}), got {type(over).__name__}")
    if not over:
        raise ValueError("over must name at least one hyperparameter")
    names = tuple(sorted(over))
    values = tuple(jnp.asarray(over[n]) for n in names)
    sizes = {v.shape[0] if v.ndim else None for v in values}
    if len(sizes) != 1 or None in sizes:
        raise ValueError(f"every array in over must be 1-D of one length, got shapes "
                         f"{[v.shape for v in values]}")
    for n, v in zip(names, values):  # validation before tracing, one grid value at a time
        for x in np.unique(np.asarray(v)):
            replace_hyper(problem, n, x)
    check_int("max_steps", max_steps, low=1, high=2**31 - 1)
    check_scalar("gtol", gtol, low=0.0, high=None, allowed=">= 0")
    batching = resolve_batching(batching, devices)
    size = sizes.pop()
    if params_batched:
        rows = {np.shape(x)[0] if np.ndim(x) else None for x in jax.tree.leaves(params)}
        if rows != {size}:
            raise ValueError(f"params_batched=True needs a leading axis of size {size} (the grid) on "
                             f"every leaf of params, got sizes {sorted(rows, key=str)}")
    check_params(problem, jax.tree.map(lambda x: x[0], params) if params_batched else params)
    problem, solver = canonical_leaves((problem, solver), params)
    values = canonical_leaves(values, params)
    if devices is not None:
        padded, batched, shared = _batch_placement(devices, size)
        values = jax.device_put(_pad_rows(values, padded), batched)
        params = jax.device_put(_pad_rows(params, padded) if params_batched else params,
                                batched if params_batched else shared)
    gtol = jnp.asarray(gtol, float_dtype(params))
    if batching == "loop" and size == 0:
        batching = "map"  # an empty grid: the compiled map returns the empty Solution's structure
    if batching == "loop":
        return _loop_solve(problem, solver, params, values, np.asarray(gtol), names=names, size=size,
                           max_steps=int(max_steps), params_batched=params_batched)
    sols = _vmap_solve(problem, solver, params, values, gtol, names=names, max_steps=int(max_steps),
                       params_batched=params_batched, batching=batching)
    return sols if devices is None else jax.tree.map(lambda x: x[:size], sols)


def resolve_batching(batching, devices=None):
    """``batching`` of :func:`vmap_solve` checked, with ``"auto"`` resolved for this backend:
    ``"vmap"``, ``"map"``, ``"loop"`` or a chunk size ≥ 1."""
    if isinstance(batching, str):
        if batching not in ("auto", "vmap", "map", "loop"):
            raise ValueError(f"batching must be 'auto', 'vmap', 'map', 'loop' or a chunk size >= 1, "
                             f"got {batching!r}")
        if batching == "loop" and devices is not None:
            raise ValueError("batching='loop' runs on the default device: with devices use 'vmap', "
                             "'map' or a chunk size")
        if batching == "auto":
            return "vmap" if devices is not None or jax.default_backend() != "cpu" else "loop"
        return batching
    return check_int("batching", batching, low=1)


def loop_workers(params) -> int:
    """Threads that :func:`vmap_solve`'s ``"loop"`` runs rows on: twice the usable cores, at most
    16, and no more than half this machine's memory holds solves of ``params``' size.

    One small solve keeps about 1.3 of a 2-core CPU busy (host work between XLA's kernels, its
    loops' own bookkeeping); concurrent rows fill the gaps. Measured on 2 cores (64 paper-size
    CE rows, the trust region): 17.8 solves/s with one thread, 35.7 with 2, 40.7 with 4.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    per_solve = sum(np.size(x) * _itemsize(x) for x in jax.tree.leaves(params))
    by_memory = available_memory() // 2 // max(1, per_solve * SOLVE_COPIES)
    return int(max(1, min(16, 2 * cores, by_memory)))


def _itemsize(leaf) -> int:
    """Bytes per element of an array, a ShapeDtypeStruct or a Python scalar."""
    dtype = getattr(leaf, "dtype", None)
    return np.dtype(dtype if dtype is not None else np.result_type(leaf)).itemsize


def _loop_solve(problem, solver, params, values, gtol, *, names, size, max_steps, params_batched):
    """The rows through :func:`ufm.solve`'s program: one compilation (the hyperparameters are
    arguments of the same shape and dtype in every row), each row stopping on its own, run on
    :func:`loop_workers` threads (XLA releases the GIL); the solutions stacked along a leading
    axis in row order."""
    # Rows sliced and stacked on the host: device slices and stacks would compile a small
    # program per leaf shape, which costs a cold loop more than its solves at paper size.
    host = [np.asarray(v) for v in values]
    if params_batched:
        params = jax.tree.map(np.asarray, params)
    check_every = min(default_check_every(solver), max_steps)

    def row(i):
        prob = problem
        for n, v in zip(names, host):
            prob = replace_hyper(prob, n, v[i])
        start = jax.tree.map(lambda x: jnp.asarray(x[i]), params) if params_batched else params
        # called exactly as ufm.solve calls it, so that both share one compiled program
        return jax.block_until_ready(_solve(prob, solver, start, gtol, None, max_steps=max_steps,
                                            record_every=0, progress_every=0, check_every=check_every))

    rows = [row(0)]  # compiles, once, before the threads share the program
    workers = min(loop_workers(jax.tree.map(lambda x: x[0], params) if params_batched else params), size - 1)
    if workers > 1:
        with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="ufm-loop") as pool:
            rows += list(pool.map(row, range(1, size)))
    else:
        rows += [row(i) for i in range(1, size)]
    return jax.tree.map(lambda *leaves: jnp.asarray(np.stack([np.asarray(x) for x in leaves])), *rows)


@functools.partial(jax.jit, static_argnames=("names", "max_steps", "params_batched", "batching"))
def _vmap_solve(problem, solver, params, values, gtol, *, names, max_steps, params_batched,
                batching="vmap"):
    def one(vals, start):
        prob = problem
        for n, v in zip(names, vals):
            prob = replace_hyper(prob, n, v)
        return _solve(prob, solver, start, gtol, max_steps=max_steps, record_every=0)

    if batching == "vmap":
        return jax.vmap(one, in_axes=(0, 0 if params_batched else None))(values, params)
    # lax.map: each row runs its own loop to its own stop (a chunk size b vmaps b rows at a time)
    if params_batched:
        return jax.lax.map(lambda a: one(*a), (values, params),
                           batch_size=None if batching == "map" else batching)
    return jax.lax.map(lambda v: one(v, params), values, batch_size=None if batching == "map" else batching)


def multi_start(problem, solver, key: jax.Array, num_starts: int,
                scales: Sequence[float] | float = 1.0, *, max_steps: int = 10_000,
                gtol: float = 1e-10, restarts: int = 0, batching: str = "vmap",
                devices=None) -> Solution:
    """Solve from ``num_starts`` random starts per init scale, in one compiled call.

    Starts are ``problem.init(key_i, scale)`` for independent keys and every scale in ``scales``
    (B = num_starts × len(scales) runs; run i has scale ``scales[i // num_starts]``). Returns the
    batched Solution; pick the best with :func:`best` and summarise the distribution of final
    values with :func:`summarize`.

    Args:
        restarts: re-solve each run from its own output this many times (fresh solver state:
            polishes L-BFGS runs that stalled in their line search, e.g. on ReLU models).
        batching: ``"vmap"`` runs all starts in lockstep (fast on accelerators, but XLA compiles
            the batched loop slowly: ~15 s for a small deep model on CPU); ``"map"`` runs them one
            after another inside the same compiled program (``lax.map``; ~3× faster to compile,
            the better choice for small CPU problems).
        devices: ``None``, ``"all"`` or a list of devices to split the starts over (as in
            :func:`vmap_solve`).
    """
    check_contracts(problem, solver)
    if not (isinstance(key, jax.Array) and not isinstance(key, jax.core.Tracer)
            and (jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
                 or (key.dtype == jnp.uint32 and key.ndim == 1))):
        raise ValueError(f"key must be one JAX PRNG key (jax.random.key(seed)), got {key!r}")
    num_starts = check_int("num_starts", num_starts, low=1)
    restarts = check_int("restarts", restarts, low=0)
    if batching not in ("vmap", "map"):
        raise ValueError(f"batching must be 'vmap' or 'map', got {batching!r}")
    try:
        scales = np.atleast_1d(np.asarray(scales, dtype=np.float64))
    except (TypeError, ValueError):
        raise ValueError(f"scales must be a number >= 0 or a 1-D sequence of them, got {scales!r}") from None
    if scales.ndim != 1 or scales.size == 0:
        raise ValueError(f"scales must be a number >= 0 or a non-empty 1-D sequence of them, got {scales!r}")
    check_scalar("scales", scales, low=0.0, high=None, allowed=">= 0", shape=None)
    check_int("max_steps", max_steps, low=1, high=2**31 - 1)
    check_scalar("gtol", gtol, low=0.0, high=None, allowed=">= 0")
    scales = jnp.asarray(scales, dtype=default_float())
    keys = jax.random.split(key, num_starts * scales.shape[0])
    scale_per_run = jnp.repeat(scales, num_starts)
    size = keys.shape[0]
    if devices is not None:
        padded, batched, _ = _batch_placement(devices, size)
        keys, scale_per_run = jax.device_put(_pad_rows((keys, scale_per_run), padded), batched)
    problem, solver = canonical_leaves((problem, solver), scales)
    sols = _multi_start(problem, solver, keys, scale_per_run, jnp.asarray(gtol, scales.dtype),
                        max_steps=int(max_steps),
                        restarts=restarts, batching=batching)
    return sols if devices is None else jax.tree.map(lambda x: x[:size], sols)


@functools.partial(jax.jit, static_argnames=("max_steps", "restarts", "batching"))
def _multi_start(problem, solver, keys, scales, gtol, *, max_steps, restarts=0, batching="vmap"):
    def one(key, scale):
        sol = _solve(problem, solver, problem.init(key, scale), gtol, max_steps=max_steps,
                     record_every=0)
        if not restarts:
            return sol

        def again(_, s):  # one loop body, compiled once however many restarts
            new = _solve(problem, solver, s.params, gtol, max_steps=max_steps, record_every=0)
            return new._replace(num_steps=s.num_steps + new.num_steps)

        return jax.lax.fori_loop(0, restarts, again, sol)

    if batching == "map":
        return jax.lax.map(lambda args: one(*args), (keys, scales))
    return jax.vmap(one)(keys, scales)


def reach_fraction(values, target: float, rtol: float = 1e-6) -> float:
    """Fraction of runs whose final value is within ``rtol`` (relative to |target|, absolute
    when target is 0) of ``target``, e.g. the global value of a closed form.

    Examples:
        >>> reach_fraction([1.0, 1.0 + 1e-9, 1.5, float("nan")], 1.0)
        0.5
    """
    v = np.asarray(values, dtype=float).ravel()
    tol = rtol * (abs(target) if target != 0 else 1.0)
    return float(np.mean(np.abs(v - target) <= tol)) if v.size else float("nan")


def summarize(solutions: Solution, target: float | None = None, rtol: float = 1e-6,
              scales: Sequence[float] | None = None) -> dict:
    """JSON-friendly distribution of a multi-start's final values.

    Returns the best value and its index, the sorted final values, the distinct value levels
    (values merged within ``rtol``) with their counts, status counts, and, given ``target``, the
    fraction of runs reaching it and the number of runs *below* it by more than ``rtol`` (which
    would contradict a claimed global value). With ``scales`` (as passed to
    :func:`multi_start`), the reach fraction per init scale as well.
    """
    values = np.asarray(solutions.value, dtype=float).ravel()
    finite = np.where(np.isfinite(values), values, np.inf)
    order = np.sort(finite)
    levels: list[list[float]] = []
    for v in order[np.isfinite(order)]:
        if levels and abs(v - levels[-1][0]) <= rtol * max(abs(levels[-1][0]), 1e-300):
            levels[-1][1] += 1
        else:
            levels.append([float(v), 1])
    status = np.asarray(solutions.status).ravel()
    out = dict(num_runs=int(values.size), best_index=int(np.argmin(finite)),
               best_value=float(np.min(finite)), values=[float(v) for v in values],
               levels=[dict(value=v, count=c) for v, c in levels],
               status_counts={int(s): int(np.sum(status == s)) for s in np.unique(status)},
               num_steps_median=float(np.median(np.asarray(solutions.num_steps))))
    if target is not None:
        tol = rtol * (abs(target) if target != 0 else 1.0)
        out.update(target=float(target), rtol=rtol, reach_fraction=reach_fraction(values, target, rtol),
                   num_below_target=int(np.sum(values < target - tol)))
        if scales is not None:
            scales = np.atleast_1d(np.asarray(scales, dtype=float))
            per = values.reshape(len(scales), -1)
            out["reach_fraction_per_scale"] = {f"{s:g}": reach_fraction(row, target, rtol)
                                               for s, row in zip(scales, per)}
    return out


def best(solutions: Solution) -> Solution:
    """The run with the lowest finite value from a batched Solution (unbatched result)."""
    values = jnp.where(jnp.isfinite(solutions.value), solutions.value, jnp.inf)
    i = int(jnp.argmin(values))
    return jax.tree.map(lambda x: x[i], solutions)
