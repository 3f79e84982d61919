"""Command line: ``ufm verify`` (theory vs solver table) and ``ufm solve`` (one configuration).

Exit status:

- 0: success (every row passed; the solve matched its closed form or has none).
- 1: a verification failed (a FAIL row, or a solve that does not match its closed form).
- 2: bad arguments or an output path that cannot be written, reported in one line
  ``ufm: error: ...`` before anything is solved.
- 3: the solve became non-finite (``status nonfinite``): no comparison is made.
- 4: an unexpected internal error, reported in one line (``UFM_DEBUG=1`` shows the traceback).
- 130: interrupted (Ctrl-C; long solves run in compiled chunks, so it stops within a chunk).
- 141: standard output was closed (e.g. piped into ``head``).

``main(argv)`` can be called in-process: the JAX configuration it changes (x64, the compilation
cache) is restored when it returns. (``main()`` without ``argv`` is the command itself: on Ctrl-C it
ends the process at once, as XLA may be compiling on other threads.)
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import time

from ufm._version import __version__
from ufm.cli_models import INIT_SCALE, INT_MAX, SOLVERS, UsageError, add_model_arguments

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_NONFINITE, EXIT_INTERNAL = 0, 1, 2, 3, 4
EXIT_INTERRUPTED, EXIT_PIPE = 130, 141
SEED_MAX = 2**32 - 1
CHUNK_STEPS = 500  # steps per compiled call of a long solve (Ctrl-C is handled between calls)


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not argparse's usage block
        raise UsageError(message)

    def exit(self, status=0, message=None):  # --help / --version: print, then return the code
        if message:
            print(message, file=sys.stderr, end="")
        raise _Exit(status)


class _Exit(Exception):
    def __init__(self, status):
        self.status = status


def _int(low: int, high: int = INT_MAX):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be an integer in [{low}, {high}], got {text}")
        return value
    return parse


def _float(low: float | None = None, low_open: bool = False):
    """A finite float (nan and inf refused), optionally bounded below."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
        if low is not None and (value <= low if low_open else value < low):
            raise argparse.ArgumentTypeError(f"must be {'>' if low_open else '>='} {low:g}, got {text}")
        return value
    return parse


