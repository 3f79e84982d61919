"""The loss-family experiment runs end to end (--quick: 3 values of λ) and agrees with theory."""

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "loss_family.py"


@pytest.mark.slow  # ~20 s of CPU, dominated by four compilations
def test_loss_family_quick(tmp_path):
    spec = importlib.util.spec_from_file_location("loss_family_experiment", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--quick", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "loss_family.json").read_text())
    assert set(data["summary"]) == {"MSE", "CE", "LS α=0.1", "LS α=0.3", "FL γ=1", "FL γ=2"}
    for label, s in data["summary"].items():
        assert s["all_converged"] and s["all_compare_ok"], label
        assert s["max_errors"]["value"] <= 1e-9, label
        for q in ("margin", "norm_W_sq", "gram_W"):
            assert s["max_errors"][q] <= 1e-6, (label, q)
    # Both sides of every threshold: the last λ is past all of them.
    for r in data["results"].values():
        assert r["rows"][0]["regime"] == "collapse" and r["rows"][-1]["regime"] == "zero"
    # Threshold markers: λ* = √P* with P* = 1/(K²n) (CE, MSE: Kτ = 1), (1−α)²/(K²n) (LS).
    K, n = data["config"]["num_classes"], data["config"]["num_per_class"]
    for label, alpha in (("MSE", 0.0), ("CE", 0.0), ("LS α=0.1", 0.1), ("LS α=0.3", 0.3)):
        assert abs(data["results"][label]["threshold_lambda"] - (1 - alpha) / (K * n ** 0.5)) < 1e-15
    for label in ("FL γ=1", "FL γ=2"):  # FL: between the last collapsed and the first zero λ
        r = data["results"][label]
        last = max(x["lam"] for x in r["rows"] if x["regime"] == "collapse")
        first = min(x["lam"] for x in r["rows"] if x["regime"] == "zero")
        assert last < r["threshold_lambda"] < first
    png = (tmp_path / "loss_family.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert (tmp_path / "loss_family.pdf").read_bytes()[:5] == b"%PDF-"
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporary files
