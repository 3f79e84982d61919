"""The deep-threshold and spherical experiments: outputs exist and theory agrees with the solver.

Default tests run a shrunken deep-threshold experiment (one two-layer deep linear model, compiled
once) and the figure code; the scripts' own --quick runs are slow (several compilations each).
"""

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1] / "experiments"


def _load(name):
    spec = importlib.util.spec_from_file_location(f"{name}_experiment", ROOT / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _figures_ok(path: Path, stem: str):
    png = (path / f"{stem}.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    assert (path / f"{stem}.pdf").read_bytes()[:5] == b"%PDF-"
    assert not list(path.glob(".*.tmp"))


def test_deep_threshold_curves_are_the_closed_form():
    """The smooth curves (from ψ) jump at κ* = 2^(-4/3) and end at κ_max; independent numbers."""
    dt = _load("deep_threshold")
    ks, km = 2 ** (-4 / 3), 3 * 4 ** (-4 / 3)
    c = dt.theory_curves([0.1, ks - 1e-9, ks + 1e-9, km - 1e-6, km + 1e-6, 0.6])
    # Just below κ*: σ* = (L−1)/L = 1/2, ψ = 1/2 (the jump is in σ, not in F); ‖W₂‖² = K n^(1/3) σ^(2/3).
    assert abs(c["value"][1] - 0.5) < 1e-8 and abs(c["value"][2] - 0.5) < 1e-15
    assert abs(c["norm_W_sq"][1] - 3 * 2 ** (1 / 3) * 0.5 ** (2 / 3)) < 1e-6
    assert c["norm_W_sq"][2] == 0.0 and c["norm_W_sq"][5] == 0.0
    # The metastable branch exists up to κ_max only, above 1/2 past κ*.
    assert c["value_local"][3] > 0.5 and math.isnan(c["value_local"][4])
    # At κ = 0.1, brute force over σ.
    s = np.linspace(0, 1.2, 1_200_001)
    psi = (1 - s) ** 2 / 2 + 1.5 * 0.1 * s ** (2 / 3)
    assert abs(c["value"][0] - psi.min()) < 1e-11


def test_deep_threshold_shrunk_run(tmp_path, monkeypatch):
    """One deep linear model (compiled once): best of the restarts = F* on both sides of κ*,
    every restart on a level f_r, DNC ≈ 0 by layer, JSON + PNG + PDF."""
    dt = _load("deep_threshold")
    monkeypatch.setattr(dt, "MODELS", {"deep linear": ((3, 3), "identity"),
                                       "extended ReLU": ((3, 3), "identity")})  # same program
    monkeypatch.setattr(dt, "LAYER_MODELS", {"deep linear, L = 2": ((3, 3), "identity", 0.2)})
    monkeypatch.setattr(dt, "RESTARTS", 0)
    kappas = np.array([0.2, 0.375, 0.42, 0.55])
    results = dt.run_threshold(kappas, seeds=3)
    layers = dt.run_layers(seeds=3)
    rows = results["deep linear"]["rows"]
    assert [r["regime"] for r in rows] == ["collapse", "collapse", "zero", "zero"]
    for r in rows:
        assert r["value_rel_error"] <= 1e-9 and r["num_below_target"] == 0, r["kappa"]
        assert r["norm_W_sq_error"] <= 1e-6 and r["curve_vs_predict"] <= 1e-9
        assert r["max_distance_to_a_level"] <= 1e-8  # deep linear: every run on a level f_r
    assert rows[-1]["reach_fraction"] == 1.0  # past κ_max only the origin is left
    lay = layers["deep linear, L = 2"]
    assert lay["value_rel_error"] <= 1e-9 and lay["max_dnc"] <= 1e-6
    assert set(lay["per_layer"]["dnc2"]) == {1, 2}  # deep linear: frame tests at every layer
    curves = dt.theory_curves(np.linspace(0, 0.6, 61))
    dt.figure(results, layers, curves, tmp_path / "deep_threshold.png")
    _figures_ok(tmp_path, "deep_threshold")


def test_spherical_figure_from_a_synthetic_run(tmp_path):
    sph = _load("spherical_solvers")
    rows = [dict(temperature=T, value=sph.spherical_value(4, 1 / T), margin=4 / 3 / T,
                 gram_W_rel_error=1e-13, nc1=0.0) for T in (0.2, 1.0, 5.0)]
    trace = dict(grad_norm=[1.0, 1e-3, 1e-9, 1e-14], s_per_iteration=1e-4)
    sph.figure({"trust region": rows, "gradient descent": rows},
               {"trust region": [trace], "gradient descent": [trace]}, 4, 3, 4, 0.5,
               tmp_path / "spherical_solvers.png")
    _figures_ok(tmp_path, "spherical_solvers")


@pytest.mark.slow  # ~70 s: four compiled multi-start programs
def test_deep_threshold_quick(tmp_path):
    assert _load("deep_threshold").main(["--quick", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "deep_threshold.json").read_text())
    assert data["agree"] is True
    assert abs(data["kappa_star"] - 2 ** (-4 / 3)) < 1e-15 and abs(data["kappa_max"] - 3 * 4 ** (-4 / 3)) < 1e-15
    for name in ("extended ReLU", "deep linear"):
        s = data["summary"][name]
        assert s["max_value_rel_error"] <= 1e-8 and s["num_below_target"] == 0
    _figures_ok(tmp_path, "deep_threshold")


@pytest.mark.slow  # ~15 s: two solvers compiled
def test_spherical_quick(tmp_path):
    assert _load("spherical_solvers").main(["--quick", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "spherical_solvers.json").read_text())
    assert data["agree"] is True
    tr, gd = data["summary"]["trust region"], data["summary"]["gradient descent"]
    for s in (tr, gd):
        assert s["all_converged"] and s["max_value_rel_error"] <= 1e-9 and s["max_gram_W_rel_error"] <= 1e-6
    assert max(tr["trace_iterations"]) * 5 < min(gd["trace_iterations"])  # TR: far fewer iterations
    _figures_ok(tmp_path, "spherical_solvers")
