"""The verification table behind ``ufm verify``: cases, how to run one, and the tiers."""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, Optional

import jax
import numpy as np

TIERS = ("quick", "default", "full")


@dataclasses.dataclass(frozen=True)
class Case:
    """One row of ``ufm verify``.

    Attributes:
        name: unique identifier, e.g. ``"ufm-ce-K4-d3-below"``.
        model: model family shown in the table ("ufm", "spherical", ...).
        loss: loss name.
        build: () -> problem.
        tier: smallest tier that runs it: "quick" (all runs), "default" or "full" (only --full).
        solve: problem -> Solution; default :func:`default_solve` (the default solver from a random start, certified).
        check: (problem, solution) -> Report; default compares with ``ufm.theory.predict``.
        expect_no_closed_form: the row passes when ``predict`` refuses with NoClosedForm (the
            case documents a regime where no theorem applies).
        description: one line shown in reports.
    """

    name: str
    model: str
    loss: str
    build: Callable
    tier: str = "default"
    solve: Optional[Callable] = None
    check: Optional[Callable] = None
    expect_no_closed_form: bool = False
    description: str = ""

    def in_tier(self, tier: str) -> bool:
        return TIERS.index(self.tier) <= TIERS.index(tier)


def default_solve(problem, *, seed: int = 0, scale: float = 0.5, gtol: float = 1e-12,
                  max_steps: int = 20_000, restarts: int = 3, max_escapes: int = 3):
    """The default solver (:func:`ufm.solvers.default_solver`: the trust region on smooth
    problems, L-BFGS on ReLU ones) from a Gaussian start, certified: restarted from its own
    output while not converged, and escaped along the negative-curvature eigenvector wherever it
    stopped at a saddle (:func:`ufm.compare.certified_solve`). A row can then neither fail nor
    pass because the solver stopped at a saddle."""
    from ufm.compare import certified_solve
    from ufm.solvers import default_solver

    params = problem.init(jax.random.key(seed), scale=scale)
    return certified_solve(problem, default_solver(problem), params, gtol=gtol, max_steps=max_steps,
                           max_escapes=max_escapes, restarts=restarts)


def polish(problem, solution, solver=None, *, gtol: float = 1e-12, max_steps: int = 20_000,
           max_escapes: int = 3):
    """Escape saddles from ``solution`` (e.g. the best of a multi-start) and re-solve: the hook for
    rows with their own solve (:func:`ufm.compare.escape_saddles`); by default with
    :func:`ufm.solvers.default_solver`."""
    from ufm.compare import escape_saddles
    from ufm.solvers import default_solver

    return escape_saddles(problem, solver or default_solver(problem), solution, gtol=gtol, max_steps=max_steps,
                          max_escapes=max_escapes)[0]


def run_case(case: Case) -> dict:
    """Solve and check one case; return its JSON row (never raises for a failing check)."""
    from ufm.compare import compare
    from ufm.theory import NoClosedForm, predict

    start = time.perf_counter()
    problem = case.build()
    row = dict(name=case.name, model=case.model, loss=case.loss, config=problem.config(),
               description=case.description)
    try:
        if case.check is None:
            try:
                prediction = predict(problem)
            except NoClosedForm as exc:
                row.update(ok=case.expect_no_closed_form, regime="no closed form", checks=[],
                           notes=[str(exc)], seconds=time.perf_counter() - start)
                return row
            if case.expect_no_closed_form:
                row.update(ok=False, regime=prediction.regime, checks=[],
                           notes=["expected NoClosedForm, but predict returned a prediction"],
                           seconds=time.perf_counter() - start)
                return row
        sol = (case.solve or default_solve)(problem)
        report = case.check(problem, sol) if case.check else compare(problem, sol, prediction)
        row.update(ok=report.ok, regime=report.regime, notes=list(report.notes),
                   checks=[r.to_dict() for r in report.rows], status=sol.status_name,
                   num_steps=int(np.sum(sol.num_steps)))
    except Exception as exc:  # a crashing row is a failing row, reported, not a lost run
        row.update(ok=False, regime="error", checks=[], notes=[f"{type(exc).__name__}: {exc}"])
    row["seconds"] = time.perf_counter() - start
    return row
