"""Atomic writes: an interrupted write leaves the previous file intact."""

import json

import jax
import numpy as np
import pytest

import ufm
from ufm import io


def test_save_json_roundtrip_with_metadata(tmp_path):
    path = io.save_json(tmp_path / "r.json", {"x": np.array([1.0, 2.0]), "ok": True, "bad": float("nan")})
    data = io.load_json(path)
    assert data["x"] == [1.0, 2.0] and data["bad"] is None
    assert {"ufm", "jax", "git", "time"} <= set(data["metadata"])


def test_interrupted_write_keeps_previous(tmp_path, monkeypatch):
    path = tmp_path / "r.json"
    io.save_json(path, {"version": 1})

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(io.os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        io.save_json(path, {"version": 2})
    assert json.loads(path.read_text())["version"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temporary left behind


def test_unserialisable_data_leaves_file_untouched(tmp_path):
    path = tmp_path / "r.json"
    io.save_json(path, {"version": 1})
    with pytest.raises(TypeError):
        io.save_json(path, {"version": object()})
    assert json.loads(path.read_text())["version"] == 1


def test_bad_targets(tmp_path):
    with pytest.raises(ValueError, match="directory"):
        io.save_json(tmp_path, {})
    with pytest.raises(ValueError, match="does not exist"):
        io.save_json(tmp_path / "missing" / "r.json", {})


def test_save_solution(tmp_path):
    p = ufm.UFM(3, 2, 3, ufm.losses.MSE(), 1e-2, 1e-2)
    sol = ufm.solve(p, ufm.solvers.LBFGS(), p.init(jax.random.key(0)), gtol=1e-10)
    path = io.save_solution(tmp_path / "s.npz", p, sol, seed=0)
    arrays = np.load(path)
    assert set(arrays.files) == {"W", "H", "b", io.RECORD_KEY}
    np.testing.assert_array_equal(arrays["W"], np.asarray(sol.params.W))
    meta = io.load_json(path.with_suffix(".json"))
    assert meta["seed"] == 0 and meta["config"]["model"] == "ufm"
    assert json.loads(str(arrays[io.RECORD_KEY])) == meta  # the json is the npz's own record


def test_save_figure_atomic(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    path = io.save_figure(tmp_path / "f.png", fig)
    first = path.read_bytes()
    assert first[:8] == b"\x89PNG\r\n\x1a\n"
    monkeypatch.setattr(io.os, "replace", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    ax.plot([0, 1], [0, 1])
    with pytest.raises(KeyboardInterrupt):
        io.save_figure(path, fig)
    assert path.read_bytes() == first and [p.name for p in tmp_path.iterdir()] == ["f.png"]
    plt.close(fig)


def _solved(bias=True, seed=0):
    p = ufm.UFM(3, 2, 3, ufm.losses.CrossEntropy(), 1e-2, 2e-2, bias=bias)
    solver = ufm.solvers.LBFGS()
    sol = ufm.solve(p, solver, p.init(jax.random.key(seed), 0.3), max_steps=300, gtol=1e-9)
    return p, solver, sol


@pytest.mark.parametrize("bias", [True, False])
def test_load_solution_round_trips(tmp_path, bias):
    p, solver, sol = _solved(bias)
    path = io.save_solution(tmp_path / "s.npz", p, sol, solver=solver, max_steps=300, init_scale=0.3,
                            seed=0)
    q, params, record = io.load_solution(path)
    assert q == p
    assert jax.tree.structure(params) == jax.tree.structure(sol.params)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(sol.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        assert a.dtype == b.dtype
    # The loaded point is the saved solution: same objective value, recomputed independently.
    assert float(q.value(params)) == pytest.approx(float(sol.value), rel=1e-14)
    assert record["solver"]["name"] == "LBFGS" and record["solver"]["settings"]
    assert record["max_steps"] == 300 and record["gtol"] == 1e-9 and record["init_scale"] == 0.3
    assert record["seed"] == 0 and record["dtype"] == "float64" and record["status"] == sol.status_name
    assert record["metadata"]["git"] is None or len(record["metadata"]["git"].split("-")[0]) == 40


def test_git_revision_marks_dirty_tree(monkeypatch):
    calls = []

    def fake_run(cmd, **kwargs):
        calls.append(cmd[1])
        out = {"rev-parse": "", "status": " M ufm/io.py\n"}[cmd[1]]
        if cmd[1:] == ["rev-parse", "--show-toplevel"]:
            out = str(io.Path(io.__file__).resolve().parent.parent)
        elif cmd[1:] == ["rev-parse", "HEAD"]:
            out = "a" * 40
        return type("P", (), {"stdout": out})()

    monkeypatch.setattr(io.subprocess, "run", fake_run)
    assert io.git_revision() == "a" * 40 + "-dirty"


def test_stale_json_copy_is_refused(tmp_path):
    p, solver, sol = _solved()
    io.save_solution(tmp_path / "a.npz", p, sol, seed=0)
    io.save_solution(tmp_path / "b.npz", p, sol, seed=1)
    (tmp_path / "a.json").write_text((tmp_path / "b.json").read_text())
    with pytest.raises(ValueError, match="not the record"):
        io.load_solution(tmp_path / "a.npz")
    (tmp_path / "a.json").unlink()  # the npz alone is complete
    assert io.load_solution(tmp_path / "a.npz")[2]["seed"] == 0


@pytest.mark.parametrize("fail_on", ["npz", "json"])
def test_interrupted_save_never_pairs_new_npz_with_old_json(tmp_path, monkeypatch, fail_on):
    p, solver, sol = _solved()
    path = tmp_path / "s.npz"
    io.save_solution(path, p, sol, seed=1)
    real_replace = io.os.replace

    def replace(src, dst):
        if str(dst).endswith(fail_on):
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(io.os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        io.save_solution(path, p, sol, seed=2)
    monkeypatch.setattr(io.os, "replace", real_replace)
    left = sorted(f.name for f in tmp_path.iterdir())
    assert left == ["s.npz"]  # no json at all rather than a mismatched one; no temporaries
    expected_seed = 1 if fail_on == "npz" else 2
    assert io.load_solution(path)[2]["seed"] == expected_seed


def test_files_follow_the_umask_and_keep_an_existing_mode(tmp_path):
    old = io.os.umask(0o027)
    try:
        path = io.save_json(tmp_path / "r.json", {"x": 1})
        assert (path.stat().st_mode & 0o777) == 0o640
    finally:
        io.os.umask(old)
    path.chmod(0o604)
    io.save_json(path, {"x": 2})
    assert (path.stat().st_mode & 0o777) == 0o604


def test_symlinked_output_is_written_through(tmp_path):
    real = tmp_path / "data" / "real.json"
    real.parent.mkdir()
    real.write_text("{}")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    io.save_json(link, {"x": 3})
    assert link.is_symlink() and json.loads(real.read_text())["x"] == 3
    assert sorted(f.name for f in real.parent.iterdir()) == ["real.json"]


def test_check_writable(tmp_path):
    assert io.check_writable(tmp_path / "new.json") == tmp_path / "new.json"
    assert list(tmp_path.iterdir()) == []
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if not io.os.access(locked, io.os.W_OK):  # (root can write anywhere)
            with pytest.raises(ValueError, match="cannot write"):
                io.check_writable(locked / "x.json")
    finally:
        locked.chmod(0o700)


def test_no_stray_temporary_after_sigterm(tmp_path):
    """A process killed by SIGTERM mid-write leaves the old file and no temporary file."""
    import signal
    import subprocess
    import sys
    import time

    target, marker = tmp_path / "f.png", tmp_path / "writing"
    target.write_bytes(b"old")
    script = f"""
import time
from ufm import io
class SlowFigure:
    def savefig(self, fh, **kwargs):
        fh.write(b"partial")
        fh.flush()
        open({str(marker)!r}, "w").close()
        time.sleep(60)
io.save_figure({str(target)!r}, SlowFigure())
"""
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 120
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), "the writer never started"
        assert any(f.name.endswith(".tmp") for f in tmp_path.iterdir())  # the temporary exists
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == -signal.SIGTERM  # still ends as killed by SIGTERM
    finally:
        proc.kill()
    assert target.read_bytes() == b"old"
    assert sorted(f.name for f in tmp_path.iterdir()) == ["f.png", "writing"]


def _models():
    from ufm.losses import CrossEntropy, Focal, LabelSmoothing, MSE, PickAllLabel

    return {
        "ufm-imbalanced-nobias": lambda: ufm.UFM(3, (2, 1, 2), 3, Focal(2.0), 1e-2, 1e-2, bias=False),
        "deep-identity": lambda: ufm.DeepUFM(3, 2, (3, 3), MSE(), 1e-2, 1e-2, activation="identity"),
        "deep-extended": lambda: ufm.DeepUFM.extended(3, 2, 3, 4, CrossEntropy(), (1e-2, 2e-2), 1e-2),
        "multilabel-balanced": lambda: ufm.MultiLabelUFM.balanced(3, {1: 1, 2: 1}, 3, PickAllLabel(), 1e-2, 1e-2),
        "multilabel-sets": lambda: ufm.MultiLabelUFM(3, [[0], [1], [2], [0, 1]], 3, PickAllLabel(), 1e-2, 1e-2),
        "spherical": lambda: ufm.SphericalUFM(3, 2, 3, LabelSmoothing(0.1), temperature=2.0),
        "regression": lambda: ufm.RegressionUFM(np.arange(6.0).reshape(3, 2), 2, 1e-2, 1e-2),
    }


@pytest.mark.parametrize("name", sorted(_models()))
def test_every_model_round_trips_through_load_solution(tmp_path, name):
    p = _models()[name]()
    params = p.init(jax.random.key(1))
    value = p.value(params)
    sol = ufm.Solution(params, value, jax.numpy.asarray(0.5), jax.numpy.asarray(3),
                       jax.numpy.asarray(int(ufm.Status.MAX_STEPS)), None, None, jax.numpy.asarray(1e-9))
    path = io.save_solution(tmp_path / "s.npz", p, sol, seed=1)
    q, loaded, record = io.load_solution(path)
    assert type(q) is type(p) and q.config() == p.config()
    assert jax.tree.structure(loaded) == jax.tree.structure(params)
    for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert float(q.value(loaded)) == float(value)  # the rebuilt problem scores the point the same
    assert record["status"] == "max_steps" and record["seed"] == 1


def test_load_solution_refuses_foreign_files(tmp_path):
    plain = tmp_path / "plain.npz"
    np.savez(plain, W=np.ones(2))
    with pytest.raises(ValueError, match="not a solution"):
        io.load_solution(plain)
    with pytest.raises(ValueError, match="cannot read"):
        io.load_solution(tmp_path / "missing.npz")
    with pytest.raises(ValueError, match="config\\['model'\\]"):
        io.problem_from_config({"model": "nope"})


def test_regression_with_targets_recorded_by_digest_round_trips(tmp_path):
    """Over 10,000 target numbers the config holds only their digest: the file must still be
    loadable on its own (it carries the targets)."""
    Y = np.sin(np.arange(2501 * 4.0)).reshape(2501, 4)
    p = ufm.RegressionUFM(Y, 2, 1e-2, 2e-2)
    assert "targets" not in p.config()
    params = p.params(np.full((4, 2), 0.5), np.cos(np.arange(2501 * 2.0)).reshape(2501, 2), np.zeros(4))
    sol = ufm.Solution(params, np.asarray(1.0), np.asarray(0.5), np.asarray(3),
                       np.asarray(int(ufm.Status.MAX_STEPS)), None, None, np.asarray(1e-9))
    q, loaded, record = io.load_solution(io.save_solution(tmp_path / "s.npz", p, sol))
    np.testing.assert_array_equal(np.asarray(q.targets), Y)
    assert q.dim == 2 and float(q.lambda_W) == 1e-2 and float(q.lambda_H) == 2e-2
    for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert record["arrays"] == ["W", "H", "b"]


def test_load_solution_refuses_truncated_and_corrupted_files(tmp_path):
    p = ufm.UFM(3, 2, 3, ufm.losses.MSE(), 1e-2, 1e-2)
    params = p.init(jax.random.key(0))
    sol = ufm.Solution(params, p.value(params), jax.numpy.asarray(0.5), jax.numpy.asarray(3),
                       jax.numpy.asarray(int(ufm.Status.MAX_STEPS)), None, None, jax.numpy.asarray(1e-9))
    raw = io.save_solution(tmp_path / "s.npz", p, sol).read_bytes()
    flipped = bytearray(raw)
    flipped[len(raw) // 3] ^= 0xFF  # inside a member: its CRC no longer matches
    damaged = {"truncated": raw[: len(raw) // 2], "tail-cut": raw[:-10], "flipped": bytes(flipped),
               "text": b"not an npz file at all"}
    for name, data in damaged.items():
        path = tmp_path / f"{name}.npz"
        path.write_bytes(data)
        with pytest.raises(ValueError, match=f"{name}.npz") as info:
            io.load_solution(path)
        assert "\n" not in str(info.value), name
    record = json.loads(json.dumps(dict(config=p.config())))
    for name, arrays in {"int-W": dict(W=np.ones((3, 3), int), H=np.ones((6, 3)), b=np.ones(3)),
                         "no-config": dict(W=np.ones((3, 3)))}.items():
        path = tmp_path / f"{name}.npz"
        rec = record if name != "no-config" else {"x": 1}
        np.savez(path, **arrays, __record__=np.array(json.dumps(rec)))
        with pytest.raises(ValueError, match="dtype int|no config"):
            io.load_solution(path)
