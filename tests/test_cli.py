"""`ufm verify` and `ufm solve` end to end; bad arguments give one line and exit 2."""

import json
import os
import subprocess
import sys

import pytest

from ufm import cli


def test_verify_quick_plain_rows_write_json(tmp_path, capsys):
    out = tmp_path / "report.json"
    assert cli.main(["verify", "--quick", "--only", "ufm-", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "PASS" in printed and "FAIL" not in printed
    report = json.loads(out.read_text())
    assert report["ok"] is True and len(report["rows"]) >= 4
    for row in report["rows"]:
        assert {"model", "loss", "config", "checks", "ok"} <= set(row)
        assert row["config"]["model"] == row["model"]
        names = {c["quantity"] for c in row["checks"]}
        assert {"value", "grad_norm"} <= names
        for c in row["checks"]:
            assert {"predicted", "measured", "error", "ok"} <= set(c)
    assert report["metadata"]["x64"] is True


def test_verify_failure_exits_1_and_keeps_previous_report(tmp_path, monkeypatch, capsys):
    from ufm import cases

    out = tmp_path / "report.json"
    out.write_text('{"previous": true}\n')
    good = cases.select("quick", "ufm-ce-")[0]
    # A case whose check always fails: expecting NoClosedForm where a prediction exists.
    import dataclasses
    bad = dataclasses.replace(good, name="forced-failure", expect_no_closed_form=True)
    monkeypatch.setattr(cases, "select", lambda tier, only=None: [bad])
    assert cli.main(["verify", "--out", str(out)]) == 1
    assert "FAIL" in capsys.readouterr().out
    assert json.loads(out.read_text())["ok"] is False  # written, atomically replaced


@pytest.mark.parametrize("argv, fragment", [
    (["verify", "--quick", "--full"], "not allowed"),
    (["verify", "--only", "no-such-row"], "matches no row"),
    (["verify", "--out", "/nonexistent-dir/x.json"], "does not exist"),
    (["verify", "--out", "/proc/self/report.json"], "cannot write"),
    (["solve", "--out", "/proc/self/sol.npz"], "cannot write"),
    (["solve", "--lr", "0", "--solver", "gd"], "--lr: must be > 0"),
    (["solve", "--lr", "-1", "--solver", "adam"], "--lr: must be > 0"),
    (["solve", "--lr", "0.1"], "--lr applies to --solver gd, adam or rgd"),
    (["solve", "--K", "99999999999999999999"], "--K: must be an integer in"),
    (["solve", "--max-steps", "99999999999999999999"], "--max-steps: must be an integer in"),
    (["solve", "--max-steps", "0"], "--max-steps"),
    (["solve", "--seed", "-1"], "--seed"),
    (["solve", "--n", "-3"], "num_per_class"),
    (["solve", "--K", "2000", "--n", "100000", "--d", "2000"], "GiB"),
    (["solve", "--K", "2147483647", "--n", "1", "--d", "1"], "GiB"),  # was 30 s and ~17 GB to say so
    (["solve", "--lambda-H", "nan"], "--lambda-H: must be a finite number"),
    (["solve", "--gtol", "inf"], "--gtol: must be a finite number"),
    (["solve", "--gamma", "-1", "--loss", "fl"], "gamma"),
    (["solve", "--alpha", "1", "--loss", "ls"], "alpha"),
    (["solve", "--K", "2.5"], "--K: must be an integer"),
    (["solve", "--bogus"], "unrecognized arguments"),
    (["solve", "--K", "1"], "num_classes"),
    (["solve", "--lambda-W", "-1"], "lambda_W"),
    (["solve", "--d", "0"], "dim"),
    (["solve", "--loss", "hinge"], "--loss must be one of mse, ce, ls, fl"),
    (["solve", "--init-scale", "0"], "init-scale"),
    (["solve", "--init-scale", "nan"], "init-scale"),
    (["solve", "--out", "x.txt"], ".npz"),
    (["sweep", "--grid", "lambda_W=1e-3", "--out", "s", "--workers", "0"], "--workers: must be an integer in [1,"),
    (["sweep", "--grid", "lambda_W=1e-3", "--out", "s", "--workers", "x"], "--workers: must be an integer"),
    (["bench", "--rounds", "0"], "--rounds: must be an integer in [1,"),
    (["bench", "--sweep-points", "2"], "--sweep-points: must be an integer in [4,"),
    (["bench", "--sections", "speed"], "invalid choice"),
    (["bench", "--out", ""], "--out must be a directory name"),
    (["frobnicate"], "invalid choice"),
    ([], "command is required"),
])
def test_bad_arguments_one_line_exit_2(argv, fragment, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ufm: error:") and fragment in err


def test_bad_out_does_not_touch_existing_file(tmp_path):
    target = tmp_path / "keep.json"
    target.write_text("precious\n")
    assert cli.main(["verify", "--only", "no-such-row", "--out", str(target)]) == 2
    assert target.read_text() == "precious\n"


def test_out_directories_that_cannot_be_created_are_exit_2(tmp_path, capsys):
    """ufm reproduce OUT below a file was an internal error (NotADirectoryError, exit 4)."""
    afile = tmp_path / "f"
    afile.write_text("x")
    for argv in (["reproduce", str(afile / "sub"), "--only", "mse"],
                 ["sweep", "--grid", "lambda_W=1", "--out", str(afile / "sub")]):
        assert cli.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("ufm: error:") and "Not a directory" in err, err


def test_solve_prints_comparison_and_saves(tmp_path, capsys):
    out = tmp_path / "sol.npz"
    code = cli.main(["solve", "--loss", "mse", "--K", "3", "--n", "2", "--d", "3", "--lambda-W", "0.01",
                     "--lambda-H", "0.01", "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0 and "converged" in printed and "PASS" in printed
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["config"]["num_classes"] == 3 and meta["status"] == "converged"


def test_solve_without_closed_form(capsys):
    assert cli.main(["solve", "--K", "6", "--n", "2", "--d", "3"]) == 0
    assert "no closed form" in capsys.readouterr().out


def test_entry_point_subprocess():
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-m", "ufm.cli", "verify", "--list"], capture_output=True,
                          text=True, env=env, timeout=120)
    assert proc.returncode == 0 and "ufm-ce-K4-n5-d3-collapse" in proc.stdout
    bad = subprocess.run([sys.executable, "-m", "ufm.cli", "solve", "--K", "x"], capture_output=True,
                         text=True, env=env, timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0


def test_every_row_config_is_complete_json():
    """Each row of every tier builds, names its model, and serialises (no solve: cheap)."""
    from ufm.cases import all_cases

    cases = all_cases()
    assert {c.model for c in cases} == {"ufm", "deep_ufm", "multilabel_ufm", "spherical", "regression"}
    for case in cases:
        config = case.build().config()
        assert config["model"] == case.model
        json.dumps(config)


def test_solve_float32_is_judged_at_float32_precision():
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "UFM_NO_CACHE": "1"}
    proc = subprocess.run([sys.executable, "-m", "ufm", "solve", "--float32", "--loss", "ce", "--K", "4",
                           "--n", "5", "--d", "4"], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "FAIL" not in proc.stdout and "parameters below float64" in proc.stdout


def test_version(capsys):
    from ufm import __version__

    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"ufm {__version__}"


def test_non_finite_solve_has_its_own_exit_code(tmp_path, capsys):
    out = tmp_path / "diverged.npz"
    code = cli.main(["solve", "--solver", "gd", "--lr", "100", "--K", "3", "--n", "2", "--d", "3",
                     "--max-steps", "2000", "--out", str(out)])
    printed = capsys.readouterr()
    assert code == cli.EXIT_NONFINITE == 3
    assert "status nonfinite" in printed.out and "Eigenvalues" not in printed.out + printed.err
    assert json.loads(out.with_suffix(".json").read_text())["status"] == "nonfinite"


def test_lr_is_respected(tmp_path):
    """--lr reaches the solver (not replaced by a default): the record holds it."""
    out = tmp_path / "s.npz"
    assert cli.main(["solve", "--solver", "gd", "--lr", "0.037", "--loss", "mse", "--K", "3", "--n", "2",
                     "--d", "3", "--lambda-W", "0.01", "--lambda-H", "0.01", "--max-steps", "10",
                     "--out", str(out)]) in (0, 1)
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["solver"] == {"name": "GradientDescent", "settings": record["solver"]["settings"]}
    assert record["solver"]["settings"]["learning_rate"] == 0.037
    assert record["max_steps"] == 10 and record["num_steps"] == 10 and record["init_scale"] == 0.5


@pytest.mark.parametrize("solver_name", ["lbfgs", "adam"])  # both carry state across chunks
def test_chunked_solve_equals_one_call(solver_name):
    import jax
    import numpy as np

    import ufm

    p = ufm.UFM(3, 2, 3, ufm.losses.CrossEntropy(), 5e-3, 5e-3)
    solver = {"lbfgs": ufm.solvers.LBFGS(), "gd": ufm.solvers.GradientDescent(0.1, momentum=0.9),
              "adam": ufm.solvers.Adam(1e-2)}[solver_name]
    x0 = p.init(jax.random.key(0), 0.5)
    one = ufm.solve(p, solver, x0, max_steps=50, gtol=1e-12)
    chunked, steps = cli.solve_in_chunks(p, solver, x0, max_steps=50, gtol=1e-12, chunk_steps=25)  # one size: one compile
    assert steps == int(one.num_steps) and chunked.status_name == one.status_name
    for a, b in zip(jax.tree.leaves(chunked.params), jax.tree.leaves(one.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # the same iterates, exactly
    assert float(chunked.value) == float(one.value)


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("JAX_COMPILATION_CACHE_DIR", "XDG_CACHE_HOME")}
    return {**env, "JAX_PLATFORMS": "cpu", **extra}


def test_ctrl_c_stops_a_long_solve_within_about_a_second(tmp_path):
    import signal
    import time

    proc = subprocess.Popen([sys.executable, "-m", "ufm", "solve", "--solver", "gd", "--lr", "1e-6",
                             "--gtol", "0", "--max-steps", "2000000000", "--progress-every", "2000",
                             "--K", "3", "--n", "2", "--d", "3"],
                            stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env=_env(UFM_NO_CACHE="1"))
    try:
        line = proc.stderr.readline()  # the first progress line: the solve is running
        assert "step" in line, line
        time.sleep(0.5)
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
        elapsed = time.monotonic() - sent
    finally:
        proc.kill()
    rest = proc.stderr.read()
    assert code == 130 and "ufm: interrupted" in rest and "Traceback" not in rest
    assert elapsed < 2.0, elapsed


def test_broken_pipe_is_quiet():
    proc = subprocess.Popen([sys.executable, "-m", "ufm", "verify", "--list", "--full"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(UFM_NO_CACHE="1"))
    proc.stdout.close()  # the reader is gone before anything is printed (like `| head -0`)
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == cli.EXIT_PIPE and err == ""


def test_in_process_main_restores_jax_configuration(tmp_path, monkeypatch):
    import jax

    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("UFM_NO_CACHE", raising=False)
    names = cli._JAX_OPTIONS
    before = {n: getattr(jax.config, n) for n in names}
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 7.0)
    try:
        mine = {n: getattr(jax.config, n) for n in names}
        assert cli.main(["solve", "--float32", "--loss", "mse", "--K", "2", "--n", "1", "--d", "2",
                         "--max-steps", "5"]) in (0, 1)
        assert {n: getattr(jax.config, n) for n in names} == mine
        assert (tmp_path / "cache").is_dir()  # the cache was used inside main
    finally:
        jax.config.update("jax_persistent_cache_min_compile_time_secs",
                          before["jax_persistent_cache_min_compile_time_secs"])


@pytest.mark.parametrize("home", ["", None, "relative/dir"])
def test_no_cache_without_a_valid_home(home, monkeypatch):
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    monkeypatch.delenv("UFM_NO_CACHE", raising=False)
    if home is None:
        monkeypatch.delenv("HOME", raising=False)
    else:
        monkeypatch.setenv("HOME", home)
    assert cli._cache_dir() is None


def test_cache_dir_choices(tmp_path, monkeypatch):
    monkeypatch.delenv("UFM_NO_CACHE", raising=False)
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cli._cache_dir() == str(tmp_path / "ufm" / "jax" / cli._code_version())  # one per code version
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "explicit"))
    assert cli._cache_dir() == str(tmp_path / "explicit")
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "missing" / "explicit"))
    assert cli._cache_dir() is None  # never a chain of new directories
    monkeypatch.setenv("UFM_NO_CACHE", "1")
    assert cli._cache_dir() is None


@pytest.mark.parametrize("env, argv", [
    (dict(HOME=""), ["verify", "--list"]),  # where the cache directory would be made
    (dict(JAX_COMPILATION_CACHE_DIR="/proc/ufm-cache"),  # JAX reads this itself when compiling
     ["solve", "--loss", "mse", "--K", "2", "--n", "1", "--d", "2", "--max-steps", "50"]),
])
def test_unusable_cache_home_is_silent_and_creates_nothing(env, argv, tmp_path):
    extra = {"UFM_NO_CACHE": "0", **env}
    proc = subprocess.run([sys.executable, "-m", "ufm", *argv], capture_output=True, text=True,
                          env=_env(**extra), cwd=tmp_path, timeout=300)
    assert proc.returncode in (0, 1) and proc.stderr == "", proc.stderr
    assert not os.path.exists("/.cache/ufm") and list(tmp_path.iterdir()) == []


def test_python_compilation_cache_is_one_call(tmp_path):
    """ufm.enable_compilation_cache: a directory, the CLI's default, or off; bad arguments refused."""
    import jax

    import ufm

    before = jax.config.jax_compilation_cache_dir
    try:
        target = tmp_path / "cache"
        assert ufm.enable_compilation_cache(str(target)) == str(target) == jax.config.jax_compilation_cache_dir
        jax.jit(lambda x: x * 2.0 + 1.0).lower(1.0).compile()
        assert ufm.enable_compilation_cache(False) is None and jax.config.jax_compilation_cache_dir is None
        assert ufm.enable_compilation_cache(str(tmp_path / "missing" / "deeper")) is not None  # parents made
        with pytest.raises(ValueError, match="min_compile_time"):
            ufm.enable_compilation_cache(str(target), min_compile_time=-1)
        with pytest.raises(TypeError, match="path"):
            ufm.enable_compilation_cache(3)
    finally:
        ufm.enable_compilation_cache(False)
        jax.config.update("jax_compilation_cache_dir", before)


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity on this platform")
def test_bench_threads_section_pins_its_children_to_one_core():
    """The threads section's 'one core' children see one core (as under taskset -c 0), its 'all
    cores' children every core, and the benchmark's own process gets its cores back."""
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import bench

    before = os.sched_getaffinity(0)
    count = [sys.executable, "-c", "import os; print(len(os.sched_getaffinity(0)))"]
    with bench._cores(True):
        pinned = subprocess.run(count, capture_output=True, text=True, check=True).stdout.strip()
    with bench._cores(False):
        unpinned = subprocess.run(count, capture_output=True, text=True, check=True).stdout.strip()
    assert pinned == "1" and unpinned == str(len(before))
    assert os.sched_getaffinity(0) == before


def test_bench_quick_steps_writes_its_results_file(tmp_path):
    """``ufm bench`` runs the checkout's benchmarks/bench.py in its own process and writes the
    results file (machine, versions, the steps table) where --out says."""
    proc = subprocess.run([sys.executable, "-m", "ufm", "bench", "--quick", "--sections", "steps",
                           "--no-torch", "--rounds", "1", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300, env=_env(UFM_NO_CACHE="1"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    (md,) = tmp_path.glob("cpu-*-quick.md")
    text = md.read_text()
    assert "Machine:" in text and "jax " in text and "| 10, 100, 64, ce |" in text
    record = json.loads(md.with_suffix(".json").read_text())
    assert {"machine", "steps", "peak_gemm_gflops"} <= set(record)
    for row in record["steps"]:
        assert row["seconds_per_step"]["ufm"] > 0 and row["seconds_per_step"]["bare_scan"] > 0
        assert row["ufm_over_bare"] > 0 and row["torch_over_ufm"] is None  # --no-torch


def test_bench_refuses_an_out_that_is_a_file(tmp_path, capsys):
    path = tmp_path / "results"
    path.write_text("keep me")
    assert cli.main(["bench", "--out", str(path)]) == 2
    assert "exists and is not a directory" in capsys.readouterr().err
    assert path.read_text() == "keep me"
