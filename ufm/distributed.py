"""Sweeps across JAX processes and machines, on JAX's own multi-controller runtime.

``jax.distributed`` connects the processes: one per machine, or several per machine, started by
SLURM, ``mpirun``, or by hand with three environment variables. Each process solves its share of
a grid (round-robin). The results are gathered to process 0, which writes them once, atomically.
There is no scheduler of our own. On CPUs the collectives are gloo's.

Starting a two-process sweep by hand (on one machine, or with the coordinator's host name)::

    JAX_COORDINATOR_ADDRESS=127.0.0.1:12355 JAX_NUM_PROCESSES=2 JAX_PROCESS_ID=0 ufm sweep ... --distributed &
    JAX_COORDINATOR_ADDRESS=127.0.0.1:12355 JAX_NUM_PROCESSES=2 JAX_PROCESS_ID=1 ufm sweep ... --distributed

Under SLURM (``srun ufm sweep ... --distributed``) JAX finds the coordinator, the process count and
each process's rank by itself. Docs: docs/speed.md, "Sweeps across processes".

Examples:
    >>> process_share(7, process_index=1, process_count=3)
    [1, 4]
"""

from __future__ import annotations

import json
import os
from typing import Any, Sequence

import numpy as np

def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> tuple[int, int]:
    """Join the group of processes; returns (this process's index, the process count).

    Arguments not given come from JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID.
    Where none of these is set either, JAX detects a cluster by itself (SLURM, Open MPI, ...).
    Call it before anything else touches JAX's backends. Calling it again is a no-op.

    Raises:
        ValueError: a count or rank that is not an integer in range, or no way to find the group.
    """
    import jax

    if _is_initialized():
        return jax.process_index(), jax.process_count()
    env = os.environ
    coordinator_address = coordinator_address or env.get("JAX_COORDINATOR_ADDRESS") or None
    num_processes = _int_or_none("num_processes", num_processes if num_processes is not None
                                 else env.get("JAX_NUM_PROCESSES"), low=1)
    process_id = _int_or_none("process_id", process_id if process_id is not None
                              else env.get("JAX_PROCESS_ID"), low=0)
    if num_processes is not None and process_id is not None and process_id >= num_processes:
        raise ValueError(f"process_id must be in [0, {num_processes - 1}], got {process_id}")
    given = [x is not None for x in (coordinator_address, num_processes, process_id)]
    if any(given) and not all(given):
        raise ValueError("a group of processes needs all three of coordinator_address, num_processes and "
                         "process_id (or JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID)")
    # gloo for cross-process collectives on CPU; harmless where a GPU backend brings its own
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(coordinator_address, num_processes, process_id)
    except (RuntimeError, ValueError) as exc:
        raise ValueError(f"jax.distributed could not start: {' '.join(str(exc).split())[:300]}") from None
    return jax.process_index(), jax.process_count()


def shutdown() -> None:
    """Leave the group (waits for the others; a no-op when not initialised)."""
    import jax

    if _is_initialized():
        jax.distributed.shutdown()


def _is_initialized() -> bool:
    import jax

    check = getattr(jax.distributed, "is_initialized", None)
    if check is not None:
        return bool(check())
    from jax._src import distributed as _dist  # older JAX: no public query

    return _dist.global_state.client is not None


def _int_or_none(name, value, low):
    if value is None or value == "":
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}") from None
    if isinstance(value, bool) or number < low or str(number) != str(value).strip():
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return number


def process_share(num_items: int, *, process_index: int | None = None,
                  process_count: int | None = None) -> list[int]:
    """The indices of ``num_items`` that this process solves: every ``process_count``-th one,
    starting at its own index (round-robin keeps neighbouring, similar grid points apart)."""
    import jax

    index = jax.process_index() if process_index is None else process_index
    count = jax.process_count() if process_count is None else process_count
    return list(range(index, num_items, count))


def gather_to_process_0(records: Sequence[tuple[int, Any]]) -> list | None:
    """Every process's (index, record) pairs, as one list ordered by index, on process 0; None
    on the others. Records must be JSON-serialisable (NaN and ±inf allowed).

    With a single process it returns the records at once; otherwise one gloo (or NCCL)
    all-gather of the JSON bytes.
    """
    import jax

    if jax.process_count() == 1:
        return [rec for _, rec in sorted(records, key=lambda pair: pair[0])]
    from jax.experimental import multihost_utils

    payload = np.frombuffer(json.dumps([[int(i), rec] for i, rec in records]).encode(), np.uint8)
    sizes = np.asarray(multihost_utils.process_allgather(np.array([payload.size], np.int64))).reshape(-1)
    buffer = np.zeros(int(sizes.max()), np.uint8)
    buffer[:payload.size] = payload
    everything = np.asarray(multihost_utils.process_allgather(buffer))
    if jax.process_index() != 0:
        return None
    pairs = [pair for rank in range(len(sizes))
             for pair in json.loads(bytes(everything[rank][:sizes[rank]]).decode())]
    return [rec for _, rec in sorted(pairs, key=lambda pair: pair[0])]


def all_ok(ok: bool) -> bool:
    """True on every process when ``ok`` is True on every process (a barrier, too)."""
    import jax

    if jax.process_count() == 1:
        return bool(ok)
    from jax.experimental import multihost_utils

    return bool(np.all(np.asarray(multihost_utils.process_allgather(np.array([bool(ok)])))))
