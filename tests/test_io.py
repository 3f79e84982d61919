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
    assert set(arrays.files) == {"W", "H", "b"}
    np.testing.assert_array_equal(arrays["W"], np.asarray(sol.params.W))
    meta = io.load_json(path.with_suffix(".json"))
    assert meta["seed"] == 0 and meta["config"]["model"] == "ufm"


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
