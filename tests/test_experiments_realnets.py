"""The real-network experiments run end to end (--quick) and their key numbers are sane."""

import importlib.util
import json
from pathlib import Path

import jax
import pytest

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def _main(name):
    spec = importlib.util.spec_from_file_location(f"{name}_experiment", EXPERIMENTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    def main(argv):
        # The experiments train in float32 with optax, whose schedules and Adam bias correction mix
        # dtypes: run them under JAX's standard promotion, as a user would, not the suite's strict one.
        with jax.numpy_dtype_promotion("standard"):
            return module.main(argv)

    return main


def _figures(path: Path, *stems):
    for stem in stems:
        png = (path / f"{stem}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
        assert (path / f"{stem}.pdf").read_bytes()[:5] == b"%PDF-"
    assert not list(path.glob(".*.tmp"))  # atomic writes leave no temporary files


@pytest.mark.slow  # ~15 s: training compiles, then the metrics at every snapshot
def test_mlp_collapse_quick(tmp_path):
    assert _main("mlp_collapse")(["--quick", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "mlp_collapse.json").read_text())
    s = data["summary"]
    assert s["train_error_end"] == 0.0 and s["first_zero_error_step"] is not None
    assert s["nc1_end"] < 0.1 * s["nc1_start"]  # collapse under way, towards the UFM's 0
    assert s["nc4_end"] < 0.05
    p = data["predictions"]["lambda_H = wd"]
    assert p["regime"] == "collapse" and p["nc1"] == 0.0 and p["margin"] > 0
    # NC1 falls with depth at the end of training (data -> penultimate).
    layers = s["nc1_by_layer_end"]
    assert layers[-1] < layers[0]
    _figures(tmp_path, "mlp_collapse")


@pytest.mark.slow  # ~15 s: two data sets, 3 layers, two input widths each
def test_deep_rfm_quick(tmp_path):
    assert _main("deep_rfm")(["--quick", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "deep_rfm.json").read_text())
    for name, r in data["results"].items():
        nc1 = r["nc1_by_depth"]
        assert r["nc1_decreasing"] and all(b < a for a, b in zip(nc1, nc1[1:])), (name, nc1)
        assert nc1[-1] < 0.1 * nc1[0], (name, nc1)
        for layer in r["layers"]:  # the AGOP projection lowers NC1
            assert layer["nc1_agop"] < layer["nc1_data"], (name, layer)
    _figures(tmp_path, "deep_rfm", "deep_rfm_grams")


@pytest.mark.slow  # ~20 s: four small trainings
def test_deep_nrc_quick(tmp_path):
    assert _main("deep_nrc")(["--quick", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "deep_nrc.json").read_text())
    assert set(data["results"]) == {"diabetes", "low-rank synthetic"}
    syn = data["results"]["low-rank synthetic"]
    assert syn["intrinsic_dim"] == 2 and syn["targets"] == 5
    eig = syn["target_covariance_eigenvalues"]
    assert eig[2] < 1e-12 * eig[0]  # the targets span 2 dimensions
    for r in data["results"].values():
        wds = [run["weight_decay"] for run in r["runs"]]
        assert wds[0] == 0.0 and wds[1] > 0
        for run in r["runs"]:
            assert len(run["layers"]) == len(run["sizes"]) - 1
            for row in run["layers"]:
                assert 0 <= row["dnrc1"] <= 1 and 0 <= row["dnrc2"] <= 1 + 1e-12
                assert 0 <= row["dnrc3"] <= 1 + 1e-12 and row["dnrc4"] >= 0
            assert run["loss"][-1] < run["loss"][0]
    _figures(tmp_path, "deep_nrc")
