"""Command line: ``ufm verify`` (theory vs solver table) and ``ufm solve`` (one configuration).

Bad arguments print one line ``ufm: error: ...`` and exit with status 2; a failing verification
exits with status 1.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

EXIT_FAIL, EXIT_USAGE = 1, 2


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not argparse's usage block
        raise UsageError(message)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="ufm", description="Unconstrained features models: solve and verify theory.")
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

    s = sub.add_parser("solve", help="solve one plain-UFM configuration and compare with theory")
    s.add_argument("--loss", choices=["mse", "ce", "ls", "fl"], default="ce")
    s.add_argument("--K", type=int, default=4, help="number of classes (>= 2)")
    s.add_argument("--n", type=int, default=5, help="samples per class (>= 1)")
    s.add_argument("--d", type=int, default=4, help="feature dimension (>= 1)")
    s.add_argument("--lambda-W", type=float, default=5e-3)
    s.add_argument("--lambda-H", type=float, default=5e-3)
    s.add_argument("--lambda-b", type=float, default=0.0)
    s.add_argument("--no-bias", action="store_true")
    s.add_argument("--alpha", type=float, default=0.1, help="label smoothing (loss ls)")
    s.add_argument("--gamma", type=float, default=2.0, help="focal parameter (loss fl)")
    s.add_argument("--solver", choices=["lbfgs", "gd", "adam"], default="lbfgs")
    s.add_argument("--lr", type=float, default=None, help="learning rate (gd, adam)")
    s.add_argument("--max-steps", type=int, default=20_000)
    s.add_argument("--gtol", type=float, default=1e-12)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--init-scale", type=float, default=0.5)
    s.add_argument("--progress-every", type=int, default=0, metavar="N",
                   help="print progress every N steps (from inside the compiled loop)")
    s.add_argument("--float32", action="store_true", help="solve in float32 (default float64)")
    s.add_argument("--out", metavar="PATH.npz", help="save the solution (npz + json, atomically)")
    return p


def _check_out(path: str | None, suffix: str | None = None) -> None:
    if path is None:
        return
    target = Path(path)
    if target.is_dir():
        raise UsageError(f"--out {path!r} is a directory; give a file name")
    if not target.parent.exists():
        raise UsageError(f"--out {path!r}: directory {str(target.parent)!r} does not exist")
    if suffix and target.suffix != suffix:
        raise UsageError(f"--out {path!r} must end in {suffix}")


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


def cmd_solve(args) -> int:
    import jax

    if args.float32:
        jax.config.update("jax_enable_x64", False)
    import ufm

    _check_out(args.out, ".npz")
    loss = {"mse": ufm.losses.MSE, "ce": ufm.losses.CrossEntropy,
            "ls": lambda: ufm.losses.LabelSmoothing(args.alpha),
            "fl": lambda: ufm.losses.Focal(args.gamma)}[args.loss]()
    problem = ufm.UFM(args.K, args.n, args.d, loss, args.lambda_W, args.lambda_H,
                      lambda_b=args.lambda_b, bias=not args.no_bias)
    if args.solver == "lbfgs":
        solver = ufm.solvers.LBFGS()
    elif args.solver == "gd":
        solver = ufm.solvers.GradientDescent(args.lr or 0.1, momentum=0.9)
    else:
        solver = ufm.solvers.Adam(args.lr or 1e-2)
    if args.init_scale <= 0:
        raise ValueError(f"init-scale must be > 0, got {args.init_scale}")
    sol = ufm.solve(problem, solver, problem.init(jax.random.key(args.seed), args.init_scale),
                    max_steps=args.max_steps, gtol=args.gtol, progress_every=args.progress_every)
    print(f"status {sol.status_name}, {int(sol.num_steps)} steps, F = {float(sol.value):.15g}, "
          f"|grad| = {float(sol.grad_norm):.3e}")
    ok = True
    try:
        prediction = ufm.theory.predict(problem)
    except ufm.theory.NoClosedForm as exc:
        print(f"no closed form: {exc}")
    else:
        report = ufm.compare(problem, sol, prediction)
        print(f"regime: {prediction.regime}")
        print(report)
        ok = report.ok
    if args.out:
        ufm.io.save_solution(args.out, problem, sol, seed=args.seed)
        print(f"solution written to {args.out}")
    return 0 if ok else EXIT_FAIL


def _enable_compilation_cache(jax) -> None:
    """Keep compiled programs on disk (compilation dominates a verify run; the second run of the
    same table is several times faster). JAX_COMPILATION_CACHE_DIR overrides the place;
    UFM_NO_CACHE=1 turns it off."""
    import os

    if os.environ.get("UFM_NO_CACHE") == "1":
        return
    path = os.environ.get("JAX_COMPILATION_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "ufm", "jax")
    try:
        os.makedirs(path, exist_ok=True)
        jax.config.update("jax_compilation_cache_dir", path)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
    except Exception:  # an unwritable cache only costs time
        pass


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
        if args.command is None:
            raise UsageError("a command is required: verify or solve (see ufm --help)")
        import jax

        jax.config.update("jax_enable_x64", True)  # the CLI is an application: theory checks in float64
        _enable_compilation_cache(jax)
        return {"verify": cmd_verify, "solve": cmd_solve}[args.command](args)
    except (UsageError, ValueError) as exc:
        print(f"ufm: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("ufm: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