def _add_solver_arguments(s) -> None:
    s.add_argument("--solver", choices=list(SOLVERS), default=None,
                   help="tr (trust region; the default, except on --model deep with ReLU), lbfgs "
                        "(default there; Euclidean models), gd, adam, rgd (Riemannian gradient "
                        "descent, spherical)")
    s.add_argument("--lr", type=_float(0.0, low_open=True), default=None,
                   help="learning rate (gd, adam, rgd; > 0; default 0.1 for gd, 0.01 for adam)")
    s.add_argument("--max-steps", type=_int(1), default=20_000)
    s.add_argument("--gtol", type=_float(0.0), default=None,
                   help="gradient-norm tolerance (default 1e-12; 1e-6 with --float32, whose "
                        "rounding floor 1e-12 is below)")
    s.add_argument("--seed", type=_int(0, SEED_MAX), default=0)
    s.add_argument("--init-scale", type=_float(0.0, low_open=True), default=None,
                   help=f"scale of the random initial point (default {INIT_SCALE}; deep models start "
                        "from fixed scales, see --restarts)")
    s.add_argument("--progress-every", type=_int(0), default=0, metavar="N",
                   help="print progress every N steps (between compiled chunks)")
    s.add_argument("--chunk-steps", type=_int(1), default=CHUNK_STEPS, metavar="N",
                   help=f"steps per compiled call (Ctrl-C stops between calls; default {CHUNK_STEPS})")
    s.add_argument("--float32", action="store_true", help="solve in float32 (default float64)")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="ufm", description="Unconstrained features models: solve and verify theory.")
    p.add_argument("--version", action="version", version=f"ufm {__version__}")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)

    v = sub.add_parser("verify", help="solve the built-in table of configurations in float64 and "
                       "compare each with its closed form")
    tier = v.add_mutually_exclusive_group()
    tier.add_argument("--quick", action="store_const", dest="tier", const="quick",
                      help="a few rows (seconds)")
    tier.add_argument("--full", action="store_const", dest="tier", const="full",
                      help="every row, larger instances included")
    v.add_argument("--only", metavar="TEXT", help="only rows whose name contains TEXT")
    v.add_argument("--out", metavar="PATH", help="write the JSON report here (atomically)")
    v.add_argument("--list", action="store_true", help="list the rows and exit")
    v.set_defaults(tier="default")

    s = sub.add_parser("solve", help="solve one configuration of any model and compare with theory")
    add_model_arguments(s)
    _add_solver_arguments(s)
    s.add_argument("--out", metavar="PATH.npz", help="save the solution (npz + json, atomically)")

    w = sub.add_parser("sweep", help="solve a grid of hyperparameters x seeds for any model: table "
                       "and phase-diagram figure")
    add_model_arguments(w)
    _add_solver_arguments(w)
    w.add_argument("--grid", action="append", default=[], metavar="NAME=VALUES",
                   help="an axis of the grid: NAME=v1,v2,... or NAME=start:stop:num[:log], NAME a model "
                        "option such as lambda_W, lambda_H, temperature, K, d (repeat for more axes)")
    w.add_argument("--seeds", type=_int(1, 10_000), default=1, help="random starts per grid point")
    w.add_argument("--out", metavar="DIR", required=True,
                   help="directory for sweep.json, sweep.csv and the phase-diagram figure")
    w.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    w.add_argument("--workers", type=_int(1, 256), default=None,
                   help="threads solving grid points at once (default: twice the cores, at most 16, "
                        "bounded by memory; 1 solves one after another); each solve is the same")
    w.add_argument("--distributed", action="store_true",
                   help="split the grid across JAX processes (jax.distributed: SLURM, or JAX_COORDINATOR_ADDRESS, "
                        "JAX_NUM_PROCESSES, JAX_PROCESS_ID); process 0 gathers and writes")

    from ufm.landscape_cli import add_parser as add_landscape_parser

    add_landscape_parser(sub, _int(-INT_MAX), _float())
    r = sub.add_parser("reproduce", help="run every experiment script of the source checkout "
                       "(one subprocess each) into OUT/: JSON, PNG and PDF figures, an index")
    r.add_argument("out", metavar="OUT", help="output directory (one subdirectory per experiment)")
    r.add_argument("--quick", action="store_true", help="smoke-sized runs of every script")
    r.add_argument("--only", metavar="NAME", help="only these experiments (comma-separated names)")
    b = sub.add_parser("bench", help="run the benchmark of the source checkout (benchmarks/bench.py): "
                       "steps/s against bare JAX and PyTorch, time to a certified minimiser, sweeps")
    b.add_argument("--sections", nargs="+", choices=["steps", "threads", "certified", "solvers", "sweep"],
                   default=["steps", "threads", "certified", "solvers", "sweep"])
    b.add_argument("--quick", action="store_true", help="smaller sizes and fewer steps (a smoke run)")
    b.add_argument("--rounds", type=_int(1), default=8, help="alternated rounds per contestant (>= 1)")
    b.add_argument("--no-torch", action="store_true", help="time ufm alone (no PyTorch baseline)")
    b.add_argument("--torch-device", default="cpu", help="the PyTorch baseline's device (cuda on a GPU)")
    b.add_argument("--sweep-points", type=_int(4), default=256, help="grid points of the sweep (>= 4)")
    b.add_argument("--out", default=None, metavar="DIR",
                   help="directory of the results file (default benchmarks/results of the checkout)")
    return p


def _check_out(path: str | None, suffix: str | None = None) -> None:
    """Refuse an --out that cannot be written, before anything is computed."""
    if path is None:
        return
    from ufm.io import check_writable

    if not path:
        raise UsageError("--out must be a file name, got ''")
    if suffix and not path.endswith(suffix):
        raise UsageError(f"--out {path!r} must end in {suffix}")
    try:
        check_writable(path)
        if suffix == ".npz":  # the json copy goes beside it
            check_writable(path[: -len(suffix)] + ".json")
    except ValueError as exc:
        raise UsageError(f"--out: {exc}") from None


