"""Saving and loading results: the library's only file I/O. Every write is atomic.

A write goes to a temporary file in the target's directory and is moved into place with
``os.replace``, so an interrupted run leaves the previous file intact; the temporary file is
removed on any exception, on Ctrl-C and on SIGTERM (the signal is re-delivered once the file is
cleaned up). Files get the permissions a plain ``open`` would give (the user's umask; an existing
file keeps its mode), and a symbolic link as target is written through: the link stays, its
target receives the data. Every result carries metadata: ufm, jax and NumPy versions, the git
revision (``<sha>-dirty`` when the checkout has uncommitted changes), the time.

A saved solution is one file, ``name.npz``: its arrays and, inside it, its JSON record (config,
solver and settings, seed, outcome, metadata). ``name.json`` beside it is a human-readable copy
of the same record; the old copy is deleted before the new npz is moved into place, so an
interrupted save never leaves a new npz beside an old json, and :func:`load_solution` checks that
a json present beside the npz is the npz's own record.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import signal
import subprocess
import tempfile
import threading
import zipfile
import zlib
from pathlib import Path
from typing import Any, Mapping

import jax
import numpy as np

from ufm._version import __version__

RECORD_KEY = "__record__"  # the npz entry holding the JSON record
TARGETS_KEY = "__targets__"  # regression targets that the config records by digest only


def git_revision() -> str | None:
    """HEAD of the checkout ufm runs from, ``<sha>-dirty`` with uncommitted changes to tracked
    files; None when ufm is not run from its own git checkout (an installed package)."""
    package = Path(__file__).resolve().parent
    with contextlib.suppress(Exception):
        def git(*args):
            return subprocess.run(["git", *args], cwd=package, capture_output=True, text=True,
                                  timeout=5, check=True).stdout.strip()

        # Only ufm's own repository: an installed copy may sit inside someone else's checkout.
        if Path(git("rev-parse", "--show-toplevel")).resolve() != package.parent:
            return None
        rev = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
        return f"{rev}-dirty" if dirty else rev
    return None


def metadata() -> dict:
    """Versions, git revision and time stamp recorded with every result."""
    return dict(ufm=__version__, jax=jax.__version__, numpy=np.__version__,
                x64=bool(jax.config.jax_enable_x64), backend=jax.default_backend(), git=git_revision(),
                time=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))


def _check_target(path) -> Path:
    """The file a write to ``path`` must replace: a symbolic link is followed (written through)."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"output path {str(path)!r} is a directory; give a file name")
    real = Path(os.path.realpath(path)) if path.is_symlink() else path
    if real.is_dir():
        raise ValueError(f"output path {str(path)!r} links to a directory; give a file name")
    if not real.parent.is_dir():
        raise ValueError(f"output directory {str(real.parent)!r} does not exist")
    return real


def check_writable(path) -> Path:
    """Raise ``ValueError`` (one line) unless a file can be written at ``path``; nothing is left
    behind. Call it before a long computation whose result goes there."""
    real = _check_target(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=real.parent, prefix=f".{real.name}.", suffix=".tmp")
    except OSError as exc:
        raise ValueError(f"cannot write {str(path)!r}: {exc.strerror or exc}") from None
    os.close(fd)
    os.unlink(tmp)
    if real.exists() and not os.access(real, os.W_OK):
        # os.replace would succeed (the directory is writable) but the user protected the file.
        raise ValueError(f"cannot write {str(path)!r}: the file is read-only")
    return real


def _file_mode(target: Path) -> int:
    """An existing file's mode; otherwise what open() would create: 0o666 minus the umask."""
    with contextlib.suppress(FileNotFoundError):
        return os.stat(target).st_mode & 0o7777
    mask = os.umask(0o022)  # reading the umask means setting it: put it straight back
    os.umask(mask)
    return 0o666 & ~mask


class _Terminated(BaseException):
    """SIGTERM arrived during a write (raised so that the temporary file is cleaned up)."""


@contextlib.contextmanager
def _sigterm_raises():
    """Inside the block SIGTERM raises :class:`_Terminated`; afterwards the previous handler is
    back and a SIGTERM that arrived is delivered again, so the process still ends by it."""
    if threading.current_thread() is not threading.main_thread():
        yield  # handlers can only be set from the main thread
        return

    def handler(signum, frame):
        raise _Terminated()

    try:
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            yield  # the application handles (or ignores) SIGTERM itself: leave it in charge
            return
        signal.signal(signal.SIGTERM, handler)
    except (ValueError, OSError):  # no signals here (embedded interpreter)
        yield
        return
    try:
        yield
    except _Terminated:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)  # end as SIGTERM would have, now that it is clean
        raise
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextlib.contextmanager
def _atomic(path: Path, mode: str):
    """Write to a temporary file beside ``path`` (already resolved by _check_target) and move it
    into place on success; on any exception, Ctrl-C or SIGTERM remove it and keep the old file."""
    with _sigterm_raises():
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            os.fchmod(fd, _file_mode(path))  # mkstemp creates 0600
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
    target = _check_target(path)
    payload = dict(_jsonable(data))
    if with_metadata:
        payload.setdefault("metadata", metadata())
    text = json.dumps(payload, indent=2, allow_nan=False)
    with _atomic(target, "w") as fh:
        fh.write(text + "\n")
    return Path(path)


