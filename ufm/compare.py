"""Compare a solution with a closed-form prediction, at tolerances derived from a certificate.

Every tolerance is a bound, printed beside its error. Near a strict minimiser modulo the model's
symmetry (:func:`ufm.landscape.certify`: gradient norm g, smallest non-symmetry Hessian eigenvalue
μ > 0), the distance to the minimiser set is at most δ = g/μ to first order (g = H δ on the
complement of the symmetry directions, and ‖H⁻¹‖ = 1/μ there). A quantity q then differs from its
value on the minimiser set by at most ‖Dq‖·δ. ``compare`` estimates the sensitivity ‖Dq‖ by
one-sided finite differences of ``ufm.metrics.measure`` along the directions the displacement can
take: the Newton step H⁺g (the displacement itself, to first order), the eigenvectors of the
smallest eigenvalues (where g/μ is attained) and two random complement directions; the bound is

    bound(q) = SAFETY · L(q) · δ  +  ROUNDING · eps · (|q| + L(q) · ‖x‖ [+ 1])  +  NOISE_SAFETY · ρ(q)

(divided by |q_predicted| for relative quantities). SAFETY = 10 absorbs the second-order
remainder of the quadratic model and of q along a path of length δ (relative size O(δ), ≪ 1 for
a converged solve) and directions the finite differences did not probe: the displacement lies
mostly along the probed low eigenvectors, whose components are the largest (g_i/λ_i).
``tests/test_certify.py`` checks the bound against the true error at perturbed exact minimisers.
The rounding term counts ROUNDING = 1000 ulps of the quantity's dtype: the parameters are only
known to eps·‖x‖ (propagated through L) and the quantity itself is computed with sums and
eigendecompositions; in float32 it is ≈ 1e-4 relative, in float64 ≈ 2e-13. ρ(q) is the change
of q when every parameter moves by a few ulps (:func:`rounding_noise`): the rounding of
quantities that are squares of rounding-level deviations (NC1, NRC1) or residuals of a constraint
(distance to the sphere), which ``eps·|q|`` would miss. The [+ 1] is for the normalised metrics
computed from O(1) numbers (cosines, unit-normalised frames, norm ratios;
``ufm.metrics._registry.UNIT_SCALE``): they round at eps·O(1) absolutely even where they vanish,
and a rounding error that is the same at the point and at its ulp-moved copies escapes ρ(q) (at
K = 2 equiangle is identically 0 and measured as 1e-16 at one point in five).

Zero regime: at W = H = 0 the same certificate gives ‖W‖, ‖H‖ ≤ δ = g/μ with μ the curvature of
the origin (≥ min(λ_W, λ_H) minus the fit's coupling, docs/theory/ce-family.md).

Degenerate minimiser sets beyond symmetry (zero eigenvalues above the symmetry count, e.g. any
rank-d projector for bias-free MSE with d < K): the bounds use the smallest eigenvalue above them,
which is valid for quantities that are constant along that set — by its contract every quantity of
a Prediction is a property of the whole minimiser set, and ``compare`` checks it: a quantity whose
first-order (central-difference) slope along the zero modes exceeds FLAT_RTOL = 1e-6 of its natural
slope (L, or |q|/‖x‖) is not determined by the point and fails (row basis "flat").
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import numpy as np

from ufm import landscape
from ufm.metrics import measure, objective, quantity_kind
from ufm.metrics._registry import unit_scale

SAFETY = 10.0  # factor on the first-order bound (see the module docstring)
ROUNDING = 1e3  # ulps of rounding allowed per quantity
NOISE_SAFETY = 10.0  # factor on the measured effect of rounding the parameters (rounding_noise)
# A quantity "varies along" a zero mode beyond symmetry when its first-order slope there exceeds
# this fraction of its natural slope (L, or |q|/‖x‖); constant ones show only O(δ + h² + eps/h).
FLAT_RTOL = 1e-6
# Without a second-order certificate (``hessian=False``, or no Hessian available) nothing bounds
# the distance to the minimiser set: these fixed tolerances are then used, and the report says so.
UNCERTIFIED_TOLERANCES: dict[str, float] = {"value": 1e-9, "nc1": 1e-12, "nc4": 0.0}
UNCERTIFIED_DEFAULT = 1e-6
TOLERANCES = {name: (tol, quantity_kind(name)) for name, tol in UNCERTIFIED_TOLERANCES.items()}
DENSE_HESSIAN_MAX = landscape.DENSE_MAX


@dataclasses.dataclass(frozen=True)
class Row:
    """One compared quantity. ``kind`` is 'equal' (|error| ≤ tolerance) or 'at_least' (measured ≥
    −tolerance). ``tolerance`` is the bound the error is judged against; ``basis`` says where it
    came from ("certificate", "gtol", "fixed", "rounding", "status", ...)."""

    quantity: str
    predicted: Any
    measured: Any
    error: float
    tolerance: float
    ok: bool
    kind: str = "equal"
    basis: str = ""

    def to_dict(self) -> dict:
        def js(x):
            if isinstance(x, str) or x is None:
                return x
            a = np.asarray(x, dtype=float)
            return float(a) if a.ndim == 0 else a.tolist()
        return dict(quantity=self.quantity, predicted=js(self.predicted), measured=js(self.measured),
                    error=float(self.error), tolerance=float(self.tolerance), ok=bool(self.ok),
                    kind=self.kind, basis=self.basis)


@dataclasses.dataclass(frozen=True)
class Report:
    """Rows of (quantity, predicted, measured, error, bound, ok) plus the point's certificate."""

    rows: tuple[Row, ...]
    regime: str = ""
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return bool(self.rows) and all(r.ok for r in self.rows)

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
            if isinstance(x, str) or x is None:
                return str(x)
            a = np.asarray(x, dtype=float)
            return f"{float(a):.10g}" if a.ndim == 0 else f"<{'x'.join(map(str, a.shape))} array>"
        lines = [f"regime: {self.regime or '-'}    {'PASS' if self.ok else 'FAIL'}"]
        lines += [f"note: {n}" for n in self.notes]
        lines.append(f"{'quantity':<20} {'predicted':>16} {'measured':>16} {'error':>10} {'bound':>10}  "
                     f"{'from':<11} ok")
        for r in self.rows:
            lines.append(f"{r.quantity:<20} {short(r.predicted):>16} {short(r.measured):>16} "
                         f"{r.error:>10.2e} {r.tolerance:>10.2e}  {r.basis:<11} "
                         f"{'PASS' if r.ok else 'FAIL'}")
        return "\n".join(lines)