def _worst(row: dict) -> str:
    checks = row.get("checks") or []
    ratios = [c["error"] / c["tolerance"] if c["tolerance"] > 0 else (0.0 if c["ok"] else float("inf"))
              for c in checks]
    return f"{max(ratios):8.1e}" if ratios else f"{'-':>8}"


def _value_pair(row: dict) -> tuple[str, str]:
    for c in row.get("checks") or []:
        if c["quantity"] == "value":
            return f"{c['predicted']:.12g}", f"{c['measured']:.12g}"
    return "-", "-"


def cmd_verify(args) -> int:
    from ufm.cases import run_case, select
    from ufm.io import save_json

    _check_out(args.out)
    cases = select(args.tier, args.only)
    if not cases:
        raise UsageError(f"--only {args.only!r} matches no row")
    if args.list:
        for c in cases:
            print(f"{c.name:50s} {c.model:10s} {c.loss:6s} {c.tier}")
        return 0
    print(f"ufm verify: {len(cases)} rows ({args.tier}), float64. worst = max error/tolerance")
    print(f"{'row':50s} {'regime':24s} {'F* predicted':>18s} {'F* measured':>18s} {'worst':>8s} {'s':>5s}  result")
    rows, start = [], time.perf_counter()
    for case in cases:
        row = run_case(case)
        rows.append(row)
        pred, meas = _value_pair(row)
        print(f"{case.name:50s} {row.get('regime', ''):24.24s} {pred:>18s} {meas:>18s} {_worst(row)} "
              f"{row['seconds']:5.1f}  {'PASS' if row['ok'] else 'FAIL'}", flush=True)
        if not row["ok"]:
            failed = [c["quantity"] for c in row.get("checks", []) if not c["ok"]]
            print(f"    failed: {', '.join(failed) or '; '.join(row.get('notes', []))}", flush=True)
    ok = all(r["ok"] for r in rows)
    n_fail = sum(not r["ok"] for r in rows)
    print(f"{len(rows) - n_fail} passed, {n_fail} failed in {time.perf_counter() - start:.1f} s")
    if args.out:
        save_json(args.out, dict(ok=ok, tier=args.tier, rows=rows))
        print(f"report written to {args.out}")
    return 0 if ok else EXIT_FAIL


def solve_in_chunks(problem, solver, params, *, max_steps: int, gtol: float,
                    chunk_steps: int = CHUNK_STEPS, progress_every: int = 0,
                    target_seconds: float = 0.5):
    """``ufm.solve`` as a sequence of compiled calls of at most ``chunk_steps`` steps, each
    continuing the last (``state=sol.state``): the same iterates as one call of ``max_steps``
    steps, but Python regains control between calls, so Ctrl-C (KeyboardInterrupt) stops a long
    solve promptly.

    Every chunk has the same static size, so one compilation serves them all. A chunk that takes
    more than a second (a large problem) shrinks the chunks once to about ``target_seconds``
    (one more compilation); a last, shorter chunk compiles once more. With ``progress_every`` the
    chunks are at most that long and progress is printed to stderr between them.

    Returns (solution, total steps).
    """
    import jax
    import numpy as np

    import ufm

    if progress_every:
        chunk_steps = min(chunk_steps, progress_every)
    # Start from an explicit solver state: every chunk then has the same signature (a first call
    # with state=None would compile a second program, uninterruptibly, once the run is going).
    # Weak-typed scalars of the fresh state come back strongly typed from the loop: make them
    # strong now, or the second chunk would compile again.
    state = jax.tree.map(lambda a: jax.lax.convert_element_type(a, a.dtype),
                         jax.jit(type(solver).init)(solver, problem, params))
    done, sol, last_report, calls, resized = 0, None, 0, 0, False
    while done < max_steps:
        steps = min(chunk_steps, max_steps - done)
        start = time.perf_counter()
        sol = ufm.solve(problem, solver, params, max_steps=steps, gtol=gtol, state=state)
        taken = int(sol.num_steps)  # blocks until the chunk is done: Ctrl-C is raised here
        elapsed, calls = time.perf_counter() - start, calls + 1
        done += taken
        params, state = sol.params, sol.state
        if progress_every and done // progress_every > last_report:
            last_report = done // progress_every
            print(f"ufm solve: step {done:>8d}  F = {float(sol.value):.15g}  "
                  f"|grad| = {float(sol.grad_norm):.3e}", file=sys.stderr, flush=True)
        if int(sol.status) != int(ufm.Status.MAX_STEPS):
            break
        if calls >= 2 and not resized and elapsed > 1.0 and taken == steps:  # (call 1 compiles)
            chunk_steps, resized = max(1, int(steps * target_seconds / elapsed)), True
    return sol._replace(num_steps=np.asarray(done)), done


