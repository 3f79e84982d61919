"""``ufm landscape``: classify the solution of a configuration and its known critical points.

    ufm landscape CONFIG.json [--seed S] [--k K] [--method dense|matrix-free] [--out DIR]
    ufm landscape --solution SOLUTION.npz [...]

CONFIG.json holds a problem's ``config()`` (any model: ``{"model": "ufm", ...}``; a file written
by ``ufm solve --out`` or ``ufm.io.save_json`` also works, its ``config`` entry is used). The
configuration is solved in float64 (L-BFGS; the Riemannian trust region on spheres), then the
solution and every known critical point of the model (``ufm.landscape.known_critical_points``)
are classified modulo symmetry. ``--out DIR`` writes ``DIR/landscape.json`` and the spectrum
figure ``DIR/spectrum.png`` / ``.pdf``, each atomically.

The lead's ``ufm/cli.py`` calls :func:`add_parser` on its subparsers and dispatches
``"landscape"`` to :func:`run`.
"""

from __future__ import annotations

import json
import math
import os


def add_parser(sub, int_type=None, float_type=None):
    """Register ``landscape`` on an argparse subparsers object; returns the parser."""
    p = sub.add_parser("landscape", help="classify the solution of a configuration (any model) "
                       "and its known critical points modulo symmetry")
    p.add_argument("config_file", nargs="?", metavar="CONFIG.json",
                   help="a problem config (JSON); or describe the problem with the model options "
                        "(--model, --K, ... as for ufm solve), or give --solution")
    from ufm.cli_models import add_model_arguments

    add_model_arguments(p)
    p.add_argument("--solution", metavar="PATH.npz", help="classify a saved solution instead")
    p.add_argument("--seed", type=int_type or int, default=0)
    p.add_argument("--k", type=int_type or int, default=6, help="eigenvalues computed matrix-free (>= 1)")
    p.add_argument("--method", choices=["dense", "matrix-free"], default=None,
                   help="default: dense up to 3000 parameters")
    p.add_argument("--max-steps", type=int_type or int, default=5000)
    p.add_argument("--no-known", action="store_true", help="skip the known critical points")
    p.add_argument("--out", metavar="DIR", help="write landscape.json and spectrum.png/.pdf here")
    return p


class LandscapeUsageError(ValueError):
    """Bad input: the CLI prints one line and exits 2."""