def is_float64(params) -> bool:
    """Whether every floating leaf of ``params`` is float64 (the precision of the verification)."""
    leaves = [np.asarray(x) for x in jax.tree.leaves(params)]
    return all(x.dtype.itemsize >= 8 for x in leaves if np.issubdtype(x.dtype, np.floating))


def _error(name, predicted, measured) -> tuple[float, float]:
    """(error, scale): Frobenius distance, relative to ‖predicted‖ for 'rel' quantities."""
    p, m = np.asarray(predicted, dtype=float), np.asarray(measured, dtype=float)
    if p.shape != m.shape:
        return math.inf, 1.0
    diff = float(np.linalg.norm((m - p).ravel()))
    scale = float(np.linalg.norm(p.ravel()))
    if quantity_kind(name) == "rel" and scale > 0:
        return diff / scale, scale
    return diff, 1.0


def compare_value(name: str, predicted, measured, tolerances=None, *, float64: bool = True) -> Row:
    """One row at a fixed tolerance ``tolerances[name] = (tol, kind)`` (default: the uncertified
    table). The error is a Frobenius norm, relative to ‖predicted‖ for 'rel' quantities."""
    tol, kind = (tolerances or {}).get(name, (UNCERTIFIED_TOLERANCES.get(name, UNCERTIFIED_DEFAULT),
                                              quantity_kind(name)))
    if not float64 and tol > 0:
        tol = max(tol, ROUNDING * float(np.finfo(np.float32).eps))
    p, m = np.asarray(predicted, dtype=float), np.asarray(measured, dtype=float)
    if p.shape != m.shape:
        return Row(name, predicted, measured, math.inf, tol, False, basis="fixed")
    diff = float(np.linalg.norm((m - p).ravel()))
    scale = float(np.linalg.norm(p.ravel()))
    error = diff / scale if kind == "rel" and scale > 0 else diff
    return Row(name, predicted, measured, error, tol, bool(error <= tol), basis="fixed")


def _eps(params) -> float:
    return landscape._eps(params)


def _flat_norm(params) -> float:
    return float(np.linalg.norm(np.asarray(jax.flatten_util.ravel_pytree(params)[0])))