def _prepare(args):
    """(problem, solver, gtol) from the arguments, every check made before anything is solved."""
    import jax

    if args.float32:
        jax.config.update("jax_enable_x64", False)
    from ufm.cli_models import DEEP_SCALES, build_problem, make_solver, model_name

    problem = build_problem(args)
    if args.init_scale is not None and model_name(problem) == "deep":
        raise UsageError("--init-scale does not apply to deep models: they start from --restarts "
                         f"seeds at each of the scales {', '.join(map(str, DEEP_SCALES))} (the best is kept)")
    solver = make_solver(problem, args.solver, args.lr)
    gtol = args.gtol if args.gtol is not None else (1e-6 if args.float32 else 1e-12)
    return problem, solver, gtol


def _chunked(args):
    def solve_fn(problem, solver, params, *, max_steps, gtol):
        return solve_in_chunks(problem, solver, params, max_steps=max_steps, gtol=gtol,
                               chunk_steps=args.chunk_steps, progress_every=args.progress_every)[0]
    return solve_fn


def cmd_solve(args) -> int:
    import ufm
    from ufm.cli_models import solve_and_compare

    _check_out(args.out, ".npz")
    problem, solver, gtol = _prepare(args)
    sol, report, notes = solve_and_compare(problem, solver, seed=args.seed, init_scale=args.init_scale,
                                           max_steps=args.max_steps, gtol=gtol, solve_fn=_chunked(args),
                                           restarts=getattr(args, "restarts", None))
    print(f"status {sol.status_name}, {int(sol.num_steps)} steps, F = {float(sol.value):.15g}, "
          f"|grad| = {float(sol.grad_norm):.3e}")
    code = EXIT_OK
    for note in notes:
        print(note)
    if int(sol.status) == int(ufm.Status.NONFINITE):
        print("no comparison made")
        code = EXIT_NONFINITE
    elif report is not None:
        print(report)
        code = EXIT_OK if report.ok else EXIT_FAIL
    if args.out:
        ufm.io.save_solution(args.out, problem, sol, solver=solver, max_steps=args.max_steps,
                             init_scale=None if isinstance(problem, ufm.DeepUFM) else
                             (INIT_SCALE if args.init_scale is None else args.init_scale), seed=args.seed,
                             extra=dict(chunk_steps=args.chunk_steps))
        print(f"solution written to {args.out}")
    return code


def cmd_sweep(args) -> int:
    from ufm.sweep_cli import run_sweep

    return run_sweep(args, prepare=_prepare, solve_fn=_chunked(args), check_out=_check_dir)


