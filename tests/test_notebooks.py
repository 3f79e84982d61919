"""Notebooks (jupytext percent sources) run as tests, like matfree's tutorials."""

import runpy
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.py"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path):
    import matplotlib.pyplot as plt

    runpy.run_path(str(path), run_name="__main__")
    plt.close("all")