def _diff(a, b) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        return math.inf
    d = float(np.linalg.norm((a - b).ravel()))
    return d if math.isfinite(d) else math.inf


def sensitivities(problem, params, names, directions, step: float, base=None,
                  central: bool = False) -> dict[str, float]:
    """max over unit tangent ``directions`` [P, k] (flat) of the one-sided finite-difference slopes
    |q(R_x(±h v)) − q(x)|/h of each measured quantity (R the retraction; one-sided so that a kink,
    e.g. a norm at 0, still shows its slope). ``central``: the first-order slope
    |q(R_x(h v)) − q(R_x(−h v))|/(2h) instead (blind to curvature along v)."""
    _, unravel = jax.flatten_util.ravel_pytree(params)
    base = measure(problem, params) if base is None else base
    slopes = {n: 0.0 for n in names}
    dtype = np.asarray(jax.flatten_util.ravel_pytree(params)[0]).dtype
    for v in np.asarray(directions).T:
        nv = np.linalg.norm(v)
        if not nv > 0:
            continue
        qs = []
        for sign in (1.0, -1.0):
            moved = problem.manifold.retraction(params, unravel((sign * step / nv * v).astype(dtype)))
            with np.errstate(all="ignore"):
                qs.append(measure(problem, moved))
        for n in names:
            slope = (_diff(qs[0][n], qs[1][n]) / (2 * step) if central else
                     max(_diff(q[n], base[n]) for q in qs) / step)
            slopes[n] = max(slopes[n], slope)
    return slopes


def rounding_noise(problem, params, names, base=None, *, ulps: float = 4.0, draws: int = 2) -> dict[str, float]:
    """Largest change of each measured quantity when every parameter is moved by ``ulps`` units
    in its last place (random signs, in the ambient space): what the point's own rounding does to
    the quantity. It covers the quantities whose rounding is not ``eps·|q|`` — squares of
    rounding-level deviations (NC1, NRC1) and constraint residuals (distance to the sphere) — the
    ``eps·(|q| + L‖x‖)`` term misses."""
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    x = np.asarray(flat)
    eps = float(np.finfo(x.dtype).eps) if np.issubdtype(x.dtype, np.floating) else 0.0
    base = measure(problem, params) if base is None else base
    rng = np.random.default_rng(12345)
    out = {n: 0.0 for n in names}
    for _ in range(draws):
        moved = unravel(jax.numpy.asarray(x * (1 + ulps * eps * rng.choice([-1.0, 1.0], x.size)), x.dtype))
        with np.errstate(all="ignore"):
            q = measure(problem, moved)
        for n in names:
            d = _diff(q[n], base[n])
            out[n] = max(out[n], d if math.isfinite(d) else 0.0)
    return out


def _status_row(solution, gtol=None) -> Row | None:
    """The solver's own verdict. A solve that stopped short of its tolerance (stalled, max_steps)
    fails, unless the caller gave ``compare`` an explicit ``gtol`` that its gradient norm meets
    (e.g. minimisers on ReLU kinks, where L-BFGS stalls at ~1e-8): the gradient row then judges."""
    status = getattr(solution, "status", None)
    if status is None:
        return None
    name = solution.status_name
    if isinstance(name, list):
        return Row("status", "converged", str(name), math.inf, 0.0, False, basis="status")
    ok = name == "converged"
    if not ok and name in ("stalled", "max_steps") and gtol is not None:
        g = float(np.asarray(getattr(solution, "grad_norm", math.inf)))
        ok = bool(g <= float(gtol))
    return Row("status", "converged", name, 0.0 if ok else math.inf, 0.0, ok,
               basis="status" if name == "converged" or not ok else "gtol given")


def _grad_row(problem, solution, cert, gtol, eps, params) -> Row:
    """The gradient norm against the tolerance the solve ran with (``Solution.gtol``), an explicit
    ``gtol``, or, for raw params, the rounding level of a stationary point."""
    if hasattr(solution, "grad_norm"):
        g = float(np.asarray(solution.grad_norm))
        tol = gtol if gtol is not None else getattr(solution, "gtol", None)
        if tol is not None:
            tol = float(np.asarray(tol))
            return Row("grad_norm", 0.0, g, g, tol, bool(g <= tol), basis="gtol")
    g = cert.grad_norm if cert is not None else _grad_norm(problem, params)
    if gtol is not None:
        return Row("grad_norm", 0.0, g, g, float(gtol), bool(g <= gtol), basis="gtol")
    scale = (cert.max_abs_eig if cert is not None else 1.0) * max(_flat_norm(params), 1.0)
    tol = ROUNDING * eps * scale  # an exact stationary point, up to rounding of ∇F ~ ‖H‖‖x‖ eps
    return Row("grad_norm", 0.0, g, g, tol, bool(g <= tol), basis="rounding")