def _check_dir(path: str) -> None:
    """Refuse an --out directory that cannot be written, before anything is solved."""
    from ufm.io import check_writable

    if not path:
        raise UsageError("--out must be a directory name, got ''")
    if os.path.exists(path) and not os.path.isdir(path):
        raise UsageError(f"--out {path!r} exists and is not a directory")
    try:
        os.makedirs(path, exist_ok=True)
        check_writable(os.path.join(path, "sweep.json"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"--out {path!r}: {getattr(exc, 'strerror', None) or exc}") from None


# The JAX options main() may change; each is put back as it was when main returns.
_JAX_OPTIONS = ("jax_enable_x64", "jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs")


def _code_version() -> str:
    from ufm.cache import code_version

    return code_version()


def _cache_dir() -> str | None:
    from ufm.cache import default_cache_dir

    return default_cache_dir()


def _enable_compilation_cache(jax) -> None:
    from ufm.cache import enable_compilation_cache

    enable_compilation_cache()


@contextlib.contextmanager
def _jax_configuration(jax):
    """Restore the caller's JAX options (and forget the compile cache we opened) on exit."""
    saved = {name: getattr(jax.config, name) for name in _JAX_OPTIONS}
    try:
        yield
    finally:
        changed = False
        for name, value in saved.items():
            if getattr(jax.config, name) != value:
                jax.config.update(name, value)
                changed = changed or name == "jax_compilation_cache_dir"
        if changed:
            with contextlib.suppress(Exception):
                from jax.experimental.compilation_cache import compilation_cache

                compilation_cache.reset_cache()  # the cache object is opened once per dir


def cmd_landscape(args) -> int:
    from ufm import landscape_cli

    return landscape_cli.run(args)


def cmd_bench(args) -> int:
    import subprocess
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench.py"
    if not script.is_file():
        raise UsageError(f"ufm bench needs a source checkout: no benchmarks/bench.py at {script.parent}")
    if args.out is not None:
        _check_dir(args.out)
    argv = [sys.executable, str(script), "--sections", *args.sections, "--rounds", str(args.rounds),
            "--torch-device", args.torch_device, "--sweep-points", str(args.sweep_points)]
    argv += ["--quick"] * args.quick + ["--no-torch"] * args.no_torch
    argv += [] if args.out is None else ["--out", args.out]
    return subprocess.run(argv).returncode  # a fresh process: the benchmark sets its own JAX flags


def cmd_reproduce(args) -> int:
    from ufm import reproduce

    record = reproduce.run(args.out, quick=args.quick, only=args.only,
                           progress=lambda line: print(line, flush=True))
    return EXIT_OK if record["ok"] else EXIT_FAIL


def _run(argv) -> int:
    args = _parser().parse_args(argv)
    if args.command is None:
        raise UsageError("a command is required: verify, solve, sweep, landscape, reproduce or bench (see ufm --help)")
    import warnings

    import jax

    with _jax_configuration(jax), warnings.catch_warnings():
        # A cache that fails later (disk full, removed) only costs time: say nothing.
        warnings.filterwarnings("ignore", message=".*persistent compilation cache.*")
        jax.config.update("jax_enable_x64", True)  # the CLI is an application: theory checks in float64
        _enable_compilation_cache(jax)
        return {"verify": cmd_verify, "solve": cmd_solve, "sweep": cmd_sweep, "bench": cmd_bench,
                "reproduce": cmd_reproduce, "landscape": cmd_landscape}[args.command](args)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    """Run the ``ufm`` command with ``argv`` (default: sys.argv[1:]); returns the exit status."""
    try:
        return _run(argv)
    except _Exit as exc:
        return exc.status
    except (UsageError, ValueError) as exc:
        print(f"ufm: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("ufm: interrupted", file=sys.stderr)
        if argv is None:
            # The command itself (not an in-process call): XLA may still be compiling on its own
            # threads, and finalising the interpreter under them can crash. Nothing is left to
            # save (writes are atomic): leave at once.
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(EXIT_INTERRUPTED)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (``ufm verify --list | head``): stop quietly; point stdout at
        # /dev/null so that the interpreter's final flush does not complain either.
        with contextlib.suppress(Exception):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_PIPE
    except Exception as exc:
        if os.environ.get("UFM_DEBUG") == "1":
            raise
        print(f"ufm: internal error: {type(exc).__name__}: {_one_line(exc)} (UFM_DEBUG=1 shows "
              "the traceback)", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
