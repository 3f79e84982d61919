"""Compare a solution with a closed-form prediction over rotation-invariant quantities."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from ufm import landscape
from ufm.metrics import measure

# name -> (tolerance, kind). "rel": relative error where the prediction is non-zero (absolute
# otherwise); "abs": absolute. Thresholds are the verification standard of issue #2 / DESIGN.md.
TOLERANCES: dict[str, tuple[float, str]] = {
    "value": (1e-9, "rel"),
    "norm_W_sq": (1e-6, "rel"), "norm_H_sq": (1e-6, "rel"),
    "norm_W": (1e-10, "abs"), "norm_H": (1e-10, "abs"),
    "gram_W": (1e-6, "rel"), "gram_W_spectrum": (1e-6, "rel"), "gram_means": (1e-6, "rel"),
    "W_means": (1e-6, "rel"), "W_means_spectrum": (1e-6, "rel"),
    "means_minus_beta_W": (1e-6, "abs"),
    "bias": (1e-6, "rel"), "bias_centred": (1e-6, "abs"), "bias_relation": (1e-6, "rel"),
    "margin": (1e-6, "rel"),
    "nc1": (1e-12, "abs"),
    "nc2_W": (1e-6, "abs"), "nc2_means": (1e-6, "abs"),
    "equinorm_W": (1e-6, "abs"), "equinorm_means": (1e-6, "abs"),
    "equiangle_W": (1e-6, "abs"), "equiangle_means": (1e-6, "abs"),
    "nc3_duality": (1e-6, "abs"), "nc3_zhu": (1e-6, "abs"), "nc4": (0.0, "abs"),
    "grad_norm": (1e-10, "abs"),
}
DEFAULT_TOLERANCE = (1e-6, "rel")
# Single precision cannot resolve float64 tolerances: below float64, every tolerance is at least
# FLOAT32_FLOOR (DESIGN.md, Tests), squared for the quadratic NC1.
FLOAT32_FLOOR = 1e-4
HESSIAN_RTOL = {True: 1e-8, False: FLOAT32_FLOOR}  # keyed by "is float64"
DENSE_HESSIAN_MAX = 3000  # parameters; above this the second-order certificate is skipped


@dataclasses.dataclass(frozen=True)
class Row:
    """One compared quantity. ``kind`` is 'equal' (|error| ≤ tol) or 'at_least' (measured ≥ −tol)."""

    quantity: str
    predicted: Any
    measured: Any
    error: float
    tolerance: float
    ok: bool
    kind: str = "equal"

    def to_dict(self) -> dict:
        def js(x):
            a = np.asarray(x, dtype=float)
            return float(a) if a.ndim == 0 else a.tolist()
        return dict(quantity=self.quantity, predicted=js(self.predicted), measured=js(self.measured),
                    error=float(self.error), tolerance=self.tolerance, ok=bool(self.ok), kind=self.kind)


@dataclasses.dataclass(frozen=True)
class Report:
    """Rows of (quantity, predicted, measured, error, ok) plus the solution's certificate."""

    rows: tuple[Row, ...]
    regime: str = ""
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.rows)

    def failures(self) -> list[Row]:
        return [r for r in self.rows if not r.ok]

    def __getitem__(self, quantity: str) -> Row:
        for r in self.rows:
            if r.quantity == quantity:
                return r
        raise KeyError(quantity)

    def to_dict(self) -> dict:
        return dict(ok=self.ok, regime=self.regime, notes=list(self.notes),
                    checks=[r.to_dict() for r in self.rows])

    def __str__(self) -> str:
        def short(x):
            a = np.asarray(x, dtype=float)
            return f"{float(a):.10g}" if a.ndim == 0 else f"<{'x'.join(map(str, a.shape))} array>"
        lines = [f"{'quantity':<20} {'predicted':>16} {'measured':>16} {'error':>10} {'tol':>8}  ok"]
        for r in self.rows:
            lines.append(f"{r.quantity:<20} {short(r.predicted):>16} {short(r.measured):>16} "
                         f"{r.error:>10.2e} {r.tolerance:>8.0e}  {'PASS' if r.ok else 'FAIL'}")
        return "\n".join(lines)


