"""``ufm sweep``: a grid of hyperparameters × seeds for any model, solved, compared with theory,
written as a table (JSON and CSV) and a phase-diagram figure.

Every grid point is built (and so validated) before the first solve: a bad value anywhere in the
grid is a one-line error, exit 2, with nothing solved or written. Decays, temperatures and radii
are array leaves of the problems, so points that differ only in them share one compiled program.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import copy
import csv
import io
import itertools
import math
import os
import time

import numpy as np

from ufm.cli_models import (INT_MAX, UsageError, _MODEL_OPTIONS, _float_text, _int_text, flag, model_of,
                            progress, solve_and_compare)

_INT_OPTIONS = {"K", "n", "d", "N", "dim_hidden", "restarts", "target_seed"}
_NOT_SWEEPABLE = {"loss", "no_bias", "activation", "targets", "spectrum", "widths", "counts_by_size"}
MAX_POINTS = 100_000


def parse_axis(text: str, model: str):
    """``lambda_W=1e-3:1e-1:5:log`` → ("lambda_W", [values], log_spaced)."""
    name, sep, values = text.partition("=")
    name = name.strip().lstrip("-").replace("-", "_")
    if not sep or not name or not values.strip():
        raise UsageError(f"--grid must be NAME=VALUES (e.g. lambda_W=1e-3,1e-2 or lambda_W=1e-3:1e-1:5:log), "
                         f"got {text!r}")
    allowed = sorted(_MODEL_OPTIONS[model] - _NOT_SWEEPABLE)
    if name not in allowed:
        raise UsageError(f"--grid {name!r} is not a numeric option of --model {model} (one of: "
                         f"{', '.join(allowed)})")
    integer = name in _INT_OPTIONS
    # the parsers of the options themselves: finite numbers, integers within int32 (as --K, --n)
    cast = _int_text if integer else _float_text
    parts = values.split(":")
    try:
        if len(parts) == 1:
            out = [cast(v.strip()) for v in values.split(",")]
            log = False
        elif len(parts) in (3, 4):
            start, stop = _float_text(parts[0].strip()), _float_text(parts[1].strip())
            num = _int_text(parts[2].strip(), "an integer number of points")
            log = len(parts) == 4
            if log and parts[3] != "log":
                raise ValueError(f"the 4th field must be 'log', got {parts[3]!r}")
            if not 1 <= num <= MAX_POINTS:
                raise ValueError(f"num must be in [1, {MAX_POINTS}], got {num}")
            if log and not (start > 0 and stop > 0):
                raise ValueError("a log axis needs start > 0 and stop > 0")
            if integer and not max(abs(start), abs(stop)) <= INT_MAX:
                raise ValueError(f"an integer option must lie in [{-INT_MAX}, {INT_MAX}] (int32)")
            with np.errstate(all="ignore"):  # a span beyond the float range: refused just below
                grid = np.geomspace(start, stop, num) if log else np.linspace(start, stop, num)
            out = [int(round(v)) for v in grid] if integer else [float(v) for v in grid]
            if integer:
                out = list(dict.fromkeys(out))
        else:
            raise ValueError("use v1,v2,... or start:stop:num[:log]")
    except (ValueError, argparse.ArgumentTypeError) as exc:
        raise UsageError(f"--grid {text!r}: {exc}") from None
    if not all(math.isfinite(v) for v in out):
        raise UsageError(f"--grid {text!r}: values must be finite")
    return name, out, log


def _points(args, model):
    axes = [parse_axis(text, model) for text in args.grid]
    names = [a[0] for a in axes]
    if len(set(names)) != len(names):
        raise UsageError(f"--grid names an option twice: {', '.join(names)}")
    if not axes:
        raise UsageError("ufm sweep needs at least one --grid NAME=VALUES axis")
    for name in names:
        if getattr(args, name, None) is not None:
            raise UsageError(f"{flag(name)} is also a --grid axis: give it once")
    total = math.prod(len(a[1]) for a in axes) * args.seeds
    if total > MAX_POINTS:
        raise UsageError(f"the grid has {total} solves (points x seeds); at most {MAX_POINTS}")
    return axes, [dict(zip(names, combo)) for combo in itertools.product(*(a[1] for a in axes))]


def _worst(report) -> float:
    ratios = [r.error / r.tolerance if r.tolerance > 0 else (0.0 if r.ok else math.inf)
              for r in report.rows]
    return max(ratios) if ratios else math.nan


def run_sweep(args, *, prepare, solve_fn, check_out) -> int:
    """Solve the grid (its share of it, with ``--distributed``) and write the outputs."""
    if not getattr(args, "distributed", False):
        return _run_sweep(args, prepare, solve_fn, check_out, group=None)
    from ufm import distributed

    try:
        distributed.initialize()
    except ValueError as exc:
        raise UsageError(f"--distributed: {exc}") from None
    try:
        return _run_sweep(args, prepare, solve_fn, check_out, group=distributed)
    finally:
        distributed.shutdown()


def _run_sweep(args, prepare, solve_fn, check_out, group) -> int:
    import jax

    from ufm.io import save_json

    rank, count = (jax.process_index(), jax.process_count()) if group else (0, 1)
    if getattr(args, "config", None) is not None:
        raise UsageError("ufm sweep takes model options, not --config (sweep a config's problem by "
                         "giving its options)")
    model = model_of(args)
    axes, points = _points(args, model)
    # Build every point first: any invalid value is reported before the first solve (and before
    # the output directory is created).
    built = []
    for point in points:
        a = copy.copy(args)
        for name, value in point.items():
            setattr(a, name, value)
        try:
            problem, solver, gtol = prepare(a)
        except ValueError as exc:
            raise ValueError(f"grid point {point}: {exc}") from None
        built.append((point, problem, solver, gtol))
    refusal = None
    if rank == 0:  # only process 0 writes: it alone checks --out, and every process hears the verdict
        try:
            check_out(args.out)
        except UsageError as exc:
            refusal = exc
    if group is not None and not group.all_ok(refusal is None) and refusal is None:
        return 2  # process 0 refused --out and says why
    if refusal is not None:
        raise refusal
    tasks = [(i, seed) for i in range(len(built)) for seed in range(args.seeds)]
    mine = list(group.process_share(len(tasks)) if group else range(len(tasks)))
    start, total = time.perf_counter(), len(mine)

    def solve_task(task):
        i, seed = tasks[task]
        point, problem, solver, gtol = built[i]
        t0 = time.perf_counter()
        sol, report, notes = solve_and_compare(problem, solver, seed=seed, init_scale=args.init_scale,
                                               max_steps=args.max_steps, gtol=gtol, solve_fn=solve_fn,
                                               restarts=getattr(args, "restarts", None),
                                               log=lambda *_: None)
        row = dict(point, seed=seed, value=float(sol.value), grad_norm=float(sol.grad_norm),
                   status=sol.status_name, steps=int(np.sum(sol.num_steps)),
                   seconds=time.perf_counter() - t0, config=problem.config())
        if report is None:
            row.update(predicted=None, regime="no closed form", ok=None, worst=None, errors={})
        else:
            pred = next((r.predicted for r in report.rows if r.quantity == "value"), None)
            row.update(predicted=None if pred is None else float(pred), regime=report.regime,
                       ok=bool(report.ok), worst=_worst(report),
                       errors={r.quantity: float(r.error) for r in report.rows})
        row["notes"] = list(notes) + ([] if report is None else list(report.notes))
        return row

    solved = {}

    def record(task, row):
        solved[task] = row
        if not args.no_progress and rank == 0:
            point = built[tasks[task][0]][0]
            progress(len(solved), total, start, " ".join(f"{k}={v:.3g}" for k, v in point.items()))

    workers = min(sweep_workers(args, built), max(1, total - 1))
    for task in mine[:1 if workers > 1 else total]:  # the first compiles before threads share it
        record(task, solve_task(task))
    if workers > 1 and total > 1:
        _solve_on_threads(solve_task, mine[1:], workers, record)
    rows = [(task, solved[task]) for task in mine]  # task order, whatever order they finished in
    if group is not None:
        rows = group.gather_to_process_0(rows)
        if rank != 0:
            print(f"ufm sweep: process {rank} of {count} solved {total} of {len(tasks)} solves; "
                  f"process 0 writes the results")
            return 0
    else:
        rows = [row for _, row in rows]
    failed = sum(r["ok"] is False for r in rows)
    open_rows = sum(r["ok"] is None for r in rows)
    summary = dict(model=model, axes=[dict(name=n, values=v, log=lg) for n, v, lg in axes],
                   seeds=args.seeds, solves=len(rows), failed=failed, no_closed_form=open_rows,
                   seconds=time.perf_counter() - start, processes=count)
    save_json(f"{args.out}/sweep.json", dict(summary, rows=rows))
    _write_csv(f"{args.out}/sweep.csv", rows, [a[0] for a in axes])
    figure = _phase_figure(args, model, axes, rows)
    print(f"ufm sweep: {len(rows)} solves ({len(points)} points x {args.seeds} seeds) in "
          f"{summary['seconds']:.1f} s: {len(rows) - failed - open_rows} matched theory, {failed} failed, "
          f"{open_rows} without a closed form")
    print(f"table written to {args.out}/sweep.json and sweep.csv" +
          (f"; figure to {figure}.png and .pdf" if figure else ""))
    return 1 if failed else 0


def sweep_workers(args, built) -> int:
    """Threads the sweep solves its points on: ``--workers``, or by default
    :func:`ufm.sweep.loop_workers` for the largest problem of the grid (twice the usable cores, at
    most 16, bounded by memory). Every solve is the one a single-threaded sweep makes."""
    if getattr(args, "workers", None):
        return args.workers
    import jax

    from ufm.sweep import loop_workers

    def size(problem):
        shapes = jax.eval_shape(lambda: problem.init(jax.random.key(0)))
        return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(shapes)), shapes

    return loop_workers(max((size(problem) for _, problem, _, _ in built), key=lambda s: s[0])[1])


def _solve_on_threads(solve_task, tasks, workers, record) -> None:
    """``record(task, solve_task(task))`` for every task, on ``workers`` threads (XLA releases the
    GIL while it runs). An error or Ctrl-C cancels the tasks not yet started and is raised at once
    (a solve already running on a thread cannot be stopped; nothing has been written)."""
    pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="ufm-sweep")
    try:
        futures = {pool.submit(solve_task, task): task for task in tasks}
        for future in concurrent.futures.as_completed(futures):
            record(futures[future], future.result())
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


def _write_csv(path, rows, axis_names) -> None:
    from ufm.io import _atomic
    from pathlib import Path

    columns = [*axis_names, "seed", "value", "predicted", "grad_norm", "status", "regime", "ok",
               "worst", "steps", "seconds"]
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(columns)
    for r in rows:
        writer.writerow(["" if r.get(c) is None else r.get(c) for c in columns])
    with _atomic(Path(path), "w") as fh:
        fh.write(buf.getvalue())


def _theory_values(args, model, name, values):
    """Predicted F* along a fine version of one axis (None where no closed form)."""
    import ufm
    from ufm.cli_models import build_problem

    out = []
    for v in values:
        a = copy.copy(args)
        setattr(a, name, int(round(v)) if name in _INT_OPTIONS else float(v))
        try:
            out.append(float(ufm.theory.predict(build_problem(a)).value))
        except (ufm.theory.NoClosedForm, ValueError):
            out.append(math.nan)
    return np.asarray(out)


def _theory_regimes(args, name_x, xs, name_y, ys):
    import ufm
    from ufm.cli_models import build_problem

    codes, labels = np.full((len(ys), len(xs)), np.nan), {}
    for j, y in enumerate(ys):
        for i, x in enumerate(xs):
            a = copy.copy(args)
            setattr(a, name_x, float(x))
            setattr(a, name_y, float(y))
            try:
                regime = ufm.theory.predict(build_problem(a)).regime
            except (ufm.theory.NoClosedForm, ValueError):
                continue
            codes[j, i] = labels.setdefault(regime, len(labels))
    return codes, labels


def _phase_figure(args, model, axes, rows):
    """1 axis: F measured (best over seeds) against the closed form as a smooth curve. 2 axes: F as
    colour with the theory's regime boundaries; failed points crossed. More axes: no figure."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from ufm.io import save_figure

    if len(axes) > 2:  # no figure: a previous sweep's figure in --out would pass for this one's
        for suffix in (".png", ".pdf"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{args.out}/phase{suffix}")
        return None
    ints = {n for n, _, _ in axes if n in _INT_OPTIONS}
    best = {}
    for r in rows:
        key = tuple(r[n] for n, _, _ in axes)
        if key not in best or r["value"] < best[key]["value"]:
            best[key] = r
    label = {"lambda_W": r"$\lambda_W$", "lambda_H": r"$\lambda_H$", "lambda_b": r"$\lambda_b$",
             "temperature": "temperature $T$", "radius_W": "$r_W$", "radius_H": "$r_H$"}
    fig, ax = plt.subplots(figsize=(5.2, 3.8), constrained_layout=True)
    if len(axes) == 1:
        name, values, log = axes[0]
        x = np.asarray(values, float)
        y = np.asarray([best[(v,)]["value"] for v in values])
        ok = [best[(v,)]["ok"] for v in values]
        if name not in ints and len(x) > 1:
            fine = np.geomspace(x.min(), x.max(), 200) if log or (x.min() > 0 and x.max() / x.min() > 50) \
                else np.linspace(x.min(), x.max(), 200)
            theory = _theory_values(args, model, name, fine)
            if np.isfinite(theory).any():
                ax.plot(fine, theory, color="#0072B2", lw=1.8, label="closed form $F^*$")
        ax.scatter(x[[o is not False for o in ok]], y[[o is not False for o in ok]], color="#E69F00",
                   zorder=3, label="solver (best over seeds)")
        if any(o is False for o in ok):
            ax.scatter(x[[o is False for o in ok]], y[[o is False for o in ok]], marker="x",
                       color="#D55E00", zorder=4, label="does not match theory")
        if log or (x.min() > 0 and x.max() / x.min() > 50):
            ax.set_xscale("log")
        ax.set_xlabel(label.get(name, name))
        ax.set_ylabel("objective $F$")
        ax.legend(frameon=False)
    else:
        (nx, xv, lx), (ny, yv, ly) = axes
        Z = np.asarray([[best[(x, y)]["value"] for x in xv] for y in yv])
        mesh = ax.pcolormesh(np.asarray(xv, float), np.asarray(yv, float), Z, shading="nearest",
                             cmap="viridis")
        fig.colorbar(mesh, ax=ax, label="objective $F$ (solver)")
        if nx not in ints and ny not in ints and len(xv) > 1 and len(yv) > 1:
            fx = np.geomspace(min(xv), max(xv), 60) if lx else np.linspace(min(xv), max(xv), 60)
            fy = np.geomspace(min(yv), max(yv), 60) if ly else np.linspace(min(yv), max(yv), 60)
            codes, regimes = _theory_regimes(args, nx, fx, ny, fy)
            if len(regimes) > 1:
                ax.contour(fx, fy, codes, levels=np.arange(len(regimes) - 1) + 0.5, colors="white",
                           linewidths=1.5)
                ax.plot([], [], color="white", lw=1.5, label="theory: regime boundary")
        bad = [(x, y) for x in xv for y in yv if best[(x, y)]["ok"] is False]
        if bad:
            ax.scatter(*zip(*bad), marker="x", color="#D55E00", label="does not match theory")
        if lx:
            ax.set_xscale("log")
        if ly:
            ax.set_yscale("log")
        ax.set_xlabel(label.get(nx, nx))
        ax.set_ylabel(label.get(ny, ny))
        if ax.get_legend_handles_labels()[0]:
            ax.legend(frameon=True, facecolor="0.3", labelcolor="white", loc="lower left")
    ax.set_title(f"ufm sweep: --model {model}", fontsize=10)
    stem = f"{args.out}/phase"
    save_figure(stem + ".png", fig, dpi=150)
    save_figure(stem + ".pdf", fig)
    plt.close(fig)
    return stem
