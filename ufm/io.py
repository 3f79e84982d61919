"""Saving and loading results: the library's only file I/O. Every write is atomic.

A write goes to a temporary file in the target's directory and is moved into place with
``os.replace``, so an interrupted run leaves the previous file intact. Every result carries
metadata: ufm and jax versions, the git revision (when run from a checkout), the time.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Mapping

import jax
import numpy as np

from ufm._version import __version__


def metadata() -> dict:
    """Versions, git revision and time stamp recorded with every result."""
    rev = None
    with contextlib.suppress(Exception):
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent,
                             capture_output=True, text=True, timeout=5).stdout.strip() or None
    return dict(ufm=__version__, jax=jax.__version__, numpy=np.__version__,
                x64=bool(jax.config.jax_enable_x64), backend=jax.default_backend(), git=rev,
                time=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))


def _check_target(path: Path) -> Path:
    path = Path(path)
    if path.exists() and path.is_dir():
        raise ValueError(f"output path {str(path)!r} is a directory; give a file name")
    if not path.parent.exists():
        raise ValueError(f"output directory {str(path.parent)!r} does not exist")
    return path


@contextlib.contextmanager
def _atomic(path: Path, mode: str):
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _jsonable(x: Any):
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.ndarray, jax.Array, np.generic)):
        return _jsonable(np.asarray(x).tolist())
    if isinstance(x, float) and not np.isfinite(x):
        return None if np.isnan(x) else ("inf" if x > 0 else "-inf")
    return x


def save_json(path, data: Mapping, *, with_metadata: bool = True) -> Path:
    """Write ``data`` (plus ``"metadata"``) as JSON, atomically. Returns the path."""
    path = _check_target(Path(path))
    payload = dict(_jsonable(data))
    if with_metadata:
        payload.setdefault("metadata", metadata())
    text = json.dumps(payload, indent=2, allow_nan=False)
    with _atomic(path, "w") as fh:
        fh.write(text + "\n")
    return path


def load_json(path) -> dict:
    with open(path) as fh:
        return json.load(fh)


def save_figure(path, fig, *, dpi: int = 110, **savefig_kwargs) -> Path:
    """Save a matplotlib figure (format from the suffix), atomically. Returns the path."""
    path = _check_target(Path(path))
    fmt = path.suffix.lstrip(".") or "png"
    with _atomic(path, "wb") as fh:
        fig.savefig(fh, format=fmt, dpi=dpi, **savefig_kwargs)
    return path


def save_solution(path, problem, solution, *, seed: int | None = None, extra: Mapping | None = None) -> Path:
    """Save a solution: arrays to ``path`` (.npz) and config/metadata to ``path`` with .json."""
    path = _check_target(Path(path))
    if path.suffix != ".npz":
        raise ValueError(f"solution path must end in .npz, got {str(path)!r}")
    leaves, _ = jax.tree_util.tree_flatten_with_path(solution.params)
    arrays = {jax.tree_util.keystr(k).strip(".[]'").replace("'][", "_").replace(".", "_") or f"leaf{i}":
              np.asarray(v) for i, (k, v) in enumerate(leaves)}
    with _atomic(path, "wb") as fh:
        np.savez(fh, **arrays)
    info = dict(config=problem.config(), seed=seed, value=float(solution.value),
                grad_norm=float(solution.grad_norm), num_steps=int(solution.num_steps),
                status=solution.status_name, arrays=sorted(arrays), **(extra or {}))
    save_json(path.with_suffix(".json"), info)
    return path
