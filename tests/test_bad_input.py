"""Systematic bad input: every public constructor, ``solve``, every metric and every CLI flag.

Each bad value must raise ``ValueError`` whose one-line message names the argument (the CLI: one
line ``ufm: error: ...`` on stderr, exit status 2), before anything is traced or solved. The cases
are generated from one table per entry point: for a scalar hyperparameter the values of
``BAD_SCALARS`` (None, a string, a bool, a list, a complex number, an array, nan, inf, a negative
number), for an integer size those of ``BAD_SIZES``, plus entry-specific cases.

Cases that still fail, in code this file does not own, are listed in ``KNOWN`` and marked
``xfail(strict=True)``: they show up as XFAIL, and as a failure once fixed (remove them then).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ufm
from ufm import cli, metrics
from ufm.losses import CrossEntropy, Focal, LabelSmoothing, MSE, PickAllLabel

BAD_SCALARS = {"None": None, "str": "0.1", "bool": True, "list": [0.1], "complex": 1 + 2j,
               "array": np.ones(3), "nan": math.nan, "inf": math.inf, "negative": -0.1}
BAD_SIZES = {"None": None, "str": "3", "bool": True, "float": 2.5, "zero": 0, "negative": -1,
             "complex": 3 + 0j, "array": np.ones(3, int), "nan": math.nan}

# (entry, argument, label) of cases that fail today; each names the file at fault (see report).
KNOWN: dict[tuple[str, str, str], str] = {
}


def _cases():
    """Yield (entry, argument, label, thunk, fragment)."""
    ce = CrossEntropy()
    entries = {
        "UFM": (lambda **kw: ufm.UFM(**{**dict(num_classes=3, num_per_class=2, dim=3, loss=ce,
                                                lambda_W=1e-2, lambda_H=1e-2), **kw})),
        "DeepUFM": (lambda **kw: ufm.DeepUFM(**{**dict(num_classes=3, num_per_class=2, widths=(3, 3),
                                                        loss=MSE(), lambda_W=1e-2, lambda_H=1e-2), **kw})),
        "DeepUFM.extended": (lambda **kw: ufm.DeepUFM.extended(**{**dict(
            num_classes=3, num_per_class=2, dim=3, dim_hidden=3, loss=MSE(), lambda_W=1e-2,
            lambda_H=1e-2), **kw})),
        "MultiLabelUFM": (lambda **kw: ufm.MultiLabelUFM(**{**dict(
            num_classes=3, label_sets=[[0], [1], [2], [0, 1]], dim=3, loss=PickAllLabel(),
            lambda_W=1e-2, lambda_H=1e-2), **kw})),
        "MultiLabelUFM.balanced": (lambda **kw: ufm.MultiLabelUFM.balanced(**{**dict(
            num_classes=3, counts_by_size={1: 1, 2: 1}, dim=3, loss=PickAllLabel(), lambda_W=1e-2,
            lambda_H=1e-2), **kw})),
        "SphericalUFM": (lambda **kw: ufm.SphericalUFM(**{**dict(num_classes=3, num_per_class=2, dim=3,
                                                                  loss=ce), **kw})),
        "RegressionUFM": (lambda **kw: ufm.RegressionUFM(**{**dict(
            targets=np.arange(6.0).reshape(3, 2), dim=2, lambda_W=1e-2, lambda_H=1e-2), **kw})),
    }
    scalars = {
        "UFM": ["lambda_W", "lambda_H", "lambda_b"],
        "DeepUFM": ["lambda_W", "lambda_H", "lambda_b"],
        "DeepUFM.extended": ["lambda_W", "lambda_H", "lambda_b"],
        "MultiLabelUFM": ["lambda_W", "lambda_H", "lambda_b"],
        "MultiLabelUFM.balanced": ["lambda_W", "lambda_H", "lambda_b"],
        "SphericalUFM": ["radius_W", "radius_H", "temperature"],
        "RegressionUFM": ["lambda_W", "lambda_H"],
    }
    sizes = {
        "UFM": ["num_classes", "num_per_class", "dim"],
        "DeepUFM": ["num_classes", "num_per_class"],
        "DeepUFM.extended": ["num_classes", "num_per_class", "dim", "dim_hidden"],
        "MultiLabelUFM": ["num_classes", "dim"],
        "MultiLabelUFM.balanced": ["num_classes", "dim"],
        "SphericalUFM": ["num_classes", "num_per_class", "dim"],
        "RegressionUFM": ["dim"],
    }
    for entry, build in entries.items():
        for arg in scalars[entry]:
            for label, value in BAD_SCALARS.items():
                if entry.startswith("DeepUFM") and arg == "lambda_W" and label in ("list", "array"):
                    continue  # one decay per layer: a sequence is valid there (tested below)
                yield entry, arg, label, (lambda b=build, a=arg, v=value: b(**{a: v})), arg
        for arg in sizes[entry]:
            for label, value in BAD_SIZES.items():
                if arg == "num_per_class" and label == "array":
                    continue  # per-class counts: an array of counts is valid
                yield entry, arg, label, (lambda b=build, a=arg, v=value: b(**{a: v})), arg
        if entry != "RegressionUFM":
            for label, value in {"None": None, "str": "ce", "class": CrossEntropy, "int": 1}.items():
                yield entry, "loss", label, (lambda b=build, v=value: b(loss=v)), "loss"
        if entry not in ("RegressionUFM",):
            for label, value in {"str": "yes", "int": 1, "None": None}.items():
                yield entry, "bias", label, (lambda b=build, v=value: b(bias=v)), "bias"
        if entry in ("UFM", "DeepUFM", "SphericalUFM"):
            for label, value in {"huge": 10**30}.items():
                yield entry, "num_per_class", label, (lambda b=build, v=value: b(num_per_class=v)), "GiB"
            for label, value in {"wrong_count": (2, 2), "zero_count": (2, 0, 2), "float_count": (2, 1.5, 2)}.items():
                yield entry, "num_per_class", label, (lambda b=build, v=value: b(num_per_class=v)), "num_per_class"

    # model-specific arguments
    deep = entries["DeepUFM"]
    for label, value in {"empty": (), "zero": (3, 0), "negative": (-1,), "float": (2.5,), "None": None,
                         "str": "33", "bool": (True,)}.items():
        yield "DeepUFM", "widths", label, (lambda v=value: deep(widths=v)), "widths"
    for label, value in {"wrong_length": [1e-2] * 5, "negative_entry": [1e-2, -1e-2, 1e-2],
                         "nan_entry": [1e-2, math.nan, 1e-2], "str_entry": [1e-2, "x", 1e-2]}.items():
        yield "DeepUFM", "lambda_W", label, (lambda v=value: deep(lambda_W=v)), "lambda_W"
    for label, value in {"unknown": "tanh", "None": None, "int": 1}.items():
        yield "DeepUFM", "activation", label, (lambda v=value: deep(activation=v)), "activation"
    ml = entries["MultiLabelUFM"]
    for label, value in {"None": None, "str": "abc", "empty": [], "empty_set": [[0], []],
                         "negative": [[0], [-1]], "too_large": [[0], [3]], "repeat": [[0, 0]],
                         "float": [[0.5]], "bool": [[True]]}.items():
        yield "MultiLabelUFM", "label_sets", label, (lambda v=value: ml(label_sets=v)), "label_sets"
    mlb = entries["MultiLabelUFM.balanced"]
    for label, value in {"None": None, "empty": {}, "size_zero": {0: 1}, "size_too_large": {4: 1},
                         "count_negative": {1: -1}, "count_bool": {1: True}, "list": [1, 2]}.items():
        yield "MultiLabelUFM.balanced", "counts_by_size", label, (lambda v=value: mlb(counts_by_size=v)), "counts_by_size"
    yield ("MultiLabelUFM.balanced", "counts_by_size", "astronomical",
           lambda: mlb(num_classes=200, counts_by_size={100: 1}), "counts_by_size")
    reg = entries["RegressionUFM"]
    for label, value in {"None": None, "str": "abc", "nan": np.full((3, 2), np.nan), "1d": np.ones(3),
                         "empty": np.zeros((0, 2)), "complex": np.ones((3, 2)) * 1j, "list_of_str": [["a"]]}.items():
        yield "RegressionUFM", "targets", label, (lambda v=value: reg(targets=v)), "targets"

    # losses
    for cls, arg in ((LabelSmoothing, "alpha"), (Focal, "gamma")):
        for label, value in BAD_SCALARS.items():
            yield cls.__name__, arg, label, (lambda c=cls, v=value: c(v)), arg
    yield "LabelSmoothing", "alpha", "one", (lambda: LabelSmoothing(1.0)), "alpha"

    # manifolds
    for label, value in {**BAD_SCALARS, "zero": 0.0}.items():
        yield "Oblique", "radius", label, (lambda v=value: ufm.manifolds.Oblique(v)), "radius"
    for label, value in {"None": None, "str": "x", "int": 3}.items():
        yield "Product", "components", label, (lambda v=value: ufm.manifolds.Product(v)), "components"

    # solvers
    S = ufm.solvers
    solver_scalars = {
        S.GradientDescent: ["learning_rate", "momentum"],
        S.Adam: ["learning_rate", "b1", "b2", "eps"],
        S.RiemannianGradientDescent: ["initial_step", "max_step", "shrink", "growth", "sufficient_decrease"],
        S.TrustRegion: ["initial_radius", "max_radius", "accept_ratio", "kappa", "theta", "curvature_tol"],
    }
    for cls, args in solver_scalars.items():
        for arg in args:
            for label, value in BAD_SCALARS.items():
                if label == "None" and cls is S.TrustRegion and arg in ("initial_radius", "max_radius"):
                    continue  # None means "choose from the problem"
                yield cls.__name__, arg, label, (lambda c=cls, a=arg, v=value: c(**{a: v})), arg
    solver_ints = {S.LBFGS: ["memory_size", "max_linesearch_steps"], S.RiemannianGradientDescent: ["max_backtracks"],
                   S.TrustRegion: ["max_inner", "max_rejections"]}
    for cls, args in solver_ints.items():
        for arg in args:
            for label, value in BAD_SIZES.items():
                yield cls.__name__, arg, label, (lambda c=cls, a=arg, v=value: c(**{a: v})), arg
    for cls, arg in ((S.GradientDescent, "nesterov"), (S.GradientDescent, "scale_blocks"), (S.Adam, "scale_blocks")):
        yield cls.__name__, arg, "str", (lambda c=cls, a=arg: c(**{a: "False"})), arg

    # solve
    p = ufm.UFM(3, 2, 4, ce, 1e-2, 1e-2)  # d ≠ K: a transposed W has the wrong shape
    x0 = p.init(jax.random.key(0))
    lbfgs = S.LBFGS()
    solve = (lambda params=x0, **kw: ufm.solve(p, lbfgs, params, **kw))
    for label, params in {"no_bias": x0._replace(b=None), "W_transposed": x0._replace(W=x0.W.T),
                          "int_dtype": x0._replace(H=jnp.zeros(x0.H.shape, int)),
                          "complex_dtype": x0._replace(H=x0.H.astype(jnp.complex128)), "tuple": tuple(x0)[:2],
                   "mixed_dtype": x0._replace(W=x0.W.astype(jnp.float32)),
                          "None": None, "extra_leaf": x0._replace(b=(x0.b, x0.b))}.items():
        yield "solve", "params", label, (lambda v=params: solve(v)), "params"
    for label, value in {**BAD_SIZES, "huge": 10**30}.items():
        yield "solve", "max_steps", label, (lambda v=value: solve(max_steps=v)), "max_steps"
    for label, value in BAD_SCALARS.items():
        yield "solve", "gtol", label, (lambda v=value: solve(gtol=v)), "gtol"
    for arg in ("record_every", "progress_every"):
        for label, value in {"negative": -1, "float": 2.5, "str": "1", "None": None}.items():
            yield "solve", arg, label, (lambda a=arg, v=value: solve(**{a: v})), arg
    yield "solve", "problem", "None", (lambda: ufm.solve(None, lbfgs, x0)), "problem"
    yield "solve", "solver", "None", (lambda: ufm.solve(p, None, x0)), "solver"

    # metrics
    W = np.array([[1.0, 0, 0], [0, 1, 0], [0, 0, 1]])
    H = np.repeat(W, 2, axis=0)
    y = np.repeat(np.arange(3), 2)
    bad_H = {"nan": H * np.nan, "inf": np.where(H > 0, np.inf, 0), "1d": H[:, 0], "None": None,
             "str": "H", "empty": np.zeros((0, 3)), "complex": H * 1j}
    bad_labels = {"minus_one": y - 1, "K": np.where(y == 2, 3, y), "fraction": y + 0.5,
                  "wrong_length": y[:4], "None": None, "2d": y[:, None], "missing_class": np.zeros(6, int)}
    bad_K = {"one": 1, "zero": 0, "None": None, "str": "3", "float": 2.5, "bool": True}
    H_metrics = {"nc1": lambda H=H, y=y, K=3: metrics.nc1(H, y, K),
                 "nc1_trace": lambda H=H, y=y, K=3: metrics.nc1_trace(H, y, K),
                 "class_means": lambda H=H, y=y, K=3: metrics.class_means(H, y, K)}
    WH_metrics = {"nc3_duality": lambda W=W, H=H, y=y: metrics.nc3_duality(W, H, y, "etf"),
                  "nc3_zhu": lambda W=W, H=H, y=y: metrics.nc3_zhu(W, H, y, "etf"),
                  "frame_pair": lambda W=W, H=H, y=y: metrics.frame_pair(W, H, y, "of"),
                  "nc4": lambda W=W, H=H, y=y: metrics.nc4(H, W, None, y),
                  "bias_relation": lambda W=W, H=H, y=y: metrics.bias_relation(W, H, None, y)}
    for name, f in H_metrics.items():
        for label, v in bad_H.items():
            yield name, "H", label, (lambda f=f, v=v: f(H=v)), "H"
        for label, v in bad_labels.items():
            yield name, "labels", label, (lambda f=f, v=v: f(y=v)), "labels"
        for label, v in bad_K.items():
            yield name, "num_classes", label, (lambda f=f, v=v: f(K=v)), "num_classes"
    for name, f in WH_metrics.items():
        for label, v in bad_H.items():
            yield name, "H", label, (lambda f=f, v=v: f(H=v)), "H"
            yield name, "W", label, (lambda f=f, v=v: f(W=v)), "W"
        for label, v in bad_labels.items():
            yield name, "labels", label, (lambda f=f, v=v: f(y=v)), "labels"
    for label, v in {"nan": np.full(3, np.nan), "wrong_length": np.ones(2), "2d": np.ones((3, 1))}.items():
        yield "nc4", "b", label, (lambda v=v: metrics.nc4(H, W, v, y)), "b"
        yield "bias_relation", "b", label, (lambda v=v: metrics.bias_relation(W, H, v, y)), "b"
    bad_G = {"nan": np.full((3, 3), np.nan), "not_square": np.ones((2, 3)), "one_class": np.ones((1, 1)),
             "1d": np.ones(3), "None": None, "str": "G"}
    for name in ("etf_distance", "of_distance"):
        for label, v in bad_G.items():
            yield name, "G", label, (lambda n=name, v=v: getattr(metrics, n)(v)), "G"
    for label, v in bad_G.items():
        yield "frame_distance", "G", label, (lambda v=v: metrics.frame_distance(v, "etf")), "G"
    yield "frame_distance", "geometry", "unknown", (lambda: metrics.frame_distance(np.eye(3), "simplex")), "geometry"
    for name in ("equinorm", "equiangle"):
        f = (lambda V, n=name: metrics.equinorm(V) if n == "equinorm" else metrics.equiangle(V, "etf"))
        for label, v in {"nan": W * np.nan, "one_row": W[:1], "1d": W[0], "None": None}.items():
            yield name, "V", label, (lambda f=f, v=v: f(v)), "V"


CASES = list(_cases())


def _params():
    for entry, arg, label, thunk, fragment in CASES:
        marks = [pytest.mark.xfail(strict=True, reason=KNOWN[(entry, arg, label)])] \
            if (entry, arg, label) in KNOWN else []
        yield pytest.param(thunk, fragment, id=f"{entry}-{arg}-{label}", marks=marks)


@pytest.mark.parametrize("thunk, fragment", list(_params()))
def test_api_bad_input_raises_value_error_naming_the_argument(thunk, fragment):
    with pytest.raises(ValueError) as info:
        thunk()
    message = str(info.value)
    assert fragment in message, message
    assert "\n" not in message.strip(), message


# --- the CLI -----------------------------------------------------------------------------------

_FLAG_NAMES = {"--K": "num_classes", "--n": "num_per_class", "--d": "dim"}


def _cli_cases():
    floats = {"--lambda-W": True, "--lambda-H": True, "--lambda-b": True, "--alpha": True,
              "--gamma": True, "--lr": True, "--gtol": True, "--init-scale": True}
    for flag in floats:
        extra = {"--alpha": ["--loss", "ls"], "--gamma": ["--loss", "fl"],
                 "--lr": ["--solver", "gd"]}.get(flag, [])
        for label, text in {"nan": "nan", "inf": "inf", "-inf": "-inf", "overflow": "1e999",
                            "str": "abc", "empty": "", "negative": "-1", "complex": "1+2j"}.items():
            yield flag, label, ["solve", *extra, flag, text]
    yield "--lr", "zero", ["solve", "--solver", "gd", "--lr", "0"]
    yield "--alpha", "one", ["solve", "--loss", "ls", "--alpha", "1"]
    for flag in ("--K", "--n", "--d", "--max-steps", "--seed", "--progress-every", "--chunk-steps"):
        for label, text in {"overflow": "99999999999999999999", "negative": "-1", "float": "2.5",
                            "str": "x", "empty": "", "nan": "nan"}.items():
            yield flag, label, ["solve", flag, text]
    for flag in ("--K", "--n", "--d", "--max-steps", "--chunk-steps"):
        yield flag, "zero", ["solve", flag, "0"]
    yield "--K", "huge-problem", ["solve", "--K", "2000", "--n", "100000", "--d", "2000"]
    yield "--loss", "unknown", ["solve", "--loss", "hinge"]
    yield "--solver", "unknown", ["solve", "--solver", "newton"]
    yield "--out", "directory", ["solve", "--out", "/tmp"]
    yield "--out", "missing-dir", ["solve", "--out", "/nonexistent-dir/x.npz"]
    yield "--out", "unwritable", ["solve", "--out", "/proc/self/x.npz"]
    yield "--out", "suffix", ["solve", "--out", "x.txt"]
    yield "--out", "empty", ["solve", "--out", ""]
    yield "--out", "verify-unwritable", ["verify", "--out", "/proc/self/r.json"]
    yield "--only", "no-row", ["verify", "--only", "no-such-row"]
    yield "--full", "with-quick", ["verify", "--quick", "--full"]
    yield "flag", "unknown", ["solve", "--bogus"]
    yield "flag", "unknown-verify", ["verify", "--frobnicate"]
    yield "flag", "missing-value", ["solve", "--K"]
    yield "command", "unknown", ["frobnicate"]
    yield "command", "none", []


CLI_CASES = list(_cli_cases())


@pytest.mark.parametrize("flag, argv", [pytest.param(f, a, id=f"{f}-{label}") for f, label, a in CLI_CASES])
def test_cli_bad_flag_one_line_exit_2(flag, argv, capsys):
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err
    assert err.count("\n") == 1 and err.startswith("ufm: error:"), err
    assert "Traceback" not in captured.out + err
    if flag.startswith("--"):
        names = {flag, flag.lstrip("-").replace("-", "_"), _FLAG_NAMES.get(flag, flag), "--out", "GiB"}
        if flag not in ("--out", "--only", "--tier", "--loss", "--solver"):
            names.discard("--out")
        assert any(n in err for n in names if n), err
