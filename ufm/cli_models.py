"""Every model from the command line: the arguments of ``ufm solve`` / ``ufm sweep``, the problem
they build, and the solve-then-compare pipeline both commands run.

One flat set of options serves the six models; each model accepts only its own (an option that
does not apply to ``--model`` is refused by name, never silently ignored). A JSON ``--config``
(the ``config()`` of any problem, e.g. from a saved solution or a ``ufm verify --out`` row) builds
any problem the options cannot spell, such as explicit label sets or stored targets.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

MODELS = ("ufm", "deep", "extended", "multilabel", "spherical", "regression")
SOLVERS = ("lbfgs", "tr", "gd", "adam", "rgd")

# Options each model accepts (besides the common solve options). None default = "not given".
_MODEL_OPTIONS = {
    "ufm": {"loss", "K", "n", "d", "lambda_W", "lambda_H", "lambda_b", "no_bias", "alpha", "gamma"},
    "deep": {"loss", "K", "n", "widths", "lambda_W", "lambda_H", "lambda_b", "bias", "alpha",
             "gamma", "activation", "restarts"},
    "extended": {"loss", "K", "n", "d", "dim_hidden", "lambda_W", "lambda_H", "lambda_b", "bias",
                 "alpha", "gamma", "activation", "restarts"},
    "multilabel": {"loss", "K", "counts_by_size", "d", "lambda_W", "lambda_H", "lambda_b", "no_bias"},
    "spherical": {"loss", "K", "n", "d", "radius_W", "radius_H", "temperature", "alpha", "gamma"},
    "regression": {"N", "d", "spectrum", "targets", "target_seed", "lambda_W", "lambda_H"},
}
_MODEL_LOSSES = {
    "ufm": ("mse", "ce", "ls", "fl"), "deep": ("mse", "ce", "ls", "fl"),
    "extended": ("mse", "ce", "ls", "fl"), "multilabel": ("pal", "pal_normalised"),
    "spherical": ("ce", "ls", "fl"), "regression": (),
}
# Defaults per model (a paper-size configuration that solves in seconds).
_DEFAULTS = {
    "ufm": dict(loss="ce", K=4, n=5, d=4, lambda_W=5e-3, lambda_H=5e-3, lambda_b=0.0),
    # deep models: bias-free by default, as in the theory (docs/theory/deep.md); --bias adds one
    "deep": dict(loss="mse", K=3, n=2, widths=(3, 3, 3), lambda_W=1e-2, lambda_H=1e-2, lambda_b=0.0,
                 activation="identity", restarts=6),
    "extended": dict(loss="mse", K=3, n=2, d=4, dim_hidden=4, lambda_W=1e-2, lambda_H=1e-2,
                     lambda_b=0.0, activation="relu", restarts=6),
    "multilabel": dict(loss="pal", K=3, counts_by_size={1: 4, 2: 2}, d=3, lambda_W=5e-3,
                       lambda_H=5e-3, lambda_b=0.0),
    "spherical": dict(loss="ce", K=4, n=3, d=4, radius_W=1.0, radius_H=1.0, temperature=0.5),
    "regression": dict(N=20, d=3, spectrum=(4.0, 2.0, 1.0), target_seed=0, lambda_W=1e-2, lambda_H=1e-2),
}
_OPTION_FLAGS = {"K": "--K", "n": "--n", "d": "--d", "N": "--N"}


def flag(name: str) -> str:
    """The command-line spelling of option ``name`` (``lambda_W`` → ``--lambda-W``)."""
    return _OPTION_FLAGS.get(name, "--" + name.replace("_", "-"))


class UsageError(Exception):
    """Bad command-line input: printed as one line, exit status 2."""


# ---- parsing helpers (argparse types) ------------------------------------------------------

INT_MAX = 2**31 - 1  # step counters and sizes are int32 on device in float32 mode
INIT_SCALE = 0.5  # --init-scale by default


def _int_text(text: str, what: str = "an integer") -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
    if abs(value) > INT_MAX:
        raise argparse.ArgumentTypeError(f"must be an integer in [{-INT_MAX}, {INT_MAX}] (int32), got {text}")
    return value


def _float_text(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def int_or_list(text: str):
    """``5`` → 5, ``10,5,2`` → (10, 5, 2) (per-class counts)."""
    parts = [p.strip() for p in str(text).split(",")]
    if len(parts) == 1:
        return _int_text(parts[0])
    return tuple(_int_text(p, "a comma-separated list of integers") for p in parts)


def float_or_list(text: str):
    """``0.01`` → 0.01, ``0.01,0.02`` → (0.01, 0.02) (per-layer decays)."""
    parts = [p.strip() for p in str(text).split(",")]
    if len(parts) == 1:
        return _float_text(parts[0])
    return tuple(_float_text(p) for p in parts)


def int_list(text: str) -> tuple:
    return tuple(_int_text(p.strip(), "a comma-separated list of integers") for p in str(text).split(","))


def float_list(text: str) -> tuple:
    return tuple(_float_text(p.strip()) for p in str(text).split(","))


def counts_by_size(text: str) -> dict:
    """``1:4,2:2`` → {1: 4, 2: 2}: n_m samples for every label set of size m."""
    out = {}
    for part in str(text).split(","):
        size, sep, count = part.partition(":")
        if not sep:
            raise argparse.ArgumentTypeError(f"must be SIZE:COUNT pairs such as 1:4,2:2, got {text!r}")
        m = _int_text(size.strip(), "SIZE:COUNT pairs of integers")
        if m in out:
            raise argparse.ArgumentTypeError(f"label-set size {m} is given twice in {text!r}")
        out[m] = _int_text(count.strip(), "SIZE:COUNT pairs of integers")
    return out


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The model options shared by ``ufm solve`` and ``ufm sweep`` (defaults depend on --model)."""
    g = parser.add_argument_group("model")
    g.add_argument("--model", choices=MODELS, default=None,
                   help="model family (default ufm; or the config's, with --config)")
    g.add_argument("--config", metavar="PATH.json",
                   help="build the problem from a JSON config (the config() of any problem, a saved "
                        "solution's .json, or one row of a ufm verify --out report)")
    g.add_argument("--loss", default=None, help="ufm/deep/extended: mse, ce, ls, fl; spherical: ce, "
                   "ls, fl; multilabel: pal, pal_normalised")
    g.add_argument("--K", type=lambda t: _int_text(t), default=None, help="number of classes (>= 2)")
    g.add_argument("--n", type=int_or_list, default=None,
                   help="samples per class, or per-class counts such as 10,5,2")
    g.add_argument("--d", type=lambda t: _int_text(t), default=None, help="feature dimension (>= 1)")
    g.add_argument("--widths", type=int_list, default=None,
                   help="deep: layer widths d_1,...,d_L (the features H have width d_1)")
    g.add_argument("--dim-hidden", type=lambda t: _int_text(t), default=None,
                   help="extended: width of the hidden layer")
    g.add_argument("--activation", choices=["relu", "identity"], default=None, help="deep, extended")
    g.add_argument("--lambda-W", type=float_or_list, default=None,
                   help="weight decay (deep: one value or one per layer)")
    g.add_argument("--lambda-H", type=lambda t: _float_text(t), default=None)
    g.add_argument("--lambda-b", type=lambda t: _float_text(t), default=None)
    g.add_argument("--no-bias", action="store_true", default=None,
                   help="ufm, multilabel: no classifier bias (they have one by default)")
    g.add_argument("--bias", action="store_true", default=None,
                   help="deep, extended: add a classifier bias (they have none by default)")
    g.add_argument("--alpha", type=lambda t: _float_text(t), default=None,
                   help="label smoothing (loss ls), in [0, 1); default 0.1")
    g.add_argument("--gamma", type=lambda t: _float_text(t), default=None,
                   help="focal parameter (loss fl), >= 0; default 2")
    g.add_argument("--counts-by-size", type=counts_by_size, default=None, metavar="M:N,...",
                   help="multilabel: every label set of size M gets N samples, e.g. 1:4,2:2")
    g.add_argument("--radius-W", type=lambda t: _float_text(t), default=None, help="spherical")
    g.add_argument("--radius-H", type=lambda t: _float_text(t), default=None, help="spherical")
    g.add_argument("--temperature", type=lambda t: _float_text(t), default=None, help="spherical")
    g.add_argument("--N", type=lambda t: _int_text(t), default=None,
                   help="regression: number of samples of the synthetic targets")
    g.add_argument("--spectrum", type=float_list, default=None,
                   help="regression: eigenvalues of the synthetic targets' covariance, e.g. 4,2,1")
    g.add_argument("--targets", metavar="PATH", default=None,
                   help="regression: targets [N, t] from a .npy or .csv file instead of --spectrum")
    g.add_argument("--target-seed", type=lambda t: _int_text(t), default=None,
                   help="regression: seed of the synthetic targets (default 0)")
    g.add_argument("--restarts", type=lambda t: _int_text(t), default=None,
                   help="deep, extended: random starts per init scale (default 6); the best is kept")