def is_float64(params) -> bool:
    """Whether every floating leaf of ``params`` is float64 (the precision of the verification)."""
    leaves = [np.asarray(x) for x in _leaves(params)]
    return all(x.dtype.itemsize >= 8 for x in leaves if np.issubdtype(x.dtype, np.floating))


def _floor(name: str, tol: float, float64: bool) -> float:
    if float64 or tol == 0.0:
        return tol
    return max(tol, FLOAT32_FLOOR ** 2 if name == "nc1" else FLOAT32_FLOOR)


def compare_value(name: str, predicted, measured, tolerances=None, *, float64: bool = True) -> Row:
    """One row: the error is a Frobenius norm, relative to ‖predicted‖ for 'rel' quantities.
    With ``float64=False`` the tolerance is raised to the float32 floor."""
    tol, kind = (tolerances or {}).get(name, TOLERANCES.get(name, DEFAULT_TOLERANCE))
    tol = _floor(name, tol, float64)
    p, m = np.asarray(predicted, dtype=float), np.asarray(measured, dtype=float)
    if p.shape != m.shape:
        return Row(name, predicted, measured, math.inf, tol, False)
    diff = float(np.linalg.norm((m - p).ravel()))
    scale = float(np.linalg.norm(p.ravel()))
    error = diff / scale if kind == "rel" and scale > 0 else diff
    return Row(name, predicted, measured, error, tol, bool(error <= tol))


def certificate(problem, solution, *, gtol: float | None = None, hessian: bool | None = None) -> list[Row]:
    """Rows certifying the measured point: gradient norm, and (small problems) the smallest
    Hessian eigenvalue ≥ −1e-8·max|eig| (second-order necessary condition)."""
    float64 = is_float64(solution.params)
    tol = _floor("grad_norm", TOLERANCES["grad_norm"][0] if gtol is None else gtol, float64)
    rows = [Row("grad_norm", 0.0, float(solution.grad_norm), float(solution.grad_norm), tol,
                bool(float(solution.grad_norm) <= tol))]
    size = sum(np.size(x) for x in _leaves(solution.params))
    if hessian if hessian is not None else size <= DENSE_HESSIAN_MAX:
        evals = landscape.hessian_eigenvalues(problem, solution.params)
        scale = max(float(np.max(np.abs(evals))), 1e-300)
        lam = float(evals[0])
        rtol = HESSIAN_RTOL[float64]
        rows.append(Row("hessian_min_eig", 0.0, lam, max(-lam, 0.0), rtol * scale,
                        bool(lam >= -rtol * scale), kind="at_least"))
    return rows


def _leaves(tree):
    import jax
    return jax.tree.leaves(tree)


def compare(problem, solution, prediction, *, tolerances: dict | None = None,
            gtol: float | None = None, hessian: bool | None = None) -> Report:
    """Compare ``solution`` (a :class:`ufm.Solution`, or a params pytree) with ``prediction``.

    Every quantity the prediction names is measured at the solution and compared with its
    tolerance from :data:`TOLERANCES` (override per name with ``tolerances``). Parameters in
    float32 get every tolerance raised to :data:`FLOAT32_FLOOR` (its square for NC1). A Solution also
    gets its certificate rows (gradient norm; smallest Hessian eigenvalue when small enough).

    Examples:
        >>> import jax, ufm
        >>> p = ufm.UFM(3, 2, 3, ufm.losses.CrossEntropy(), 1e-2, 1e-2)
        >>> pred = ufm.theory.predict(p)
        >>> ufm.compare(p, p.params(**pred.construct(seed=1)), pred).ok
        True
    """
    params = getattr(solution, "params", solution)
    measured = measure(problem, params)
    float64 = is_float64(params)
    rows = [compare_value(name, pred, measured[name], tolerances, float64=float64)
            for name, pred in prediction.quantities.items() if name in measured]
    missing = [name for name in prediction.quantities if name not in measured]
    if missing:
        raise KeyError(f"no measurement for predicted quantities {missing}")
    if hasattr(solution, "grad_norm"):
        rows += certificate(problem, solution, gtol=gtol, hessian=hessian)
    notes = tuple(prediction.notes) + (() if float64 else (
        f"parameters below float64: every tolerance is at least {FLOAT32_FLOOR:g}",))
    return Report(tuple(rows), regime=prediction.regime, notes=notes)
