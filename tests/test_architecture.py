"""Dependency direction of DESIGN.md: a module imports only from rows below its own."""

import ast
from pathlib import Path

import ufm

ROOT = Path(ufm.__file__).parent
# Row of each top-level unit; a module may import only units of a strictly lower row.
ROWS = {
    "_types": 0, "_version": 0,
    "labels": 1,
    "losses": 2, "manifolds": 2, "theory": 2, "networks": 2,
    "problems": 3, "protocols": 3,
    "solvers": 4,
    "metrics": 5, "landscape": 5,
    "sweep": 6, "sharding": 6, "compare": 6, "rfm": 6,
    "io": 7, "plots": 7, "cases": 7, "cache": 7, "distributed": 7,
    "cli_models": 8, "reproduce": 8, "sweep_cli": 9, "landscape_cli": 9, "cli": 10, "__main__": 11,
}


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if parts[0] == "ufm" and len(parts) > 1 else ""


def _imports(path: Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "ufm":
                for alias in node.names:
                    yield f"ufm.{alias.name}"
            else:
                yield node.module


def test_every_unit_has_a_row():
    units = {p.stem if p.is_file() else p.name for p in ROOT.iterdir()
             if (p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists())) and p.name != "__init__.py"}
    assert units <= set(ROWS), f"assign a row to {sorted(units - set(ROWS))}"


def test_imports_point_down():
    violations = []
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT)
        if rel.name == "__init__.py" and len(rel.parts) == 1:
            continue  # the public API re-exports everything
        own = rel.parts[0].removesuffix(".py")
        for module in _imports(path):
            target = _unit(module)
            if not target or target == own:
                continue
            if module == "ufm":
                violations.append(f"{rel}: imports the ufm package itself")
            elif ROWS[target] >= ROWS[own]:
                violations.append(f"{rel} (row {ROWS[own]}) imports {module} (row {ROWS[target]})")
    assert not violations, "\n".join(violations)