def _grad_norm(problem, params) -> float:
    from ufm.solvers import value_and_riemannian_grad

    rgrad = value_and_riemannian_grad(problem, params)[2]
    return float(problem.manifold.norm(params, rgrad))


def _hessian_row(cert) -> Row:
    return Row("hessian_min_eig", 0.0, cert.min_eig, max(-cert.min_eig, 0.0), cert.noise,
               not cert.is_saddle, kind="at_least", basis=cert.method)


def _certificate_notes(cert) -> tuple[str, ...]:
    notes = [f"certificate ({cert.method}): g = {cert.grad_norm:.2e}, μ = {cert.mu:.3e} "
             f"(smallest Hessian eigenvalue modulo {cert.num_symmetry} symmetry directions), "
             f"distance ≤ g/μ = {cert.distance:.2e}, value gap ≤ g²/(2μ) = {cert.value_gap:.2e}; "
             f"{cert.verdict()}"]
    if cert.num_degenerate:
        notes.append(f"{cert.num_degenerate} zero eigenvalues beyond symmetry (|λ| ≤ {cert.noise:.1e}): "
                     f"a degenerate minimiser set; bounds hold for quantities constant along it")
    if cert.is_saddle:
        notes.append(f"negative curvature {cert.min_eig:.3e}: a saddle, not a minimiser")
    return tuple(notes)


def compare(problem, solution, prediction, *, tolerances: dict | None = None,
            gtol: float | None = None, hessian: bool | None = None) -> Report:
    """Compare ``solution`` (a :class:`ufm.Solution`, or a params pytree) with ``prediction``.

    Every quantity the prediction names is measured at the point (``ufm.metrics.measure``) and
    judged against a bound derived from the point's certificate (module docstring): the row's
    ``tolerance`` is that bound. The gradient norm is judged against the tolerance the solve ran
    with (``Solution.gtol``; ``gtol`` overrides it); raw params are certified at their own
    gradient norm, which must be at rounding level. ``hessian=False`` skips the second-order
    certificate: the quantities are then judged at fixed, uncertified tolerances (noted).
    ``tolerances={name: (tol, kind)}`` fixes a tolerance for a quantity instead of its bound.

    A failed solve (status nonfinite, max_steps, stalled) gives a report that says so (ok=False,
    a ``status`` row), never an exception.

    Examples:
        >>> import jax, ufm
        >>> p = ufm.UFM(3, 2, 3, ufm.losses.CrossEntropy(), 1e-2, 1e-2)
        >>> pred = ufm.theory.predict(p)
        >>> ufm.compare(p, p.params(**pred.construct(seed=1)), pred).ok
        True
    """
    params = getattr(solution, "params", solution)
    # params of another problem: a ValueError, not a report (a non-finite point is reported below)
    landscape._check_point(problem, params, finite=False)
    rows: list[Row] = []
    notes = list(prediction.notes)
    status = _status_row(solution, gtol)
    if status is not None:
        rows.append(status)
    missing = []
    finite = all(bool(np.all(np.isfinite(np.asarray(x)))) for x in jax.tree.leaves(params))
    if not finite or (status is not None and status.measured == "nonfinite"):
        notes.append("the point is not finite: nothing was measured")
        return Report(tuple(rows) or (Row("status", "finite", "nonfinite", math.inf, 0.0, False,
                                          basis="status"),), regime=prediction.regime, notes=tuple(notes))
    try:
        with np.errstate(all="ignore"):
            measured = measure(problem, params)
    except (np.linalg.LinAlgError, ValueError, FloatingPointError) as exc:
        notes.append(f"measurement failed: {type(exc).__name__}: {exc}")
        rows.append(Row("measure", "ok", "failed", math.inf, 0.0, False, basis="status"))
        return Report(tuple(rows), regime=prediction.regime, notes=tuple(notes))
    missing = [name for name in prediction.quantities if name not in measured]
    if missing:
        raise KeyError(f"no measurement for predicted quantities {missing}")
    eps = _eps(params)
    size = int(sum(np.size(x) for x in jax.tree.leaves(params)))
    use_hessian = hessian if hessian is not None else True
    cert = None
    if use_hessian:
        try:
            cert = landscape.certify(problem, params, method="dense" if size <= landscape.DENSE_MAX
                                     else "matrix-free")
        except (np.linalg.LinAlgError, FloatingPointError) as exc:
            notes.append(f"no certificate: {type(exc).__name__}: {exc}")
    rows.append(_grad_row(problem, solution, cert, gtol, eps, params))
    names = [n for n in prediction.quantities]
    fixed = dict(tolerances or {})
    if cert is not None:
        rows.append(_hessian_row(cert))
        notes += _certificate_notes(cert)
        rows += _bounded_rows(problem, params, prediction, measured, names, fixed, cert, eps)
    else:
        if not use_hessian:
            notes.append("no second-order certificate (hessian=False): fixed, uncertified tolerances")
        rows += [compare_value(n, prediction.quantities[n], measured[n], fixed, float64=eps < 1e-10)
                 for n in names]
    if eps > 1e-10:
        notes.append(f"parameters below float64: rounding floor {ROUNDING:g} ulps ({ROUNDING * eps:.1e})")
    return Report(tuple(rows), regime=prediction.regime, notes=tuple(notes))