def load_json(path) -> dict:
    with open(path) as fh:
        return json.load(fh)


def save_figure(path, fig, *, dpi: int = 110, with_pdf: bool = False, **savefig_kwargs) -> Path:
    """Save a matplotlib figure (format from the suffix), atomically. Returns the path.

    ``with_pdf=True`` also writes the vector PDF beside it (same name, ``.pdf``), as every
    experiment's figure is published."""
    target = _check_target(path)
    fmt = Path(path).suffix.lstrip(".") or "png"
    with _atomic(target, "wb") as fh:
        fig.savefig(fh, format=fmt, dpi=dpi, **savefig_kwargs)
    if with_pdf and fmt != "pdf":
        save_figure(Path(path).with_suffix(".pdf"), fig, dpi=dpi, **savefig_kwargs)
    return Path(path)


def _leaf_names(params) -> list[str]:
    """Array names of a parameter pytree's leaves, in flatten order (W, H, b; W_0, W_1, ...)."""
    names = []
    for i, (key, _) in enumerate(jax.tree_util.tree_flatten_with_path(params)[0]):
        name = jax.tree_util.keystr(key).strip(".[]'").replace("'][", "_").replace("][", "_")
        names.append(name.replace(".", "_").replace("[", "_").replace("]", "") or f"leaf{i}")
    if len(set(names)) != len(names) or RECORD_KEY in names or TARGETS_KEY in names:
        names = [f"leaf{i}" for i in range(len(names))]
    return names


def _fingerprint(record: Mapping) -> str:
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:16]


def _solver_record(solver) -> dict | None:
    if solver is None:
        return None
    settings = {}
    for name in getattr(solver, "__dataclass_fields__", {}):
        value = getattr(solver, name)
        with contextlib.suppress(Exception):
            json.dumps(value := _jsonable(value), allow_nan=False)
            settings[name] = value
    return dict(name=type(solver).__name__, settings=settings)


def save_solution(path, problem, solution, *, solver=None, max_steps: int | None = None,
                  init_scale: float | None = None, seed: int | None = None,
                  extra: Mapping | None = None) -> Path:
    """Save a solution as one self-contained ``.npz`` (arrays and record), plus a ``.json`` copy.

    The record holds the problem's config, the solver and its settings, ``max_steps``, the gtol
    the solve ran with, the init scale, the dtype, the seed, the outcome (value, gradient norm,
    steps, status) and :func:`metadata` (versions, git revision). :func:`load_solution` reads it
    back. Nothing is written if the arguments are invalid.

    Args:
        path: target ending in ``.npz``; the copy goes to the same name with ``.json``.
        problem: the problem solved (its ``config()`` is recorded).
        solution: the :class:`ufm.Solution`.
        solver: the solver used (its type and dataclass fields are recorded).
        max_steps: the step budget of the solve.
        init_scale: the scale passed to ``problem.init``.
        seed: the PRNG seed of the initial point.
        extra: more JSON-friendly entries for the record.

    Examples:
        >>> import jax, tempfile, os, ufm
        >>> p = ufm.UFM(3, 2, 3, ufm.losses.MSE(), 1e-2, 1e-2)
        >>> solver = ufm.solvers.LBFGS()
        >>> sol = ufm.solve(p, solver, p.init(jax.random.key(0)), max_steps=500, gtol=1e-10)
        >>> path = os.path.join(tempfile.mkdtemp(), "sol.npz")
        >>> _ = ufm.io.save_solution(path, p, sol, solver=solver, max_steps=500, seed=0)
        >>> q, params, record = ufm.io.load_solution(path)
        >>> q == p, record["status"], record["solver"]["name"]
        (True, 'converged', 'LBFGS')
    """
    npz = _check_target(path)
    if Path(path).suffix != ".npz":
        raise ValueError(f"solution path must end in .npz, got {str(path)!r}")
    json_path = _check_target(Path(path).with_suffix(".json"))
    names = _leaf_names(solution.params)
    leaves = jax.tree_util.tree_leaves(solution.params)
    arrays = {name: np.asarray(v) for name, v in zip(names, leaves)}
    dtypes = sorted({str(a.dtype) for a in arrays.values()})
    gtol = None if solution.gtol is None else float(np.asarray(solution.gtol).reshape(-1)[0])
    record = _jsonable(dict(
        config=problem.config(), solver=_solver_record(solver), max_steps=max_steps, gtol=gtol,
        init_scale=init_scale, dtype=dtypes[0] if len(dtypes) == 1 else dtypes, seed=seed,
        value=float(solution.value), grad_norm=float(solution.grad_norm),
        num_steps=int(solution.num_steps), status=solution.status_name, arrays=names,
        **(extra or {}), metadata=metadata()))
    text = json.dumps(record, indent=2, allow_nan=False)
    record["fingerprint"] = _fingerprint(json.loads(text))
    # Large regression targets are recorded by digest only: the file carries them itself, so
    # that load_solution can rebuild the problem (a solution is one self-contained file).
    config = record["config"]
    if isinstance(config, Mapping) and "targets_sha256" in config and "targets" not in config:
        arrays[TARGETS_KEY] = np.asarray(problem.targets, dtype=np.float64)
    # Build both files first; then drop the old json so that no moment shows the new npz beside
    # the old record; then move the npz (the authoritative unit) and the copy into place.
    with _atomic(npz, "wb") as fh:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(json_path)
        np.savez(fh, **arrays, **{RECORD_KEY: np.array(json.dumps(record, allow_nan=False))})
    with _atomic(json_path, "w") as fh:
        fh.write(json.dumps(record, indent=2, allow_nan=False) + "\n")
    return Path(path)


