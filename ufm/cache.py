"""The persistent compilation cache, for the CLI and for Python sessions alike.

Compilation dominates a short ufm session (a warm ``ufm verify`` spends most of its time tracing
and compiling), and JAX can keep compiled programs on disk. :func:`enable_compilation_cache` turns
that on with one call, in a directory per version of the code: a program compiled by other code is
never loaded (a wrong executable was seen once, after the source changed under a shared cache).

Examples:
    >>> import os, tempfile, jax
    >>> path = enable_compilation_cache(tempfile.mkdtemp())
    >>> jax.config.jax_compilation_cache_dir == path
    True
    >>> _ = enable_compilation_cache(False)  # off again
"""

from __future__ import annotations

import hashlib
import os

MIN_COMPILE_TIME = 0.0


def code_version() -> str:
    """A digest of this ufm's source files and of jax/jaxlib's versions (16 hex digits)."""
    import jax
    import jaxlib

    digest = hashlib.sha256(f"{jax.__version__} {jaxlib.__version__}".encode())
    root = os.path.dirname(os.path.abspath(__file__))
    for folder, dirs, files in sorted(os.walk(root)):
        dirs.sort()
        for name in sorted(f for f in files if f.endswith(".py")):
            with open(os.path.join(folder, name), "rb") as fh:
                digest.update(name.encode() + fh.read())
    return digest.hexdigest()[:16]


def default_cache_dir() -> str | None:
    """The cache directory the CLI uses, or None for no cache.

    JAX_COMPILATION_CACHE_DIR if set; else ``ufm/jax/<code version>`` under XDG_CACHE_HOME (when
    absolute) or under ``$HOME/.cache`` (when HOME is an existing absolute directory: an empty or
    unset HOME means no cache, never ``/.cache``). UFM_NO_CACHE=1 turns it off.
    """
    env = os.environ
    if env.get("UFM_NO_CACHE") == "1":
        return None
    if env.get("JAX_COMPILATION_CACHE_DIR"):
        path = env["JAX_COMPILATION_CACHE_DIR"]
        # an explicit choice: create it, but only below a directory that exists
        return path if os.path.isabs(path) and os.path.isdir(os.path.dirname(path.rstrip("/"))) else None
    xdg, home = env.get("XDG_CACHE_HOME", ""), env.get("HOME", "")
    if os.path.isabs(xdg) and os.path.isdir(xdg):
        return os.path.join(xdg, "ufm", "jax", code_version())
    if os.path.isabs(home) and home != "/" and os.path.isdir(home):
        return os.path.join(home, ".cache", "ufm", "jax", code_version())
    return None


def _forget_open_cache() -> None:
    """JAX opens its cache object once per process: forget it so that a new setting applies."""
    try:
        from jax.experimental.compilation_cache import compilation_cache

        compilation_cache.reset_cache()
    except Exception:  # an older or newer JAX without it: the setting still applies to new dirs
        pass


def enable_compilation_cache(path: str | bool | None = None, *,
                             min_compile_time: float = MIN_COMPILE_TIME) -> str | None:
    """Keep compiled programs on disk; returns the directory used (None: no cache).

    Args:
        path: a directory (created if its parent exists), None for :func:`default_cache_dir`
            (what ``ufm`` on the command line uses), or False to turn the cache off.
        min_compile_time: only programs that take at least this many seconds to compile are
            stored (default 0: every program, small ones too; ≥ 0).

    An unusable place costs only time: the cache is switched off, silently. The setting is JAX's
    global configuration (``jax_compilation_cache_dir``), for the rest of the process.
    """
    import jax

    if not isinstance(min_compile_time, (int, float)) or isinstance(min_compile_time, bool) or \
            not min_compile_time >= 0:
        raise ValueError(f"min_compile_time must be a number >= 0 (seconds), got {min_compile_time!r}")
    _forget_open_cache()
    if path is False:
        jax.config.update("jax_compilation_cache_dir", None)
        return None
    if path is not None and not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a directory name, None or False, got {path!r}")
    path = default_cache_dir() if path is None else os.fspath(path)
    try:
        if path is not None:
            os.makedirs(path, exist_ok=True)
    except OSError:
        path = None
    if path is None or not os.access(path, os.W_OK | os.X_OK):
        # JAX itself reads JAX_COMPILATION_CACHE_DIR: switch an unusable one off explicitly
        jax.config.update("jax_compilation_cache_dir", None)
        return None
    jax.config.update("jax_compilation_cache_dir", path)
    # Every program by default: a warm `ufm verify` is mostly small programs (it halves its time).
    # The intermittent verify failures once blamed on this were jit-cache collisions between loss
    # classes (fixed in ufm._types.pytree_dataclass), not the persistent cache.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_time))
    return path