def _bounded_rows(problem, params, prediction, measured, names, fixed, cert, eps) -> list[Row]:
    scale_x = max(_flat_norm(params), 1.0)
    delta = cert.distance
    mu_known = cert.mu > 0
    # Probe directions: the Newton displacement, the lowest eigenvectors, two random ones.
    dirs = [d for d in ([cert.newton] if cert.newton is not None else [])]
    dirs += list(np.asarray(cert.low_directions).T)
    rng = np.random.default_rng(0)
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    P = np.asarray(flat).size
    for _ in range(2):
        v = unravel(jax.numpy.asarray(rng.standard_normal(P), flat.dtype))
        dirs.append(np.asarray(jax.flatten_util.ravel_pytree(problem.manifold.projection(params, v))[0]))
    dirs = np.stack(dirs, axis=1) if dirs else np.zeros((P, 0))
    # Random directions may contain symmetry components: remove them (they change no invariant).
    S = landscape.symmetry_directions(problem, params)
    dirs = dirs - S @ (S.T @ dirs)
    step = min(max(delta if math.isfinite(delta) else 0.0, math.sqrt(eps) * scale_x), 1e-3 * scale_x)
    bounded = [n for n in names if n not in fixed]
    slopes = sensitivities(problem, params, bounded, dirs, step, base=measured) if bounded else {}
    noise = rounding_noise(problem, params, bounded, base=measured) if bounded else {}
    deg = np.asarray(cert.degenerate_directions)
    deg_slopes = (sensitivities(problem, params, bounded, deg[:, :4], step, base=measured,
                                central=True) if deg.size and bounded else {})
    rows = []
    for n in names:
        pred, meas = prediction.quantities[n], measured[n]
        if n in fixed:
            rows.append(compare_value(n, pred, meas, fixed, float64=eps < 1e-10))
            continue
        error, scale = _error(n, pred, meas)
        L = slopes[n]
        magnitude = max(float(np.linalg.norm(np.asarray(pred, float).ravel())),
                        float(np.linalg.norm(np.asarray(meas, float).ravel())))
        if not math.isfinite(magnitude):
            magnitude = 0.0
        # Normalised metrics are computed from O(1) numbers: their rounding is eps·O(1) absolute
        # even where the value is 0 (unit_scale); the others round relative to |q| and to L‖x‖.
        unit = 1.0 if unit_scale(n) else 0.0
        floor = ROUNDING * eps * (magnitude + L * scale_x + unit) + NOISE_SAFETY * noise[n]
        if n == "value":  # each loss term is rounded at eps × its logits' size
            floor += ROUNDING * eps * _output_scale(problem, params)
        bound = (SAFETY * L * delta if mu_known else math.inf) + floor
        basis = "certificate"
        if n in deg_slopes and deg_slopes[n] > FLAT_RTOL * (L + magnitude / scale_x):
            basis = "flat"  # varies along a zero mode beyond symmetry: not determined by the point
        bound = bound / scale
        ok = bool(error <= bound) and basis != "flat" and mu_known
        rows.append(Row(n, pred, meas, error, bound, ok, basis=basis))
    return rows


