"""One problem across several devices: its samples (H along N, and the per-sample targets) split
over a 1-D mesh.

:func:`shard_samples` places the arrays; the ordinary :func:`ufm.solve` then compiles one SPMD
program from the input shardings (jit propagates them), each device holding N / D rows of H and of
the targets, and the sums over samples (the mean loss, ‖H‖², the gradient of W) become
all-reduces. Nothing else changes: same solver, same steps, the same value to rounding.

Examples:
    >>> import jax, ufm
    >>> p = ufm.UFM(4, 2, 3, ufm.losses.CrossEntropy(), 5e-3, 5e-3)
    >>> problem, params = ufm.sharding.shard_samples(p, p.init(jax.random.key(0)),
    ...                                              devices=jax.devices()[:1])
    >>> sol = ufm.solve(problem, ufm.solvers.LBFGS(), params, gtol=1e-6)
    >>> sol.status_name, len(sol.params.H.sharding.device_set)
    ('converged', 1)
"""

from __future__ import annotations

from typing import Sequence

import jax
import numpy as np

from ufm.problems import DeepUFM, MultiLabelUFM, RegressionUFM, SphericalUFM, UFM
from ufm.solvers._driver import check_params

AXIS = "samples"

# Every supported model keeps its per-sample targets (integer labels [N], multi-hot rows [N, K],
# regression targets [N, t]) in the problem leaf "targets" and its features in the params leaf
# "H" [N, d] (the first layer's for DeepUFM), both sample-major; every other leaf is replicated.
# Named per type rather than guessed from "an axis of length N" (K or d may equal N).
SUPPORTED = (UFM, DeepUFM, SphericalUFM, MultiLabelUFM, RegressionUFM)


def _devices(devices) -> list:
    if isinstance(devices, str):
        if devices != "all":
            raise ValueError(f"devices must be 'all' or a non-empty sequence of jax devices, got {devices!r}")
        return list(jax.devices())
    if not isinstance(devices, (Sequence, np.ndarray)) or len(devices) == 0:
        raise ValueError(f"devices must be 'all' or a non-empty sequence of jax devices, got {devices!r}")
    devices = list(devices)
    for i, d in enumerate(devices):
        if not isinstance(d, jax.Device):
            raise ValueError(f"devices must be 'all' or a non-empty sequence of jax devices; devices[{i}] "
                             f"is {d!r}")
    if len(set(devices)) != len(devices):
        raise ValueError(f"devices must name each device once, got {devices!r}")
    return devices


def _divisors(n: int, at_most: int) -> list[int]:
    return [k for k in range(1, min(n, at_most) + 1) if n % k == 0]


def shard_samples(problem, params, devices="all"):
    """``problem`` and ``params`` placed on ``devices`` with their samples split: pass both to
    :func:`ufm.solve` as usual.

    A 1-D :class:`jax.sharding.Mesh` with axis ``"samples"`` is built over the devices. H (the
    features, sample-major) and the problem's per-sample targets (integer labels, multi-hot rows,
    regression targets) are split along their sample axis with
    ``NamedSharding(mesh, P("samples"))``; every other array (W, b, the hyperparameters) is
    replicated. The compiled solve is one SPMD program over the devices; its result H comes back
    split the same way. The number of samples N must be a multiple of the device count: padding
    with extra samples would change the objective.

    Args:
        problem: a :class:`ufm.UFM`, :class:`ufm.DeepUFM`, :class:`ufm.SphericalUFM`,
            :class:`ufm.MultiLabelUFM` or :class:`ufm.RegressionUFM`.
        params: a start for ``problem`` (the structure and shapes of ``problem.init(key)``).
        devices: ``"all"`` (``jax.devices()``, default) or a non-empty sequence of distinct jax
            devices whose count divides N.

    Returns:
        ``(problem, params)`` with the same values, placed on the mesh.

    Raises:
        ValueError: an unsupported problem, params that do not fit it, ``devices`` not ``"all"``
            nor a non-empty sequence of distinct devices, or a device count that does not divide N
            (the message lists the counts that do).

    Examples:
        >>> import jax, ufm
        >>> p = ufm.UFM(3, 2, 3, ufm.losses.MSE(), 1e-2, 1e-2)
        >>> problem, params = shard_samples(p, p.init(jax.random.key(0)), devices=jax.devices()[:1])
        >>> tuple(params.H.sharding.spec), tuple(params.W.sharding.spec)
        (('samples',), ())
        >>> shard_samples(p, params, devices=[])
        Traceback (most recent call last):
        ...
        ValueError: devices must be 'all' or a non-empty sequence of jax devices, got []
    """
    if type(problem) not in SUPPORTED:
        names = ", ".join(t.__name__ for t in SUPPORTED)
        raise ValueError(f"problem must be one of {names}, got {type(problem).__name__}")
    check_params(problem, params)
    devices = _devices(devices)
    N, D = problem.num_samples, len(devices)
    if N % D:
        raise ValueError(f"devices must hold a number of devices that divides the number of samples "
                         f"N = {N} (each device takes N / D samples; padding would change the "
                         f"objective): one of {_divisors(N, max(D, len(jax.devices())))}, got {D} devices")
    mesh = jax.sharding.Mesh(np.asarray(devices, dtype=object), (AXIS,))
    P = jax.sharding.PartitionSpec
    replicated = jax.sharding.NamedSharding(mesh, P())

    split = jax.sharding.NamedSharding(mesh, P(AXIS))

    def placer(sample_leaf: str):
        def place(path, leaf):
            if isinstance(leaf, (bool, int, float, complex)):
                return leaf  # a Python number: a static-free scalar, left as written
            top = len(path) == 1 and isinstance(path[0], jax.tree_util.GetAttrKey)
            return jax.device_put(leaf, split if top and path[0].name == sample_leaf else replicated)
        return place

    problem = jax.tree_util.tree_map_with_path(placer("targets"), problem)
    params = jax.tree_util.tree_map_with_path(placer("H"), params)
    return problem, params


__all__ = ["shard_samples", "SUPPORTED"]
