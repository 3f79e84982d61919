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
    (["solve", "--K", "1"], "num_classes"),
    (["solve", "--lambda-W", "-1"], "lambda_W"),
    (["solve", "--d", "0"], "dim"),
    (["solve", "--loss", "hinge"], "invalid choice"),
    (["solve", "--init-scale", "0"], "init-scale"),
    (["solve", "--out", "x.txt"], ".npz"),
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
    assert "FAIL" not in proc.stdout and "1e-04" in proc.stdout
