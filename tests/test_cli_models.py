"""`ufm solve --model ...` for every model and `ufm sweep`: each model solves to its closed form from
the command line, options of other models are refused by name, and a sweep writes its table and
figure (or, on bad input, nothing)."""

import csv
import json

import numpy as np
import pytest

import ufm
from ufm import cli


@pytest.mark.parametrize("argv", [
    ["--model", "multilabel", "--K", "3", "--counts-by-size", "1:2,2:1", "--d", "3"],
    ["--model", "regression", "--N", "12", "--spectrum", "3,1", "--d", "2"],
    pytest.param(["--model", "spherical", "--K", "3", "--n", "2", "--d", "2", "--temperature", "0.5"],
                 marks=pytest.mark.slow),
    pytest.param(["--model", "deep", "--K", "3", "--n", "2", "--widths", "3,3"], marks=pytest.mark.slow),
    pytest.param(["--model", "extended", "--K", "3", "--n", "2", "--d", "4", "--dim-hidden", "4"],
                 marks=pytest.mark.slow),
    pytest.param(["--model", "ufm", "--K", "3", "--n", "4,2,1", "--d", "3", "--loss", "mse", "--no-bias"],
                 marks=pytest.mark.slow),
], ids=["multilabel", "regression", "spherical", "deep", "extended", "ufm-imbalanced"])
def test_every_model_solves_to_its_closed_form(argv, tmp_path, capsys):
    out = tmp_path / "sol.npz"
    assert cli.main(["solve", *argv, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "converged" in printed and "PASS" in printed and "FAIL" not in printed
    problem, params, record = ufm.io.load_solution(out)
    # the saved point has the closed-form value (independently of the printed report)
    assert abs(float(problem.value(params)) - ufm.theory.predict(problem).value) <= 1e-9 * abs(
        ufm.theory.predict(problem).value)


@pytest.mark.slow
def test_no_closed_form_exits_0_with_the_certified_value(capsys):
    assert cli.main(["solve", "--model", "deep", "--loss", "ce", "--K", "3", "--n", "1",
                     "--widths", "2,2", "--restarts", "1"]) == 0
    printed = capsys.readouterr().out
    assert "no closed form" in printed and "DNC candidate (an upper bound)" in printed


def test_config_round_trip(tmp_path, capsys):
    p = ufm.MultiLabelUFM.balanced(3, {1: 2, 2: 1}, 3, ufm.losses.PickAllLabel(), 5e-3, 5e-3)
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps({"config": p.config()}))
    assert cli.main(["solve", "--config", str(path)]) == 0
    assert "PASS" in capsys.readouterr().out


@pytest.mark.parametrize("argv, fragment", [
    (["--model", "spherical", "--lambda-W", "1"], "--lambda-W does not apply to --model spherical"),
    (["--model", "ufm", "--temperature", "2"], "--temperature does not apply to --model ufm"),
    (["--model", "regression", "--K", "3"], "--K does not apply to --model regression"),
    (["--model", "deep", "--widths", "3,x"], "--widths: must be a comma-separated list of integers"),
    (["--model", "deep", "--widths", "3,0"], "widths"),
    (["--model", "deep", "--lambda-W", "0.1,0.1,0.1", "--widths", "3,3"], "lambda_W"),
    (["--model", "multilabel", "--counts-by-size", "1:4,1:2"], "label-set size 1 is given twice"),
    (["--model", "multilabel", "--counts-by-size", "14"], "SIZE:COUNT"),
    (["--model", "multilabel", "--loss", "ce"], "--loss must be one of pal, pal_normalised"),
    (["--model", "regression", "--spectrum", "1,2", "--targets", "x.npy"], "alternatives"),
    (["--model", "regression", "--targets", "/no/such/file.npy"], "No such file"),
    (["--model", "regression", "--spectrum", "1,-2"], "spectrum"),
    (["--model", "regression", "--N", "2", "--spectrum", "1,2"], "num_samples"),
    (["--model", "spherical", "--solver", "lbfgs"], "Euclidean only"),
    (["--model", "spherical", "--temperature", "0"], "temperature"),
    (["--model", "ufm", "--solver", "rgd"], "--solver rgd is for --model spherical"),
    (["--model", "ufm", "--n", "3,2"], "num_per_class"),
    (["--model", "ufm", "--loss", "ce", "--alpha", "0.2"], "--alpha applies to --loss ls"),
    (["--model", "extended", "--no-bias"], "--no-bias does not apply"),
    (["--config", "/no/such.json"], "No such file"),
    (["--config", "/dev/null"], "not JSON"),
    (["--config", ""], "--config must be a file name, got ''"),
    (["--config", "", "--max-steps", "5"], "--config must be a file name"),
    (["--model", "deep", "--init-scale", "1"], "--init-scale does not apply to deep models"),
    (["--model", "deep", "--restarts", "0"], "--restarts must be an integer >= 1, got 0"),
    (["--model", "extended", "--restarts", "-1"], "--restarts must be an integer >= 1, got -1"),
    (["--model", "ufm", "--lambda-W", "0.1,0.2"], "--lambda-W takes one value for --model ufm"),
    (["--model", "regression", "--lambda-W", "0.1,0.2"], "--lambda-W takes one value"),
])
def test_bad_model_options_one_line_exit_2(argv, fragment, capsys):
    assert cli.main(["solve", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ufm: error:") and fragment in err


def test_config_with_model_options_is_refused(tmp_path, capsys):
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps(ufm.UFM(3, 2, 3, ufm.losses.MSE(), 0.1, 0.1).config()))
    assert cli.main(["solve", "--config", str(path), "--K", "4"]) == 2
    assert "--config describes the whole problem" in capsys.readouterr().err


def test_sweep_writes_table_and_figure(tmp_path, capsys):
    out = tmp_path / "sweep"
    code = cli.main(["sweep", "--loss", "mse", "--no-bias", "--K", "3", "--n", "2", "--d", "3",
                     "--lambda-H", "0.1", "--grid", "lambda_W=0.01,3", "--seeds", "2", "--out", str(out),
                     "--no-progress"])
    assert code == 0
    table = json.loads((out / "sweep.json").read_text())
    assert table["solves"] == 4 and table["failed"] == 0
    rows = list(csv.DictReader((out / "sweep.csv").open()))
    assert len(rows) == 4 and {r["lambda_W"] for r in rows} == {"0.01", "3.0"}
    # bias-free MSE (docs/theory/mse.md): W = H = 0 is optimal once λ_W λ_H ≥ 1/(K²n)... written out
    K, n, lam_H = 3, 2, 0.1
    for r in table["rows"]:
        lam_W = r["lambda_W"]
        collapsed = np.sqrt(K * n * lam_W * lam_H) < 1 / np.sqrt(K)  # √(Nλ_Wλ_H) < 1/√K
        assert (r["predicted"] < 0.5) == collapsed and r["ok"]
    assert (out / "phase.png").stat().st_size > 0 and (out / "phase.pdf").stat().st_size > 0


def test_sweep_on_threads_is_the_sweep_one_after_another(tmp_path, capsys):
    """Grid points solved on threads (the default) give the table of --workers 1, row for row and
    bit for bit, in grid order: a shape axis (K) makes the threads compile programs concurrently."""
    common = ["sweep", "--loss", "ce", "--n", "3", "--d", "4", "--grid", "K=2,3,4",
              "--grid", "lambda_W=1e-3,2e-2", "--seeds", "2", "--no-progress"]
    tables = {}
    for workers in ("1", "4"):
        out = tmp_path / f"w{workers}"
        assert cli.main([*common, "--workers", workers, "--out", str(out)]) == 0
        tables[workers] = json.loads((out / "sweep.json").read_text())["rows"]
    capsys.readouterr()
    keep = ("K", "lambda_W", "seed", "value", "grad_norm", "status", "steps", "predicted", "ok", "errors")
    assert [{k: r[k] for k in keep} for r in tables["4"]] == [{k: r[k] for k in keep} for r in tables["1"]]
    assert [(r["K"], r["lambda_W"], r["seed"]) for r in tables["4"]] == [
        (K, lam, seed) for K in (2, 3, 4) for lam in (1e-3, 2e-2) for seed in (0, 1)]
    assert all(r["ok"] for r in tables["4"])


@pytest.mark.parametrize("grid, fragment", [
    (["--grid", "lambda_W=-1,0.1"], "grid point {'lambda_W': -1.0}"),
    (["--grid", "temperature=1,2"], "not a numeric option of --model ufm"),
    (["--grid", "lambda_W=1e-3:1:3:lin"], "must be 'log'"),
    (["--grid", "lambda_W=0:1:3:log"], "log axis needs start > 0"),
    (["--grid", "lambda_W"], "NAME=VALUES"),
    (["--grid", "lambda_W=1", "--grid", "lambda-W=2"], "names an option twice"),
    (["--grid", "lambda_W=1", "--lambda-W", "2"], "also a --grid axis"),
    ([], "at least one --grid"),
    (["--config", "", "--grid", "lambda_W=1"], "not --config"),
    (["--grid", "K=99999999999999"], "must be an integer in [-2147483647, 2147483647]"),
    (["--grid", "K=2:1e15:3"], "an integer option must lie in"),
    (["--grid", "lambda_W=0.1:inf:3"], "must be a finite number, got 'inf'"),
    (["--grid", "lambda_W=-1e308:1e308:3"], "values must be finite"),
    (["--model", "deep", "--grid", "restarts=0,2"], "--restarts must be an integer >= 1, got 0"),
])
@pytest.mark.filterwarnings("error")  # a NumPy warning printed on stderr is a second line
def test_sweep_bad_grid_writes_nothing(grid, fragment, tmp_path, capsys):
    out = tmp_path / "sweep"
    assert cli.main(["sweep", "--out", str(out), *grid]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and fragment in err
    assert not out.exists()


def test_files_of_the_wrong_kind_are_one_line_exit_2(tmp_path, capsys):
    """A .npy, a JSON text or a truncated archive as --solution, a binary file or a sweep summary as
    a config: one clear line, exit 2 (they were exit 4, numpy's 'pickled data' and 'utf-8 codec'
    messages, or 'config of model ufm lacks [...]' for a sweep.json)."""
    npy, text, npz = tmp_path / "a.npy", tmp_path / "c.json", tmp_path / "s.npz"
    np.save(npy, np.ones((4, 2)))
    text.write_text(json.dumps(ufm.UFM(3, 2, 3, ufm.losses.MSE(), 0.1, 0.1).config()))
    np.savez(npz, a=np.ones(2))
    (tmp_path / "cut.npz").write_bytes(npz.read_bytes()[:60])
    table = tmp_path / "sweep.json"  # a sweep summary: a top-level 'model' but one config per row
    table.write_text(json.dumps(dict(model="ufm", axes=["lambda_W"], rows=[dict(config=json.loads(text.read_text()))])))
    for argv, fragment in [
            (["landscape", "--solution", str(npy)], "a single .npy array"),
            (["landscape", "--solution", str(text)], "not an .npz archive"),
            (["landscape", "--solution", str(tmp_path / "cut.npz")], "cannot read"),
            (["landscape", str(npz)], "is not JSON (a binary file"),
            (["solve", "--config", str(npz)], "is not JSON (a binary file"),
            (["solve", "--config", str(table)], "a table of many problems")]:
        assert cli.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("ufm: error:") and fragment in err, err


def test_landscape_bad_input_is_refused_before_out_is_created(tmp_path, capsys):
    """An --out below a file was exit 4 (NotADirectoryError); the --out directory was created before
    the problem was checked; --restarts (never used by landscape) and a negative --seed were taken."""
    afile = tmp_path / "f"
    afile.write_text("x")
    out = tmp_path / "land"
    for argv, fragment in [(["--out", str(afile / "sub")], "--out"),
                           (["--out", str(out), "--K", "1"], "num_classes"),
                           (["--out", str(out), "--model", "deep", "--restarts", "3"],
                            "--restarts does not apply to ufm landscape"),
                           (["--out", str(out), "--seed", "-1"], "--seed must be an integer >= 0")]:
        assert cli.main(["landscape", *argv]) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("ufm: error:") and fragment in err, err
    assert not out.exists()


def test_deep_starts_depend_on_the_seed(monkeypatch):
    """--seed (and each seed of ufm sweep --seeds) picks the deep restarts: it was ignored, so
    every seed of a deep sweep repeated the same solves. Seed 0 keeps its starts (keys 0..restarts-1)."""
    import collections

    import jax

    from ufm import cli_models, solvers

    starts = collections.defaultdict(list)
    fake = collections.namedtuple("fake", "status value")
    seed = 0

    def solve(problem, solver, params, **kw):
        starts[seed].append(params)
        return fake(int(solvers.Status.CONVERGED), 1.0)

    monkeypatch.setattr(solvers, "solve", solve)
    monkeypatch.setattr(jax.random, "key", lambda k: ("key", k))  # no JAX work: record the starts
    monkeypatch.setattr(ufm.DeepUFM, "init", lambda self, key, scale=0.5: (key, scale))
    p = ufm.DeepUFM(3, 2, (3, 3), ufm.losses.MSE(), 1e-2, 1e-2)
    for seed in (0, 1):
        cli_models._deep_best(p, None, restarts=2, gtol=1e-9, max_steps=1, scales=(0.5, 1.0), seed=seed)
    assert starts[0] == [(("key", k), s) for s in (0.5, 1.0) for k in (0, 1)]
    assert starts[1] == [(("key", k), s) for s in (0.5, 1.0) for k in (2, 3)]


def test_unreadable_targets_are_one_line_exit_2(tmp_path, capsys):
    """An empty .csv printed loadtxt's UserWarning (three lines on stderr); an .npz archive or a
    truncated one under a .npy name was an internal error (exit 4)."""
    (tmp_path / "empty.csv").write_text("")
    np.savez(tmp_path / "arch.npz", a=np.ones((5, 2)))
    (tmp_path / "arch.npy").write_bytes((tmp_path / "arch.npz").read_bytes())
    (tmp_path / "cut.npy").write_bytes((tmp_path / "arch.npz").read_bytes()[:60])
    for name, fragment in [("empty.csv", "input contained no data"), ("arch.npy", "an .npz archive"),
                           ("cut.npy", "could not be read as a numeric array")]:
        assert cli.main(["solve", "--model", "regression", "--targets", str(tmp_path / name)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("ufm: error:") and fragment in err, err


def test_sweep_without_a_figure_removes_a_previous_one(tmp_path):
    """Three axes draw no phase diagram: the phase.png / .pdf of an earlier sweep into the same
    --out stayed beside the new table, as if it were this sweep's."""
    import argparse

    from ufm import sweep_cli

    for suffix in (".png", ".pdf"):
        (tmp_path / f"phase{suffix}").write_bytes(b"old figure")
    axes = [(name, [0.1], False) for name in ("lambda_W", "lambda_H", "lambda_b")]
    assert sweep_cli._phase_figure(argparse.Namespace(out=str(tmp_path)), "ufm", axes, []) is None
    assert not (tmp_path / "phase.png").exists() and not (tmp_path / "phase.pdf").exists()


def test_config_with_an_absurd_size_is_refused_by_the_memory_guard(tmp_path, capsys):
    """num_classes = 10**30 in a config was an internal OverflowError (exit 4): a K-tuple of
    counts was built before the memory guard could refuse it."""
    cfg = ufm.UFM(3, 2, 3, ufm.losses.MSE(), 0.1, 0.1).config()
    path = tmp_path / "big.json"
    path.write_text(json.dumps(dict(cfg, num_classes=10**30)))
    assert cli.main(["solve", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "GiB" in err