def _output_scale(problem, params) -> float:
    outputs = getattr(problem, "outputs", None)
    if outputs is None:
        return 0.0
    try:
        return float(np.max(np.abs(np.asarray(outputs(params)))))
    except Exception:  # a problem whose outputs need more than params
        return 0.0


# ---- certified solve ---------------------------------------------------------------------------

def escape_saddles(problem, solver, solution, *, gtol: float = 1e-10, max_steps: int = 10_000,
                   max_escapes: int = 3, restarts: int = 2):
    """Polish ``solution``: while its certificate finds negative curvature (a saddle the solver
    stopped at), step along the eigenvector (a short line search over ±t v, tangent, retracted),
    solve again, and certify again. Also restarts a solve that stopped short of ``gtol``.

    Returns ``(solution, certificate, escapes)``; the certificate is None where the point is not
    finite. The hook a multi-start can call on its best run.
    """
    from ufm.solvers import Status, solve

    sol, escapes, cert = solution, 0, None
    for _ in range(restarts):
        if int(np.asarray(sol.status)) in (Status.CONVERGED, Status.NONFINITE):
            break
        sol = _resolve(problem, solver, sol, gtol, max_steps)
    while True:
        if int(np.asarray(sol.status)) == Status.NONFINITE:
            return sol, None, escapes
        cert = landscape.certify(problem, sol.params)
        if not cert.is_saddle or cert.negative_direction is None or escapes >= max_escapes:
            return sol, cert, escapes
        start = _line_search(problem, sol.params, cert.negative_direction, float(sol.value))
        if start is None:
            return sol, cert, escapes
        escapes += 1
        steps = sol.num_steps
        sol = solve(problem, solver, start, gtol=gtol, max_steps=max_steps)
        for _ in range(restarts):
            if int(np.asarray(sol.status)) in (Status.CONVERGED, Status.NONFINITE):
                break
            sol = _resolve(problem, solver, sol, gtol, max_steps)
        sol = sol._replace(num_steps=sol.num_steps + steps)


def _resolve(problem, solver, sol, gtol, max_steps):
    from ufm.solvers import solve

    steps = sol.num_steps
    new = solve(problem, solver, sol.params, gtol=gtol, max_steps=max_steps)
    return new._replace(num_steps=new.num_steps + steps)


def _line_search(problem, params, direction, value):
    """The lowest of R_x(±t v) over t ∈ ‖x‖·{1e-3, …, 1} (v the unit negative-curvature direction),
    or None if none is lower than F(x)."""
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    v = np.asarray(direction, np.float64)
    v = v / np.linalg.norm(v)
    size = max(float(np.linalg.norm(np.asarray(flat))), 1.0)
    best, best_value = None, value
    for t in size * np.array([1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0]):
        for sign in (1.0, -1.0):
            x = problem.manifold.retraction(params, unravel(jax.numpy.asarray(sign * t * v, flat.dtype)))
            f = float(objective(problem, x))
            if math.isfinite(f) and f < best_value:
                best, best_value = x, f
    return best


def certified_solve(problem, solver, params, *, gtol: float = 1e-10, max_steps: int = 10_000,
                    max_escapes: int = 3, restarts: int = 2):
    """Solve, certify, and escape saddles: :func:`ufm.solve` followed by :func:`escape_saddles`.

    Returns the final :class:`ufm.Solution`; a point where the certificate still finds negative
    curvature after ``max_escapes`` escapes is returned as it is (``compare`` then fails its
    ``hessian_min_eig`` row: a saddle never passes).

    Examples:
        >>> import jax, ufm
        >>> p = ufm.UFM(3, 2, 3, ufm.losses.CrossEntropy(), 1e-2, 1e-2)
        >>> sol = certified_solve(p, ufm.solvers.LBFGS(), p.init(jax.random.key(0)), gtol=1e-10)
        >>> ufm.compare(p, sol, ufm.theory.predict(p)).ok
        True
    """
    from ufm.solvers import solve

    sol = solve(problem, solver, params, gtol=gtol, max_steps=max_steps)
    return escape_saddles(problem, solver, sol, gtol=gtol, max_steps=max_steps,
                          max_escapes=max_escapes, restarts=restarts)[0]
