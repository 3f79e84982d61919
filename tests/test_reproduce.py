"""ufm.reproduce and `ufm reproduce`: every script in its own process, failures reported, an index.

Fake experiment scripts (plain Python, no ufm import) keep this fast; the real scripts' --quick
runs are tested in tests/test_experiments_b.py and the other experiment tests.
"""

import json

import pytest

from ufm import cli, reproduce

GOOD = """
import argparse, pathlib
ap = argparse.ArgumentParser(); ap.add_argument("--out"); ap.add_argument("--quick", action="store_true")
a = ap.parse_args()
out = pathlib.Path(a.out)
(out / "{name}.png").write_bytes(b"png")
(out / "{name}.pdf").write_bytes(b"pdf")
(out / "{name}.json").write_text('{{"quick": %s}}' % str(a.quick).lower())
print("done {name}")
"""
BAD = "import sys\nprint('about to fail')\nsys.exit('boom: the claim does not hold')\n"


def _fake(tmp_path, good=("loss_family", "deep_threshold"), bad=("mse",)):
    d = tmp_path / "experiments"
    d.mkdir()
    for name in good:
        (d / f"{name}.py").write_text(GOOD.format(name=name))
    for name in bad:
        (d / f"{name}.py").write_text(BAD)
    return d


def test_a_failing_script_is_reported_and_the_others_still_run(tmp_path):
    exp = _fake(tmp_path)
    out = tmp_path / "out"
    lines = []
    record = reproduce.run(out, quick=True, only=["mse", "loss_family", "deep_threshold", "multilabel"],
                           progress=lines.append, experiments_dir=exp)
    rows = {r["name"]: r for r in record["experiments"]}
    assert [r["name"] for r in record["experiments"]] == ["mse", "loss_family", "deep_threshold",
                                                          "multilabel"]
    assert rows["mse"]["status"] == "failed" and rows["mse"]["returncode"] == 1
    assert "boom" in rows["mse"]["log_tail"]
    for name in ("loss_family", "deep_threshold"):  # after the failure, still run
        r = rows[name]
        assert r["status"] == "ok" and r["returncode"] == 0 and r["seconds"] > 0
        assert r["figures"] == [f"{name}.png"] and r["pdfs"] == [f"{name}.pdf"]
        assert json.loads((out / name / f"{name}.json").read_text()) == {"quick": True}  # --quick passed
        assert f"done {name}" in (out / name / "log.txt").read_text()
    assert rows["multilabel"]["status"] == "missing" and "skipped" in rows["multilabel"]["note"]
    assert record["ok"] is False and record["counts"] == {"ok": 2, "failed": 1, "missing": 1}
    assert json.loads((out / "reproduce.json").read_text())["counts"] == record["counts"]
    index = (out / "README.md").read_text()
    assert "[loss_family.png](loss_family/loss_family.png)" in index
    assert "Zhou et al., NeurIPS 2022" in index and "`python experiments/mse.py --out OUT/mse --quick`" in index
    assert len(lines) == 2 * 3 + 1 + 1  # start and end of each run, one skip, the summary
    assert "quick_note" not in rows["loss_family"]
    assert not list(out.glob(".*.tmp"))


def test_all_succeed_and_comma_separated_only(tmp_path):
    exp = _fake(tmp_path, bad=())
    record = reproduce.run(tmp_path / "out", only="loss_family,deep_threshold", progress=None,
                           experiments_dir=exp)
    assert record["ok"] is True and record["counts"] == {"ok": 2, "failed": 0, "missing": 0}
    assert json.loads((tmp_path / "out" / "loss_family" / "loss_family.json").read_text()) == {"quick": False}


def test_timeout_kills_a_hanging_script(tmp_path):
    exp = tmp_path / "experiments"
    exp.mkdir()
    (exp / "mse.py").write_text("import time\ntime.sleep(30)\n")
    record = reproduce.run(tmp_path / "out", only="mse", progress=None, experiments_dir=exp,
                           timeout_s=0.5)
    row = record["experiments"][0]
    assert row["status"] == "failed" and row["returncode"] is None and "limit" in row["note"]


def test_registry_names_every_claim_family():
    names = {e.name for e in reproduce.EXPERIMENTS}
    assert {"mse", "deep_threshold", "loss_family", "spherical_solvers", "multilabel", "regression",
            "imbalanced", "landscape", "mlp_collapse", "deep_rfm", "deep_nrc"} <= names
    for e in reproduce.EXPERIMENTS:
        assert e.claim and e.paper and e.figures and all(f.endswith(".png") for f in e.figures)
    # Every registered script that exists in the checkout takes --out and --quick.
    for e in reproduce.EXPERIMENTS:
        path = reproduce.default_experiments_dir() / e.script
        if path.exists():
            text = path.read_text()
            assert '"--out"' in text and (('"--quick"' in text) == e.has_quick), e.name


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(only="nope"), ValueError, "unknown experiment 'nope'"),
    (dict(only=[]), ValueError, "at least one"),
    (dict(only=3), TypeError, "only must be"),
    (dict(quick="yes"), TypeError, "quick"),
    (dict(progress=3), TypeError, "progress"),
    (dict(timeout_s=0), ValueError, "timeout_s"),
])
def test_bad_arguments(tmp_path, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        reproduce.run(tmp_path / "out", experiments_dir=_fake(tmp_path), **kwargs)
    assert not (tmp_path / "out").exists()  # refused before anything is written


def test_bad_paths(tmp_path):
    exp = _fake(tmp_path)
    with pytest.raises(ValueError, match="needs a source checkout"):
        reproduce.run(tmp_path / "out", experiments_dir=tmp_path / "absent")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="not a directory"):
        reproduce.run(tmp_path / "file", experiments_dir=exp)
    with pytest.raises(ValueError, match="directory name"):
        reproduce.run("", experiments_dir=exp)
    with pytest.raises(TypeError, match="out_dir"):
        reproduce.run(3, experiments_dir=exp)


@pytest.mark.parametrize("argv, match", [
    (["reproduce"], "OUT"),
    (["reproduce", "OUTDIR", "--only", "nope"], "unknown experiment"),
    (["reproduce", "OUTDIR", "--bogus"], "unrecognized"),
])
def test_cli_bad_input_exits_2_with_one_line(tmp_path, capsys, argv, match):
    argv = [str(tmp_path / a) if a == "OUTDIR" else a for a in argv]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("ufm: error:") and match in err and err.count("\n") == 1
    assert not (tmp_path / "OUTDIR").exists()


def test_cli_exit_status_follows_the_scripts(tmp_path, monkeypatch, capsys):
    exp = _fake(tmp_path)
    real = reproduce.run
    monkeypatch.setattr(reproduce, "run", lambda *a, **k: real(*a, experiments_dir=exp, **k))
    assert cli.main(["reproduce", str(tmp_path / "a"), "--only", "loss_family", "--quick"]) == 0
    assert cli.main(["reproduce", str(tmp_path / "b"), "--only", "mse,loss_family"]) == 1
    out = capsys.readouterr().out
    assert "mse: failed" in out and "loss_family: ok" in out


def test_wheel_install_without_experiments_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(reproduce, "default_experiments_dir", lambda: tmp_path / "site-packages" / "experiments")
    with pytest.raises(ValueError, match="ufm reproduce needs a source checkout"):
        reproduce.run(tmp_path / "out")