def model_of(args) -> str:
    if getattr(args, "config", None) is not None:
        return _load_config(args.config)["model_cli"]
    return args.model or "ufm"


def _given(args) -> set:
    """Model options the user set (argparse leaves the others at None)."""
    names = set().union(*_MODEL_OPTIONS.values())
    return {name for name in names if getattr(args, name, None) is not None}


def _load_config(path: str) -> dict:
    from ufm.io import problem_from_config  # noqa: F401  (validated when built)

    if not path:
        raise UsageError("--config must be a file name, got ''")
    try:
        with open(path) as fh:
            cfg = json.load(fh)
    except OSError as exc:
        raise UsageError(f"--config {path!r}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"--config {path!r} is not JSON: {exc}") from None
    except UnicodeDecodeError:
        raise UsageError(f"--config {path!r} is not JSON (a binary file: give the .json written "
                         "beside a saved .npz)") from None
    if isinstance(cfg, dict) and isinstance(cfg.get("rows"), list) and "config" not in cfg:
        raise UsageError(f"--config {path!r} is a table of many problems (a ufm sweep or verify "
                         "--out file), not one problem's config: give one of its rows' 'config'")
    if isinstance(cfg, dict) and "config" in cfg and isinstance(cfg["config"], dict):
        cfg = cfg["config"]  # a saved solution's record, or a verify row
    if not isinstance(cfg, dict) or "model" not in cfg:
        raise UsageError(f"--config {path!r} must hold a problem config (a JSON object with a 'model' key)")
    model = cfg["model"]
    cli_name = {"ufm": "ufm", "deep_ufm": "deep", "multilabel_ufm": "multilabel",
                "spherical": "spherical", "regression": "regression"}.get(model)
    if cli_name is None:
        raise UsageError(f"--config {path!r}: unknown model {model!r}")
    return dict(cfg, model_cli=cli_name)


def resolved(args) -> dict:
    """The model options with this model's defaults filled in; refuses options of other models."""
    model = args.model or "ufm"
    given = _given(args)
    foreign = sorted(given - _MODEL_OPTIONS[model])
    if foreign:
        names = ", ".join(flag(n) for n in foreign)
        raise UsageError(f"{names} does not apply to --model {model} (its options: "
                         f"{', '.join(flag(n) for n in sorted(_MODEL_OPTIONS[model]))})")
    values = dict(_DEFAULTS[model])
    values.update({name: getattr(args, name) for name in given})
    if "restarts" in given and not (isinstance(values["restarts"], int) and values["restarts"] >= 1):
        raise UsageError(f"--restarts must be an integer >= 1, got {values['restarts']}")
    if isinstance(values.get("lambda_W"), tuple) and model not in ("deep", "extended"):
        raise UsageError(f"--lambda-W takes one value for --model {model}, got "
                         f"{','.join(f'{v:g}' for v in values['lambda_W'])} (one per layer is for "
                         "--model deep or extended)")
    if model == "regression" and "targets" in given and "spectrum" in given:
        raise UsageError("--targets and --spectrum are alternatives: give one")
    if model == "regression" and "targets" in given:
        values.pop("spectrum", None)
        for name in ("N", "target_seed"):
            if name in given:
                raise UsageError(f"{flag(name)} applies to synthetic targets (--spectrum), not --targets")
    return values


def _loss(model: str, values: dict):
    from ufm import losses

    name = values.get("loss")
    allowed = _MODEL_LOSSES[model]
    if name not in allowed:
        raise UsageError(f"--loss must be one of {', '.join(allowed)} for --model {model}, got {name!r}")
    for option, loss in (("alpha", "ls"), ("gamma", "fl")):
        if option in values and name != loss:
            raise UsageError(f"{flag(option)} applies to --loss {loss}, not --loss {name}")
    return {"mse": losses.MSE, "ce": losses.CrossEntropy,
            "ls": lambda: losses.LabelSmoothing(values.get("alpha", 0.1)),
            "fl": lambda: losses.Focal(values.get("gamma", 2.0)),
            "pal": losses.PickAllLabel, "pal_normalised": losses.PickAllLabelNormalised}[name]()


def _read_targets(path: str):
    import warnings
    import zipfile

    import numpy as np

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # e.g. loadtxt's 'input contained no data': one line, below
            if path.endswith(".npy"):
                Y = np.load(path, allow_pickle=False)
            elif path.endswith((".csv", ".txt")):
                Y = np.loadtxt(path, delimiter="," if path.endswith(".csv") else None, ndmin=2)
            else:
                raise UsageError(f"--targets {path!r} must be a .npy, .csv or .txt file")
    except OSError as exc:
        raise UsageError(f"--targets {path!r}: {exc.strerror or exc}") from None
    except (ValueError, Warning, EOFError, zipfile.BadZipFile) as exc:
        raise UsageError(f"--targets {path!r} could not be read as a numeric array: {exc}") from None
    if not isinstance(Y, np.ndarray):  # np.load of an .npz archive under a .npy name
        Y.close()
        raise UsageError(f"--targets {path!r} is an .npz archive, not one array (.npy)")
    if Y.ndim == 1:
        Y = Y[:, None]
    return Y


def build_problem(args):
    """The problem the options (or ``--config``) describe. Model errors (range checks) propagate as
    ValueError naming the model's argument; option errors raise :class:`UsageError`."""
    import ufm

    if getattr(args, "config", None) is not None:
        if args.model is not None or _given(args):
            raise UsageError("--config describes the whole problem: give no model options with it")
        cfg = _load_config(args.config)
        cfg.pop("model_cli")
        return ufm.io.problem_from_config(cfg)
    model = args.model or "ufm"
    v = resolved(args)
    bias = bool(v.get("bias", False)) if model in ("deep", "extended") else not v.get("no_bias", False)
    if model == "ufm":
        return ufm.UFM(v["K"], v["n"], v["d"], _loss(model, v), v["lambda_W"], v["lambda_H"],
                       lambda_b=v["lambda_b"], bias=bias)
    if model == "deep":
        return ufm.DeepUFM(v["K"], v["n"], v["widths"], _loss(model, v), v["lambda_W"], v["lambda_H"],
                           v["lambda_b"], bias, activation=v["activation"])
    if model == "extended":
        return ufm.DeepUFM.extended(v["K"], v["n"], v["d"], v["dim_hidden"], _loss(model, v),
                                    v["lambda_W"], v["lambda_H"], lambda_b=v["lambda_b"], bias=bias,
                                    activation=v["activation"])
    if model == "multilabel":
        return ufm.MultiLabelUFM.balanced(v["K"], v["counts_by_size"], v["d"], _loss(model, v),
                                          v["lambda_W"], v["lambda_H"], lambda_b=v["lambda_b"], bias=bias)
    if model == "spherical":
        return ufm.SphericalUFM(v["K"], v["n"], v["d"], _loss(model, v), v["radius_W"], v["radius_H"],
                                v["temperature"])
    if "targets" in v:
        Y = _read_targets(v["targets"])
    else:
        from ufm.problems.regression import synthetic_targets

        if v["target_seed"] < 0:
            raise ValueError(f"target_seed must be >= 0, got {v['target_seed']}")
        Y = synthetic_targets(v["target_seed"], v["N"], v["spectrum"])
    return ufm.RegressionUFM(Y, v["d"], v["lambda_W"], v["lambda_H"])


def model_name(problem) -> str:
    """The CLI model name of a problem (``extended`` is a depth-2 deep UFM)."""
    import ufm

    if isinstance(problem, ufm.DeepUFM):
        return "deep"
    return {ufm.UFM: "ufm", ufm.MultiLabelUFM: "multilabel", ufm.SphericalUFM: "spherical",
            ufm.RegressionUFM: "regression"}[type(problem)]


# ---- solving ----------------------------------------------------------------------------

def make_solver(problem, name: str | None, lr: float | None):
    """The stepper for ``--solver`` (default: :func:`ufm.solvers.default_solver`, the trust region
    on smooth problems and L-BFGS on ReLU ones)."""
    import ufm

    euclidean = problem.manifold.is_euclidean
    if name is None:
        if lr is not None:
            raise UsageError("--lr applies to --solver gd, adam or rgd (the default solver chooses "
                             "its own steps)")
        return ufm.solvers.default_solver(problem)
    if name == "lbfgs" and not euclidean:
        raise UsageError("--solver lbfgs is Euclidean only: use tr or rgd for --model spherical")
    if lr is not None and name in ("lbfgs", "tr"):
        raise UsageError(f"--lr applies to --solver gd, adam or rgd ({name} chooses its own steps)")
    if name == "rgd" and euclidean:
        raise UsageError("--solver rgd is for --model spherical; use gd on Euclidean problems")
    if name in ("gd", "adam") and not euclidean:
        raise UsageError(f"--solver {name} is Euclidean only: use tr or rgd for --model spherical")
    if name == "lbfgs":
        return ufm.solvers.LBFGS()
    if name == "tr":
        return ufm.solvers.TrustRegion()
    if name == "gd":
        return ufm.solvers.GradientDescent(0.1 if lr is None else lr, momentum=0.9)
    if name == "adam":
        return ufm.solvers.Adam(1e-2 if lr is None else lr)
    return ufm.solvers.RiemannianGradientDescent() if lr is None else \
        ufm.solvers.RiemannianGradientDescent(lr)


def _deep_best(problem, solver, *, restarts: int, gtol: float, max_steps: int, scales, seed: int = 0):
    """Best of restarts × init scales (the deep landscapes have spurious minima and a strict local
    minimum at the origin): one compiled solve reused for every start. ``seed`` picks the starts:
    keys ``seed * restarts, ..., seed * restarts + restarts - 1`` (seed 0: keys 0 to restarts - 1)."""
    import jax

    from ufm.solvers import Status, solve

    best = None
    for scale in scales:
        for key in range(seed * restarts, (seed + 1) * restarts):
            sol = solve(problem, solver, problem.init(jax.random.key(key), scale), gtol=gtol,
                        max_steps=max_steps)
            if int(sol.status) == Status.MAX_STEPS:  # warm restart (fresh curvature memory)
                steps = sol.num_steps
                sol = solve(problem, solver, sol.params, gtol=gtol, max_steps=max_steps)
                sol = sol._replace(num_steps=steps + sol.num_steps)
            if best is None or float(sol.value) < float(best.value):
                best = sol
    return best


DEEP_SCALES = (0.05, 0.5, 1.0, 2.0)
RELU_GTOL, RELU_TOL = 1e-6, 1e-4


def trust_region_notes(solver, sol) -> list:
    """A note when the trust region's truncated CG hit its iteration cap (``TrustRegionState.capped``)."""
    capped = getattr(getattr(sol.state, "inner", None), "capped", None)  # TrustRegion's state only
    if capped is None or int(capped) == 0:
        return []
    return [f"trust region: {int(capped)} subproblem(s) stopped at max_inner = "
            f"{solver.max_inner} CG iterations without meeting the residual rule (an "
            f"ill-conditioned Hessian: convergence is no longer superlinear; raise max_inner or "
            f"try --solver lbfgs)"]


def solve_and_compare(problem, solver, *, seed: int, init_scale: float | None, max_steps: int, gtol: float,
                      solve_fn, restarts: int | None = None, log=print):
    """Solve ``problem``, escape saddles, and compare with the closed form when there is one.

    Returns ``(solution, report or None, notes)``: ``report`` is None when no theorem gives the
    minimiser (``notes`` say why, with the certified value). Deep models solve from ``restarts``
    starts (chosen by ``seed``) at each of several init scales and keep the best (``init_scale``
    does not apply to them; None elsewhere means ``INIT_SCALE``); their ReLU variants are judged at the
    fixed tolerances of ``ufm verify``'s ReLU rows (the optimum sits on the ReLU's kink, where the
    Hessian certificate is one-sided).
    """
    import jax

    import ufm
    from ufm.compare import escape_saddles

    deep = isinstance(problem, ufm.DeepUFM)
    relu = deep and problem.activation == "relu"
    if deep:
        sol = _deep_best(problem, solver, restarts=6 if restarts is None else restarts, gtol=gtol,
                         max_steps=max_steps, scales=DEEP_SCALES, seed=seed)
    else:
        scale = INIT_SCALE if init_scale is None else init_scale
        sol = solve_fn(problem, solver, problem.init(jax.random.key(seed), scale),
                       max_steps=max_steps, gtol=gtol)
    notes = trust_region_notes(solver, sol)
    if int(sol.status) == int(ufm.Status.NONFINITE):
        return sol, None, ["the solve became non-finite (try a smaller --lr or --init-scale)"]
    if not relu and int(sol.status) == int(ufm.Status.CONVERGED):
        sol, _, escapes = escape_saddles(problem, solver, sol, gtol=gtol, max_steps=max_steps,
                                         restarts=0)
        if escapes:
            log(f"escaped {escapes} saddle point(s) along negative curvature")
    try:
        prediction = ufm.theory.predict(problem)
    except ufm.theory.NoClosedForm as exc:
        notes.append(f"no closed form: {exc}")
        if deep and hasattr(problem, "dnc_candidate"):
            with _suppress_no_closed_form():
                dnc = problem.dnc_candidate()
                gap = (dnc.value - float(sol.value)) / abs(dnc.value) if dnc.value else math.nan
                notes.append(f"DNC candidate (an upper bound) {dnc.value:.12g}; best value found "
                             f"{float(sol.value):.12g} (relative gap {gap:.3g})")
        return sol, None, notes
    if relu:
        from ufm.cases.deep import _tolerances

        report = ufm.compare(problem, sol, prediction, tolerances=_tolerances(prediction, RELU_TOL),
                             gtol=max(gtol, RELU_GTOL), hessian=False)
    else:
        report = ufm.compare(problem, sol, prediction)
    return sol, report, notes


class _suppress_no_closed_form:
    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        import ufm

        return kind is not None and issubclass(kind, (ufm.theory.NoClosedForm, ValueError))


def progress(done: int, total: int, start: float, label: str = "") -> None:
    """A one-line progress bar on stderr (redrawn in place on a terminal)."""
    import time

    width = 30
    filled = int(width * done / max(total, 1))
    elapsed = time.perf_counter() - start
    eta = elapsed / done * (total - done) if done else float("nan")
    line = (f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total}  {elapsed:6.1f} s"
            f"  eta {eta:6.1f} s  {label}")
    end = "" if sys.stderr.isatty() and done < total else "\n"
    if not sys.stderr.isatty():
        line = line.lstrip("\r")
    print(line, file=sys.stderr, end=end, flush=True)