def _load_problem(args):
    from ufm import io

    from ufm.cli_models import _given, build_problem

    options = args.model is not None or args.config is not None or bool(_given(args))
    if sum([args.config_file is not None, args.solution is not None, options]) > 1:
        raise LandscapeUsageError("give one of CONFIG.json, --solution PATH.npz or model options")
    if args.solution is not None:
        problem, params, _ = io.load_solution(args.solution)
        return problem, params
    if args.config_file is None:  # model options (the defaults of ufm solve without any)
        return build_problem(args), None
    try:
        with open(args.config_file) as fh:
            cfg = json.load(fh)
    except OSError as exc:
        raise LandscapeUsageError(f"cannot read config {args.config_file!r}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise LandscapeUsageError(f"config {args.config_file!r} is not JSON: {exc}") from None
    except UnicodeDecodeError:
        raise LandscapeUsageError(f"config {args.config_file!r} is not JSON (a binary file; a saved "
                                  "solution is classified with --solution PATH.npz)") from None
    if isinstance(cfg, dict) and "model" not in cfg and isinstance(cfg.get("config"), dict):
        cfg = cfg["config"]
    return io.problem_from_config(cfg), None


def _solve(problem, seed, max_steps):
    import jax

    from ufm import solvers
    from ufm.compare import certified_solve

    solver = solvers.default_solver(problem)
    x0 = problem.init(jax.random.key(seed))
    return certified_solve(problem, solver, x0, gtol=1e-10, max_steps=max_steps)


def _row(name, problem, params, method, k, predicted=None):
    from ufm import landscape

    if method == "matrix-free":
        # --k counts eigenvalues on the tangent space minus the orbit, whose dimension differs
        # between points (a small model's default k = 6 can exceed it): all of them at most.
        dim_c = int(problem.manifold.dim(params)) - landscape.symmetry_dimension(problem, params)
        k = max(1, min(k, dim_c))
    c = landscape.classify_critical_point(problem, params, method=method, k=k)
    row = dict(point=name, value=float(problem.value(params)), predicted_value=predicted,
               **c.summary())
    return row, c


def _print_table(rows):
    print(f"{'point':24s} {'F':>16s} {'|grad|':>9s} {'λ_min':>11s} {'neg':>5s} {'zero':>5s} "
          f"{'sym':>5s} {'unexpl':>6s}  verdict")
    for r in rows:
        print(f"{r['point']:24.24s} {r['value']:16.10g} {r['grad_norm']:9.1e} {r['min_eigenvalue']:11.3e} "
              f"{r['num_negative']:5d} {r['num_zero']:5d} {r['num_symmetry']:5d} "
              f"{r['num_unexplained_zeros']:6d}  {r['verdict']}")


def _figure(problem, points, path_png):
    import jax
    from matplotlib.figure import Figure  # no pyplot: the user's backend is left alone

    from ufm import io, landscape, plots

    fig = Figure(figsize=(4.2 * len(points), 3.4))
    axes = fig.subplots(1, len(points), squeeze=False)
    for ax, (name, params) in zip(axes[0], points):
        sd = landscape.spectral_density(problem, params, num_probes=8, num_matvecs=60)
        size = sum(int(a.size) for a in jax.tree.leaves(params))
        exact = landscape.hessian_eigenvalues(problem, params) if size <= landscape.DENSE_MAX else None
        plots.spectral_density_plot(ax, sd, exact=exact)
        ax.set_title(name)
    axes[0][0].legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    io.save_figure(path_png, fig)
    io.save_figure(path_png[:-4] + ".pdf", fig)


def run(args) -> int:
    """Execute ``ufm landscape`` (args from :func:`add_parser`); returns the exit status."""
    from ufm import io, landscape

    if args.k < 1:
        raise LandscapeUsageError(f"--k must be an integer >= 1, got {args.k}")
    if args.max_steps < 1:
        raise LandscapeUsageError(f"--max-steps must be an integer >= 1, got {args.max_steps}")
    if args.seed < 0:
        raise LandscapeUsageError(f"--seed must be an integer >= 0, got {args.seed}")
    if getattr(args, "restarts", None) is not None:
        raise LandscapeUsageError("--restarts does not apply to ufm landscape (it solves once, from "
                                  "--seed; classify the best of several starts with ufm solve --out "
                                  "and --solution)")
    if args.out is not None and (not args.out or (os.path.exists(args.out) and not os.path.isdir(args.out))):
        raise LandscapeUsageError(f"--out must be a directory, got {args.out!r}")
    problem, params = _load_problem(args)  # every input checked before --out is created
    if args.out is not None:
        try:
            os.makedirs(args.out, exist_ok=True)
        except OSError as exc:
            raise LandscapeUsageError(f"--out {args.out!r}: {exc.strerror or exc}") from None
        io.check_writable(os.path.join(args.out, "landscape.json"))
    rows, points = [], []
    if params is None:
        sol = _solve(problem, args.seed, args.max_steps)
        params = sol.params
        print(f"solved: status {sol.status_name}, {int(sol.num_steps)} steps, F = {float(sol.value):.15g}")
    row, _ = _row("solution", problem, params, args.method, args.k)
    rows.append(row)
    points.append(("solution", params))
    if not args.no_known:
        for name, x in landscape.known_critical_points(problem).items():
            row, _ = _row(name, problem, x, args.method, args.k, landscape.known_value(problem, name))
            rows.append(row)
            if row["verdict"] == "strict saddle" and len(points) < 3:
                points.append((name, x))
    _print_table(rows)
    if args.out:
        io.save_json(os.path.join(args.out, "landscape.json"),
                     dict(config=problem.config(), rows=rows))
        _figure(problem, points, os.path.join(args.out, "spectrum.png"))
        print(f"written: {os.path.join(args.out, 'landscape.json')}, spectrum.png, spectrum.pdf")
    return 0 if all(math.isfinite(r["value"]) for r in rows) else 1
