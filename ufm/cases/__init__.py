"""The built-in verification table of ``ufm verify``.

Each module of this package defines ``CASES``, a list of :class:`Case`; they are collected here in
module order. A model family adds its rows by adding a module, nothing else.
"""

from __future__ import annotations

import importlib
import pkgutil

from ufm.cases._registry import TIERS, Case, default_solve, polish, run_case


def all_cases() -> list[Case]:
    """Every case of every family module, checked for unique names."""
    cases: list[Case] = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        cases += importlib.import_module(f"{__name__}.{info.name}").CASES
    names = [c.name for c in cases]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise RuntimeError(f"duplicate verification case names: {sorted(dupes)}")
    return cases


def select(tier: str = "default", only: str | None = None) -> list[Case]:
    """Cases of ``tier`` (quick ⊂ default ⊂ full), optionally filtered by a name substring."""
    if tier not in TIERS:
        raise ValueError(f"tier must be one of {TIERS}, got {tier!r}")
    return [c for c in all_cases() if c.in_tier(tier) and (only is None or only in c.name)]


__all__ = ["Case", "TIERS", "all_cases", "select", "run_case", "default_solve", "polish"]
