"""The README's two commands are the ones a new user runs, CI runs the test command, and the
README's Python example runs as written."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _commands():
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text, re.S).group(1)
    return [line.split("#")[0].strip() for line in block.strip().splitlines()]


def test_readme_starts_with_the_two_commands():
    text = (ROOT / "README.md").read_text()
    assert text.index("```bash") < 20  # the first lines
    main_cmd, test_cmd = _commands()
    assert main_cmd.endswith("ufm verify") and "pip install -e ." in main_cmd
    assert "pytest" in test_cmd and '".[test]"' in test_cmd


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert _commands()[1] in ci


def _python_blocks():
    return re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def test_readme_python_block_runs(tmp_path):
    """The README's Python example runs as written, in a fresh interpreter outside the repository,
    and the comparison it prints passes (the example is a claim the library makes)."""
    blocks = _python_blocks()
    assert blocks, "the README shows a Python example"
    check = ("\nfor _name in ('report', 'sol'):\n"
             "    assert _name in globals(), f'the README example defines {_name}'\n"
             "assert sol.status_name == 'converged', sol.status_name\n"
             "assert report.ok, report\n")
    script = "\n".join(blocks) + check
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_ENABLE_X64")}
    env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "PASS" in proc.stdout and "FAIL" not in proc.stdout, proc.stdout[-3000:]
