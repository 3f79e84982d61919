#!/usr/bin/env python3
"""The ufm benchmark: speed per step, time to a certified minimiser, sweeps, compilation, GEMM floor.

One run measures, on this machine, with the contestants alternated round by round so that they see
the same load, their order rotated each round (each keeps its best round; ratios are of those, never
absolute times alone):

* ``steps``: seconds per full-batch gradient step at four sizes (K, n, d, loss), float32: ufm
  (``ufm.solve`` with ``GradientDescent`` as a user calls it, the stopping rules tested every 16
  steps by default, and every step with ``check_every=1``), a bare ``jit`` + ``lax.scan`` of the
  same update written by hand, and
  the PyTorch baseline (``benchmarks/torch_reference.py``). Also the step's GEMM floor: the same
  scan of only its three matrix products, and each contestant's fraction of it.
* ``threads``: the same seconds per step with the process on every core and pinned to one core
  (``taskset -c 0``), ufm (and the bare scan) and torch each in fresh child processes, alternated:
  which thread setting each contestant runs best at, and torch / ufm with each at its best.
* ``certified``: float64 time to a certified minimiser (gradient norm ≤ 1e-10 and objective
  within 1e-10 of the closed form) at the paper sizes, per solver, compile excluded and with a
  cold compile (a fresh process, no persistent cache) and a warm one (persistent cache), against
  the PyTorch loop's 30,000 steps (float32, as the reference scripts run it) and the gap it reaches.
* ``sweep``: throughput of a 256-point grid of paper-size CE problems (64 λ in [1e-4, 3e-2]
  across the collapse threshold × 4 seeds, the default solver, float64, gtol 1e-10): one ``ufm.solve`` after another (and with L-BFGS),
  ``vmap_solve`` with each batching (on a CPU the lockstep ones on 16 and 8 spread points), and
  PyTorch once per point (its 30,000 steps per point from its measured seconds per step).
* ``solvers``: per model, steps and seconds to gradient norm 1e-10 with the trust region and with
  L-BFGS (Riemannian gradient descent on the sphere): the measurement behind the default solver.
Compile times (cold, and from the persistent cache) and ``import ufm`` are measured in ``certified``.

Usage:
    python benchmarks/bench.py [--sections steps threads certified solvers sweep] [--quick]
        [--out benchmarks/results]

Writes ``<out>/<machine>-<date>.json`` and ``.md`` (machine, versions, date, every number).
Needs torch for the baseline (``pip install -e '.[bench]'``); without it only ufm is timed.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # time this checkout's ufm
sys.path.insert(0, str(HERE))

from bench_vs_torch import INIT_SCALE, LAMBDA, _torch_available, time_torch  # noqa: E402

STEP_SIZES = [(4, 100, 64, "mse"), (10, 100, 64, "ce"), (100, 10, 128, "ce"), (10, 1000, 512, "ce")]
PAPER_SIZES = [(10, 100, 64, "ce"), (4, 100, 64, "mse")]
LR = 0.1
TORCH_STEPS = 30_000


def _steps_for(problem, start, seconds: float = 0.3) -> int:
    """Steps per timed round: about ``seconds`` of the bare scan on this machine (a solve call's
    fixed ~0.4 ms then weighs ≤ 0.2%), calibrated by timing 64 bare steps (a fitted formula was
    off by 5× at K = 100, leaving rounds of 50 ms that this machine's noise swamped)."""
    calibrate = _bare_runner(problem, start, 64)
    calibrate()  # compile
    per_step = _best(calibrate, 3) / 64
    steps = max(64, min(20_000, int(seconds / per_step)))
    return steps - steps % 64  # whole chunks of the default check_every (16), also in --quick


def machine_info() -> dict:
    import jax
    import jaxlib
    import numpy as np
    import optax

    info = dict(date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                host=platform.node(), platform=platform.platform(), python=platform.python_version(),
                processor=platform.processor() or platform.machine(), cpus=os.cpu_count(),
                jax=jax.__version__, jaxlib=jaxlib.__version__, optax=optax.__version__,
                numpy=np.__version__, backend=jax.default_backend(),
                devices=[str(d) for d in jax.devices()])
    try:
        with open("/proc/cpuinfo") as fh:
            names = [line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")]
        info["cpu_model"] = names[0] if names else None
    except OSError:
        pass
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        info["torch"] = None
    try:
        import ufm

        info["ufm"] = ufm.__version__
        rev = subprocess.run(["git", "-C", str(HERE.parent), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(HERE.parent), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        info["git"] = rev + ("-dirty" if dirty else "")
    except Exception:
        pass
    return info


def _best(fn, rounds):
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


# ---------------------------------------------------------------------------------------------
# steps


def _bare_runner(problem, start, steps):
    """A hand-written jit + scan of the same GD step (lr on W, b; N·lr on H) on the same objective."""
    import jax
    import jax.numpy as jnp

    K, N, lam = problem.num_classes, problem.num_samples, LAMBDA
    mse = problem.loss.name == "mse"

    def objective(x, labels):
        z = x.H @ x.W.T + x.b
        if mse:
            fit = 0.5 * jnp.mean(jnp.sum((z - jax.nn.one_hot(labels, K, dtype=z.dtype)) ** 2, -1))
        else:
            fit = jnp.mean(jax.nn.logsumexp(z, -1) - jnp.take_along_axis(z, labels[:, None], -1)[:, 0])
        return fit + 0.5 * lam * (jnp.sum(x.W ** 2) + jnp.sum(x.H ** 2))

    @jax.jit
    def run(x, labels):
        def body(x, _):
            g = jax.grad(objective)(x, labels)
            return type(x)(x.W - LR * g.W, x.H - N * LR * g.H, x.b - LR * g.b), None

        return jax.lax.scan(body, x, None, length=steps)[0]

    labels = jnp.asarray(problem.labels, jnp.int32)
    return lambda: jax.block_until_ready(run(start, labels))


def _gemm_runner(problem, start, steps):
    """The step's three matrix products alone (Z = H Wᵀ, Gᵀ H, G W), scanned: the GEMM floor."""
    import jax

    @jax.jit
    def run(W, H):
        def body(c, _):
            W, H = c
            G = H @ W.T  # [N, K] stands in for the loss gradient (same shape)
            return (W + 1e-9 * (G.T @ H), H + 1e-9 * (G @ W)), None

        return jax.lax.scan(body, (W, H), None, length=steps)[0]

    return lambda: jax.block_until_ready(run(start.W, start.H))


def _peak_gemm_gflops(rounds=5) -> float:
    import jax
    import jax.numpy as jnp

    n = 1024
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    f = jax.jit(lambda a: a @ a)
    jax.block_until_ready(f(a))
    return 2 * n ** 3 / _best(lambda: jax.block_until_ready(f(a)), rounds) / 1e9


def bench_steps(args) -> list[dict]:
    import jax

    import ufm

    jax.config.update("jax_enable_x64", False)
    losses = {"ce": ufm.losses.CrossEntropy(), "mse": ufm.losses.MSE()}
    rows = []
    sizes = STEP_SIZES[:2] if args.quick else STEP_SIZES
    for K, n, d, loss in sizes:
        problem = ufm.UFM(K, n, d, losses[loss], LAMBDA, LAMBDA)
        start = problem.init(jax.random.key(0), scale=INIT_SCALE)
        steps = _steps_for(problem, start, 0.075 if args.quick else 0.3)
        solver = ufm.solvers.GradientDescent(LR)
        runners = {
            "ufm": lambda: jax.block_until_ready(
                ufm.solve(problem, solver, start, max_steps=steps, gtol=0.0).value),
            "ufm_check_every_1": lambda: jax.block_until_ready(
                ufm.solve(problem, solver, start, max_steps=steps, gtol=0.0, check_every=1).value),
            "bare_scan": _bare_runner(problem, start, steps),
            "gemm_floor": _gemm_runner(problem, start, steps),
        }
        for run in runners.values():
            run()  # compile and warm up
        best = {name: float("inf") for name in runners}
        torch_best = None
        names = list(runners)
        for r in range(args.rounds):
            # Rotated each round: the contestant right after torch's subprocess runs slow (measured
            # 10-20% at K = 100), and a fixed order gave that handicap to ufm every round.
            for name in names[r % len(names):] + names[:r % len(names)]:
                run = runners[name]
                t0 = time.perf_counter()
                run()
                best[name] = min(best[name], (time.perf_counter() - t0) / steps)
            if args.torch:
                t = time_torch(K, n, d, loss, max(steps // 4, 20), "float32", LR, args.torch_device)
                if "seconds_per_step" in t and (torch_best is None or t["seconds_per_step"] < torch_best):
                    torch_best = t["seconds_per_step"]
        flops = 3 * 2 * K * n * K * d  # three products of N·K·d multiply-adds
        row = dict(K=K, n=n, d=d, loss=loss, dtype="float32", steps=steps, rounds=args.rounds,
                   seconds_per_step={**best, "torch": torch_best},
                   ufm_over_bare=best["ufm"] / best["bare_scan"],
                   ufm_check_every_1_over_bare=best["ufm_check_every_1"] / best["bare_scan"],
                   torch_over_ufm=None if torch_best is None else torch_best / best["ufm"],
                   gemm_gflops=flops / best["gemm_floor"] / 1e9,
                   fraction_of_gemm_floor=best["gemm_floor"] / best["ufm"],
                   fraction_of_gemm_floor_check_every_1=best["gemm_floor"] / best["ufm_check_every_1"])
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


_THREADS_CHILD = r"""
import json, os, sys
sys.path.insert(0, sys.argv[1]); sys.path.insert(0, sys.argv[2])
import jax
jax.config.update("jax_enable_x64", False)
import ufm
from bench import LAMBDA, LR, _bare_runner, _best, _steps_for
from bench_vs_torch import INIT_SCALE
K, n, d = map(int, sys.argv[3:6]); loss = sys.argv[6]; rounds = int(sys.argv[7])
p = ufm.UFM(K, n, d, {"ce": ufm.losses.CrossEntropy(), "mse": ufm.losses.MSE()}[loss], LAMBDA, LAMBDA)
x0 = p.init(jax.random.key(0), scale=INIT_SCALE)
steps = _steps_for(p, x0, float(sys.argv[8]))
solver = ufm.solvers.GradientDescent(LR)
runners = {"ufm": lambda: jax.block_until_ready(ufm.solve(p, solver, x0, max_steps=steps, gtol=0.0).value),
           "bare_scan": _bare_runner(p, x0, steps)}
for run in runners.values():
    run()
out = {name: _best(run, rounds) / steps for name, run in runners.items()}
print(json.dumps(dict(out, cores=len(os.sched_getaffinity(0)), steps=steps)))
"""


@contextlib.contextmanager
def _cores(pinned: bool):
    """With ``pinned``, this process on the first core it may run on while the block runs
    (``taskset -c``): children started inside inherit it, and XLA and torch size their thread
    pools to it. (A preexec_fn would do the same in the child, but is unsafe in a threaded parent.)"""
    if not pinned:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(before)})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def bench_threads(args) -> list[dict]:
    """Seconds per step at the four sizes with the process on every core and pinned to one
    (``taskset -c 0``), ufm and torch each in fresh child processes, the four alternated round by
    round: the measurement behind the thread advice in docs/speed.md."""
    if not hasattr(os, "sched_setaffinity"):
        print("threads: this platform cannot pin a process (no os.sched_setaffinity); skipped", flush=True)
        return []
    rows = []
    sizes = STEP_SIZES[:2] if args.quick else STEP_SIZES
    seconds = 0.075 if args.quick else 0.3
    inner = 1 if args.quick else 3
    for K, n, d, loss in sizes:
        def ufm_child(pinned):
            with _cores(pinned):
                proc = subprocess.run([sys.executable, "-c", _THREADS_CHILD, str(HERE), str(HERE.parent), str(K),
                                       str(n), str(d), loss, str(inner), str(seconds)], capture_output=True, text=True)
            if proc.returncode:
                return dict(error=(proc.stderr.strip().splitlines() or ["?"])[-1])
            return json.loads(proc.stdout.strip().splitlines()[-1])

        torch_steps = [500 if args.quick else 2000]

        def torch_child(pinned):
            with _cores(pinned):
                return time_torch(K, n, d, loss, torch_steps[0], "float32", LR, args.torch_device)

        contestants = [("ufm", False), ("ufm", True)] + ([("torch", False), ("torch", True)] if args.torch else [])
        best, cores_seen = {}, {}
        for r in range(1 if args.quick else args.thread_rounds):
            for name, pinned in contestants[r % len(contestants):] + contestants[:r % len(contestants)]:
                key = ("one_core" if pinned else "all_cores")
                if name == "ufm":
                    t = ufm_child(pinned)
                    if "cores" in t:
                        cores_seen[key] = t["cores"]  # 1 when pinned: the child saw one core
                        torch_steps[0] = max(t["steps"] // 4, 20)  # as in the steps section
                    for part in ("ufm", "bare_scan"):
                        if part in t:
                            slot = best.setdefault(part, {})
                            slot[key] = min(slot.get(key, float("inf")), t[part])
                else:
                    t = torch_child(pinned)
                    if "seconds_per_step" in t:
                        slot = best.setdefault("torch", {})
                        slot[key] = min(slot.get(key, float("inf")), t["seconds_per_step"])
        row = dict(K=K, n=n, d=d, loss=loss, dtype="float32", cores=len(os.sched_getaffinity(0)),
                   child_cores=cores_seen, seconds_per_step=best)
        for name, slot in best.items():
            row[f"{name}_best"] = min(slot, key=slot.get)
        if "ufm" in best and "torch" in best:
            row["torch_over_ufm_best_threads"] = min(best["torch"].values()) / min(best["ufm"].values())
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


# ---------------------------------------------------------------------------------------------
# certified


def _problem(K, n, d, loss):
    import ufm

    return ufm.UFM(K, n, d, {"ce": ufm.losses.CrossEntropy(), "mse": ufm.losses.MSE()}[loss], LAMBDA, LAMBDA)


_CERTIFIED_CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import jax
jax.config.update("jax_enable_x64", True)
import ufm
t_import = time.perf_counter() - t0
cache = sys.argv[6]
if cache != "none":
    ufm.enable_compilation_cache(cache)
K, n, d = map(int, sys.argv[1:4]); loss, solver_name = sys.argv[4], sys.argv[5]
p = ufm.UFM(K, n, d, {"ce": ufm.losses.CrossEntropy(), "mse": ufm.losses.MSE()}[loss], %r, %r)
solver = {"tr": ufm.solvers.TrustRegion(), "lbfgs": ufm.solvers.LBFGS()}[solver_name]
x0 = p.init(jax.random.key(0), scale=%r)
t1 = time.perf_counter()
sol = ufm.solve(p, solver, x0, max_steps=100000, gtol=1e-10); jax.block_until_ready(sol.value)
first = time.perf_counter() - t1
t2 = time.perf_counter()
sol = ufm.solve(p, solver, x0, max_steps=100000, gtol=1e-10); jax.block_until_ready(sol.value)
warm = time.perf_counter() - t2
print(json.dumps(dict(import_s=t_import, first_call_s=first, warm_call_s=warm, compile_s=first - warm)))
"""


def _child(K, n, d, loss, solver, cache):
    code = _CERTIFIED_CHILD % (LAMBDA, LAMBDA, INIT_SCALE)
    env = dict(os.environ, UFM_NO_CACHE="1") if cache == "none" else dict(os.environ)
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    proc = subprocess.run([sys.executable, "-c", code, str(K), str(n), str(d), loss, solver, cache],
                          capture_output=True, text=True, env=env, cwd=str(HERE.parent))
    if proc.returncode:
        return dict(error=(proc.stderr.strip().splitlines() or ["?"])[-1])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_certified(args) -> list[dict]:
    import jax

    import ufm

    jax.config.update("jax_enable_x64", True)
    rows = []
    for K, n, d, loss in PAPER_SIZES:
        problem = _problem(K, n, d, loss)
        target = ufm.theory.predict(problem).value
        start = problem.init(jax.random.key(0), scale=INIT_SCALE)
        row = dict(K=K, n=n, d=d, loss=loss, dtype="float64", gtol=1e-10, closed_form=target, solvers={})
        for name, solver in (("tr", ufm.solvers.TrustRegion()), ("lbfgs", ufm.solvers.LBFGS())):
            solve = lambda: ufm.solve(problem, solver, start, max_steps=100_000, gtol=1e-10)  # noqa: E731
            sol = solve()
            jax.block_until_ready(sol.value)
            seconds = _best(lambda: jax.block_until_ready(solve().value), args.rounds)
            gap = abs(float(sol.value) - target)
            cold = _child(K, n, d, loss, name, "none")
            with tempfile.TemporaryDirectory() as cache:
                _child(K, n, d, loss, name, cache)  # fills the cache
                warm_cache = _child(K, n, d, loss, name, cache)
            row["solvers"][name] = dict(
                seconds=seconds, steps=int(sol.num_steps), status=sol.status_name,
                grad_norm=float(sol.grad_norm), gap=gap,
                certified=bool(sol.status_name == "converged" and gap <= 1e-10),
                cold_compile_s=cold.get("compile_s"), warm_cache_compile_s=warm_cache.get("compile_s"),
                import_s=cold.get("import_s"))
        if args.torch:
            steps = 2000 if args.quick else TORCH_STEPS
            # the baseline as researchers run it: float32, 30,000 steps of SGD
            t = time_torch(K, n, d, loss, steps, "float32", LR, args.torch_device)
            if "seconds_per_step" in t:
                row["torch"] = dict(steps=steps, dtype="float32", seconds=t["seconds_per_step"] * steps, value=t["value"],
                                    grad_norm=t["grad_norm"], gap=t["value"] - target)
                for r in row["solvers"].values():
                    r["torch_over_ufm"] = row["torch"]["seconds"] / r["seconds"]
                    if r["cold_compile_s"] is not None:
                        r["torch_over_ufm_with_cold_compile"] = row["torch"]["seconds"] / (r["seconds"] + r["cold_compile_s"])
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


# ---------------------------------------------------------------------------------------------
# sweep


def bench_sweep(args) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    import ufm

    jax.config.update("jax_enable_x64", True)
    K, n, d, loss = PAPER_SIZES[0]
    num_seeds = 4
    num_lambdas = max(1, (8 if args.quick else args.sweep_points) // num_seeds)
    # across the collapse threshold Kτ = K √n λ = 1 (λ = 1e-2), never exactly on it
    lambdas = np.geomspace(1e-4, 3e-2, num_lambdas)
    problem = _problem(K, n, d, loss)
    solver = ufm.solvers.default_solver(problem)  # what vmap_solve's users get: the trust region
    keys = jax.random.split(jax.random.key(0), num_seeds)
    grid_lam = np.repeat(lambdas, num_seeds)
    starts = jax.vmap(lambda k: problem.init(k, scale=INIT_SCALE))(jnp.tile(keys, num_lambdas))
    size = grid_lam.size
    targets = np.array([ufm.theory.predict(_with(problem, lam)).value for lam in grid_lam])

    def sequential(solver, rows):
        out = []
        for i in rows:
            p = _with(problem, grid_lam[i])
            sol = ufm.solve(p, solver, jax.tree.map(lambda x: x[i], starts), max_steps=10_000, gtol=1e-10)
            out.append(float(sol.value))
        return np.array(out)

    result = dict(K=K, n=n, d=d, loss=loss, dtype="float64", points=size, solver=type(solver).__name__,
                  gtol=1e-10, contestants={}, auto_on_this_backend=ufm.sweep.resolve_batching("auto"))

    over = {"lambda_W": grid_lam, "lambda_H": grid_lam}
    every = np.arange(size)

    # On a CPU the lockstep contestants run on an evenly spread subset: their lanes wait for the
    # slowest, and over all 256 points they would take most of an hour.
    def spread(k):
        if jax.default_backend() != "cpu" or args.quick or size <= k:
            return every
        return np.unique(np.linspace(0, size - 1, k).round().astype(int))

    def batched(batching, rows):
        sub = {k: v[rows] for k, v in over.items()}
        sub_starts = jax.tree.map(lambda x: x[rows], starts)
        return lambda: np.asarray(ufm.sweep.vmap_solve(problem, solver, sub_starts, sub, params_batched=True,
                                                       max_steps=10_000, gtol=1e-10, batching=batching).value)

    lbfgs = ufm.solvers.LBFGS()
    # one ufm.solve after another (the loop a sweep must not be slower than), and vmap_solve as a
    # user calls it with each batching
    contestants = [("sequential", lambda: sequential(solver, every), every),
                   ("sequential, L-BFGS", lambda: sequential(lbfgs, every), every),
                   ("vmap_solve auto", batched("auto", every), every),
                   ("vmap_solve map", batched("map", every), every)]
    lockstep = [("vmap_solve chunks of 8", batched(8, spread(2 * args.sweep_vmap_points)),
                 spread(2 * args.sweep_vmap_points)),
                ("vmap_solve vmap", batched("vmap", spread(args.sweep_vmap_points)), spread(args.sweep_vmap_points))]
    timings = {}
    for name, run, rows in contestants + lockstep:  # the first call: compile + run
        t0 = time.perf_counter()
        values = run()
        timings[name] = dict(first=time.perf_counter() - t0, best=float("inf"), values=values, rows=rows)
    # the loop-speed contestants alternated round by round (the load drifts), each keeping its best
    for _ in range(1 if args.quick else args.sweep_rounds):
        for name, run, rows in contestants:
            t0 = time.perf_counter()
            run()
            timings[name]["best"] = min(timings[name]["best"], time.perf_counter() - t0)
    for name, run, rows in lockstep:  # minutes each on a CPU: one timed call
        t0 = time.perf_counter()
        run()
        timings[name]["best"] = time.perf_counter() - t0
    for name, t in timings.items():
        rows = t["rows"]
        ok = np.abs(t["values"] - targets[rows]) <= 1e-9 * np.maximum(1, np.abs(targets[rows]))
        result["contestants"][name] = dict(seconds=t["best"], compile_seconds=max(0.0, t["first"] - t["best"]),
                                           points=len(rows), solves_per_second=len(rows) / t["best"],
                                           matching_theory=int(ok.sum()))
        print(name, json.dumps(result["contestants"][name]), flush=True)
    base = result["contestants"]["sequential"]["solves_per_second"]
    for r in result["contestants"].values():
        r["over_sequential"] = r["solves_per_second"] / base
    if args.torch:
        t = time_torch(K, n, d, loss, 500 if args.quick else 2000, "float32", LR, args.torch_device)
        if "seconds_per_step" in t:
            per_point = t["seconds_per_step"] * TORCH_STEPS
            result["torch"] = dict(seconds_per_point=per_point, solves_per_second=1 / per_point,
                                   note=f"{TORCH_STEPS} steps per point at the measured seconds per step")
            for r in result["contestants"].values():
                r["over_torch"] = r["solves_per_second"] * per_point
    print(json.dumps(result), flush=True)
    return result


# ---------------------------------------------------------------------------------------------
# solvers: the default solver's choice, per model


def _solver_models():
    import jax

    import ufm
    from ufm.problems.regression import synthetic_targets

    pal = ufm.losses.PickAllLabel()
    return [
        ("UFM CE K=10 n=100 d=64", ufm.UFM(10, 100, 64, ufm.losses.CrossEntropy(), LAMBDA, LAMBDA)),
        ("UFM MSE K=4 n=100 d=64", ufm.UFM(4, 100, 64, ufm.losses.MSE(), LAMBDA, LAMBDA)),
        ("UFM MSE no bias K=4 n=20 d=8", ufm.UFM(4, 20, 8, ufm.losses.MSE(), 1e-2, 1e-2, bias=False)),
        ("UFM LS(0.1) K=10 n=20 d=16", ufm.UFM(10, 20, 16, ufm.losses.LabelSmoothing(0.1), 1e-3, 1e-3)),
        ("UFM FL(2) K=10 n=20 d=16", ufm.UFM(10, 20, 16, ufm.losses.Focal(2.0), 1e-3, 1e-3)),
        ("multi-label K=4 {1:5, 2:2} d=8", ufm.MultiLabelUFM.balanced(4, {1: 5, 2: 2}, 8, pal, 1e-3, 1e-3)),
        ("regression N=100 t=3 d=6", ufm.RegressionUFM(synthetic_targets(jax.random.key(0), 100, [2.0, 1.0, 0.5]),
                                                        6, 1e-2, 1e-2)),
        ("deep linear L=2 K=4 n=10", ufm.DeepUFM(4, 10, (8, 8), ufm.losses.MSE(), 1e-3, 1e-3, bias=False,
                                                 activation="identity")),
        ("deep ReLU L=2 K=4 n=10", ufm.DeepUFM(4, 10, (8, 8), ufm.losses.MSE(), 1e-3, 1e-3, bias=False)),
        ("spherical CE K=4 n=5 d=6", ufm.SphericalUFM(4, 5, 6, ufm.losses.CrossEntropy(), temperature=0.5)),
    ]


def bench_solvers(args) -> list[dict]:
    """Steps and seconds to gradient norm 1e-10 from one start, the trust region against L-BFGS
    (Riemannian gradient descent on the sphere), float64: the measurement behind
    ``ufm.solvers.default_solver``. First call = compile + run; warm = best of ``rounds``."""
    import jax

    import ufm

    jax.config.update("jax_enable_x64", True)
    rows = []
    for name, problem in _solver_models():
        euclidean = problem.manifold.is_euclidean
        x0 = problem.init(jax.random.key(0), scale=0.5)
        row = dict(model=name, default=type(ufm.solvers.default_solver(problem)).__name__, solvers={})
        other = ufm.solvers.LBFGS() if euclidean else ufm.solvers.RiemannianGradientDescent()
        for solver in (ufm.solvers.TrustRegion(), other):
            solve = lambda: ufm.solve(problem, solver, x0, max_steps=5_000, gtol=1e-10)  # noqa: E731
            t0 = time.perf_counter()
            sol = solve()
            jax.block_until_ready(sol.value)
            first = time.perf_counter() - t0
            warm = _best(lambda: jax.block_until_ready(solve().value), 1 if args.quick else 3)
            row["solvers"][type(solver).__name__] = dict(
                steps=int(sol.num_steps), status=sol.status_name, grad_norm=float(sol.grad_norm),
                value=float(sol.value), first_call_s=first, warm_s=warm)
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def _with(problem, lam):
    import dataclasses

    return dataclasses.replace(problem, lambda_W=float(lam), lambda_H=float(lam))


# ---------------------------------------------------------------------------------------------


def _markdown(record) -> str:
    m = record["machine"]
    out = [f"# ufm benchmark, {m['date']}", "",
           f"Machine: {m.get('cpu_model') or m['processor']}, {m['cpus']} CPUs ({m['platform']}); "
           f"backend {m['backend']}. Versions: ufm {m.get('ufm')} ({m.get('git')}), jax {m['jax']}, "
           f"jaxlib {m['jaxlib']}, optax {m['optax']}, torch {m.get('torch')}, Python {m['python']}.", ""]
    if "peak_gemm_gflops" in record:
        out += [f"Peak float32 GEMM (1024³, jit): {record['peak_gemm_gflops']:.1f} GFLOP/s.", ""]
    if record.get("steps"):
        out += ["## Seconds per gradient step (float32)", "",
                "| K, n, d, loss | ufm µs | ufm / bare scan | with check_every=1 | torch / ufm | GEMM floor µs (GFLOP/s) | ufm's fraction of the floor |",
                "|---|---|---|---|---|---|---|"]
        for r in record["steps"]:
            s = r["seconds_per_step"]
            torch_ratio = "—" if r["torch_over_ufm"] is None else f"{r['torch_over_ufm']:.1f}×"
            out.append(f"| {r['K']}, {r['n']}, {r['d']}, {r['loss']} | {s['ufm'] * 1e6:.1f} | "
                       f"{r['ufm_over_bare']:.3f} | {r['ufm_check_every_1_over_bare']:.3f} | {torch_ratio} | "
                       f"{s['gemm_floor'] * 1e6:.1f} ({r['gemm_gflops']:.1f}) | "
                       f"{r['fraction_of_gemm_floor']:.2f} / {r['fraction_of_gemm_floor_check_every_1']:.2f} |")
        out.append("")
    if record.get("threads"):
        out += ["## Threads: every core against one (`taskset -c 0`), float32, µs per step", "",
                "Fresh child processes, the four alternated round by round; each keeps its best.", "",
                "| K, n, d, loss | ufm, all cores | ufm, one core | bare scan, all / one | torch, all cores | torch, one core | torch / ufm, each at its best |",
                "|---|---|---|---|---|---|---|"]
        for r in record["threads"]:
            s = r["seconds_per_step"]

            def us(part, key):
                v = s.get(part, {}).get(key)
                return "—" if v is None else f"{v * 1e6:.1f}"

            out.append(f"| {r['K']}, {r['n']}, {r['d']}, {r['loss']} | {us('ufm', 'all_cores')} | {us('ufm', 'one_core')} | "
                       f"{us('bare_scan', 'all_cores')} / {us('bare_scan', 'one_core')} | {us('torch', 'all_cores')} | "
                       f"{us('torch', 'one_core')} | {_fmt(r.get('torch_over_ufm_best_threads'), '.1f', '×')} |")
        out.append("")
    if record.get("certified"):
        out += ["## Time to a certified minimiser (float64, gradient ≤ 1e-10, objective within 1e-10 of the closed form)", "",
                "| K, n, d, loss | solver | steps | seconds | certified | cold compile s | warm-cache compile s | torch 30k steps s (gap) | torch / ufm | with cold compile |",
                "|---|---|---|---|---|---|---|---|---|---|"]
        for r in record["certified"]:
            t = r.get("torch")
            for name, s in r["solvers"].items():
                ts = "—" if not t else f"{t['seconds']:.1f} ({t['gap']:.1e})"
                out.append(f"| {r['K']}, {r['n']}, {r['d']}, {r['loss']} | {name} | {s['steps']} | {s['seconds']:.3f} | "
                           f"{s['certified']} | {_fmt(s['cold_compile_s'])} | {_fmt(s['warm_cache_compile_s'])} | {ts} | "
                           f"{_fmt(s.get('torch_over_ufm'), '.0f', '×')} | {_fmt(s.get('torch_over_ufm_with_cold_compile'), '.0f', '×')} |")
        out.append("")
    if record.get("solvers"):
        out += ["## The default solver, per model (float64, gradient norm ≤ 1e-10, one start, at most 5,000 steps)", "",
                "| model | default | solver | status | steps | F | first call s | warm s |",
                "|---|---|---|---|---|---|---|---|"]
        for r in record["solvers"]:
            for name, c in r["solvers"].items():
                out.append(f"| {r['model']} | {r['default']} | {name} | {c['status']} | {c['steps']} | "
                           f"{c['value']:.12g} | {c['first_call_s']:.2f} | {c['warm_s']:.4f} |")
        out.append("")
    if record.get("sweep"):
        r = record["sweep"]
        out += [f"## Sweep: {r['points']} paper-size problems (K={r['K']}, n={r['n']}, d={r['d']}, {r['loss']}, "
                f"{r['solver']}, {r['dtype']}, gtol {r['gtol']})", "",
                f"`vmap_solve`'s `\"auto\"` on this backend: `{r.get('auto_on_this_backend')}`.", "",
                "| batching | solves/s | vs sequential | vs torch once per point | matching theory | compile s |",
                "|---|---|---|---|---|---|"]
        for name, c in r["contestants"].items():
            out.append(f"| {name} | {c['solves_per_second']:.2f} | {c['over_sequential']:.2f}× | "
                       f"{_fmt(c.get('over_torch'), '.0f', '×')} | {c['matching_theory']}/{c.get('points', r['points'])} | "
                       f"{_fmt(c['compile_seconds'], '.1f')} |")
        if r.get("torch"):
            out.append(f"\nTorch: {r['torch']['seconds_per_point']:.1f} s per point ({r['torch']['note']}).")
        out.append("")
    return "\n".join(out)


def _fmt(x, spec=".2f", suffix=""):
    return "—" if x is None else f"{x:{spec}}{suffix}"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sections", nargs="+", default=["steps", "threads", "certified", "solvers", "sweep"],
                   choices=["steps", "threads", "certified", "solvers", "sweep"])
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--quick", action="store_true", help="smaller sizes and fewer steps (a smoke run)")
    p.add_argument("--no-torch", dest="torch", action="store_false")
    p.add_argument("--torch-device", default="cpu", help="torch device of the baseline (cuda on a GPU)")
    p.add_argument("--thread-rounds", type=int, default=3,
                   help="alternated rounds of the threads section (four child processes each)")
    p.add_argument("--sweep-points", type=int, default=256, help="grid points of the sweep section (λ × 4 seeds)")
    p.add_argument("--sweep-rounds", type=int, default=3, help="alternated timed rounds of the sweep contestants")
    p.add_argument("--sweep-vmap-points", type=int, default=8,
                   help="points of the all-lanes vmap contestant on a CPU, twice as many for the chunks of 8 "
                        "(their lanes wait for the slowest: 32 lanes took 456 s per call)")
    p.add_argument("--out", default=str(HERE / "results"))
    args = p.parse_args(argv)
    for flag in ("rounds", "thread_rounds", "sweep_points", "sweep_rounds", "sweep_vmap_points"):
        if getattr(args, flag) < 1:
            p.error(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    args.torch = args.torch and _torch_available()
    record = dict(machine=machine_info(), argv=sys.argv[1:] if argv is None else list(argv))
    record["peak_gemm_gflops"] = _peak_gemm_gflops()
    for section in args.sections:
        t0 = time.perf_counter()
        record[section] = {"steps": bench_steps, "threads": bench_threads, "certified": bench_certified,
                           "solvers": bench_solvers, "sweep": bench_sweep}[section](args)
        record.setdefault("section_seconds", {})[section] = time.perf_counter() - t0
    from ufm.io import save_json

    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, f"{record['machine']['backend']}-{record['machine']['date'][:10]}"
                        + ("-quick" if args.quick else ""))
    save_json(stem + ".json", record)
    with open(stem + ".md.tmp", "w") as fh:  # moved into place whole, like save_json
        fh.write(_markdown(record))
    os.replace(stem + ".md.tmp", stem + ".md")
    print(f"wrote {stem}.json and {stem}.md")
    return record


if __name__ == "__main__":
    main()
