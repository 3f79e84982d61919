"""The documentation site builds with ``mkdocs build --strict`` (a broken reference, a page missing
from the navigation or a docstring that does not parse fails), and the CLI page documents every
option the commands take."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_mkdocs_build_strict(tmp_path):
    pytest.importorskip("mkdocs")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (tmp_path / "site" / "api" / "models" / "index.html").exists()


def _flags(command):
    from ufm import cli

    parser = cli._parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    return {s for a in sub._actions for s in a.option_strings if s.startswith("--") and s != "--help"}


@pytest.mark.parametrize("command", ["solve", "sweep"])
def test_cli_page_documents_every_option(command):
    text = (ROOT / "docs" / "cli.md").read_text()
    missing = sorted(f for f in _flags(command) if f"`{f}" not in text)
    assert not missing, f"docs/cli.md does not document {missing}"