def _model_classes() -> dict:
    from ufm.problems import DeepUFM, MultiLabelUFM, RegressionUFM, SphericalUFM, UFM

    return {"ufm": UFM, "deep_ufm": DeepUFM, "multilabel_ufm": MultiLabelUFM,
            "spherical": SphericalUFM, "regression": RegressionUFM}


def problem_from_config(config: Mapping):
    """Rebuild a problem from its ``config()`` through ``config["model"]``'s ``from_config``."""
    if not isinstance(config, Mapping) or "model" not in config:
        raise ValueError(f"config must be a mapping with a 'model' entry, got {config!r}")
    classes = _model_classes()
    cls = classes.get(config["model"])
    if cls is None:
        raise ValueError(f"config['model'] must be one of {sorted(classes)}, got {config['model']!r}")
    if not callable(getattr(cls, "from_config", None)):
        raise ValueError(f"{cls.__name__} has no from_config: cannot rebuild a {config['model']!r} problem")
    return cls.from_config(config)


def load_solution(path):
    """Load what :func:`save_solution` wrote: ``(problem, params, record)``.

    The problem is rebuilt from the recorded config, the params have the structure of
    ``problem.init`` (and the saved dtype), ``record`` is the saved record.

    Raises:
        ValueError: for a file that is not a saved solution (or is truncated or corrupted), a
            config no model can rebuild, arrays that are not float or do not fit the problem, or a
            json copy beside the npz that is not its record.
    """
    path = Path(path)
    not_saved = f"{str(path)!r} is not a solution saved by ufm.io.save_solution"
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"cannot read {str(path)!r}: {exc}") from None
    except ValueError:  # text (numpy would need pickle), or no numpy format at all
        raise ValueError(f"{not_saved} (not an .npz archive)") from None
    if not hasattr(data, "files"):  # a single array (.npy), not an archive
        raise ValueError(f"{not_saved} (a single .npy array, not an .npz archive)")
    with data:
        if RECORD_KEY not in data.files:
            raise ValueError(f"{not_saved} (no {RECORD_KEY} entry)")
        try:
            record = json.loads(str(data[RECORD_KEY]))
            arrays = {name: data[name] for name in data.files if name != RECORD_KEY}
        except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:  # truncated, a flipped bit (CRC)
            raise ValueError(f"cannot read {str(path)!r}: {exc}") from None
        except ValueError as exc:  # a damaged record or array (json.JSONDecodeError is one)
            raise ValueError(f"{not_saved} (unreadable: {exc})") from None
    if not isinstance(record, dict) or not isinstance(record.get("config"), Mapping):
        raise ValueError(f"{not_saved} (its {RECORD_KEY} entry holds no config)")
    targets = arrays.pop(TARGETS_KEY, None)
    copy = path.with_suffix(".json")
    if copy.exists():
        other = {}
        with contextlib.suppress(json.JSONDecodeError, OSError):
            other = load_json(copy)
        if not isinstance(other, dict) or other.get("fingerprint") != record.get("fingerprint"):
            raise ValueError(f"{str(copy)!r} is not the record of {str(path)!r} (another save's copy?); "
                             "the npz holds the authoritative record")
    config = record["config"]
    if targets is not None and config.get("model") == "regression":
        problem = _model_classes()["regression"].from_config(config, targets=targets)
    else:
        problem = problem_from_config(config)
    template = jax.eval_shape(lambda: problem.init(jax.random.key(0)))
    names = _leaf_names(template)
    if sorted(names) != sorted(arrays):
        raise ValueError(f"{str(path)!r} holds arrays {sorted(arrays)}, but the problem needs {names}")
    for n in names:
        if arrays[n].dtype.kind != "f":
            raise ValueError(f"{str(path)!r}: array {n} has dtype {arrays[n].dtype}; parameters are "
                             "float arrays")
    leaves = [jax.numpy.asarray(arrays[n]) for n in names]
    for n, leaf, want in zip(names, leaves, jax.tree_util.tree_leaves(template)):
        if leaf.shape != want.shape:
            raise ValueError(f"{str(path)!r}: array {n} has shape {leaf.shape}, the problem needs {want.shape}")
    params = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(template), leaves)
    return problem, params, record
