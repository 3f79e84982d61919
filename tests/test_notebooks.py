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


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_ipynb_copy_matches_its_source(path):
    """Each notebook ships as a jupytext .py source and an .ipynb built from it
    (``jupytext --to ipynb notebooks/*.py``); the two hold the same cells."""
    jupytext = pytest.importorskip("jupytext")
    ipynb = path.with_suffix(".ipynb")
    assert ipynb.exists(), f"build {ipynb.name}: jupytext --to ipynb {path.name}"
    source, built = jupytext.read(path), jupytext.read(ipynb)
    assert [(c.cell_type, c.source) for c in source.cells] == [(c.cell_type, c.source) for c in built.cells]
