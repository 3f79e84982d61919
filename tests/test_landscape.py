"""Landscape facts (docs/theory/ce-family.md): the Hessian at the origin of the two-factor models."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ufm
from ufm import landscape


def _origin(problem, b0=0.0):
    K, N, d = problem.num_classes, problem.num_samples, problem.dim
    return problem.params(jnp.zeros((K, d)), jnp.zeros((N, d)),
                          jnp.full((K,), b0) if problem.bias else None)


def _lambda_min_formula(lw, lh, K, n, g0):
    return (lw + lh) / 2 - math.sqrt(((lw - lh) / 2) ** 2 + g0 ** 2 / (K * K * n))


@pytest.mark.parametrize("loss, g0, bias, lb", [
    (ufm.losses.CrossEntropy(), 1.0, True, 0.1),
    (ufm.losses.MSE(), 1.0, False, 0.0),
    (ufm.losses.MSE(), 1.0, True, 0.3),
    (ufm.losses.LabelSmoothing(0.2), 0.8, True, 0.1),
])
def test_origin_smallest_eigenvalue(loss, g0, bias, lb):
    K, n, d, lw, lh = 3, 2, 3, 0.05, 0.2
    problem = ufm.UFM(K, n, d, loss, lw, lh, lambda_b=lb, bias=bias)
    b0 = 1 / (K * (1 + lb)) if isinstance(loss, ufm.losses.MSE) and bias else 0.0
    origin = _origin(problem, b0)
    grad = ufm.solvers.value_and_riemannian_grad(problem, origin)[1]
    assert max(float(jnp.max(jnp.abs(g))) for g in (grad.W, grad.H)) < 1e-15  # critical point
    evals = ufm.landscape.hessian_eigenvalues(problem, origin)
    wh = evals  # the b block adds eigenvalues ≥ its own curvature; compare the smallest
    assert wh[0] == pytest.approx(_lambda_min_formula(lw, lh, K, n, g0), abs=1e-14)


def test_focal_origin_threshold():
    K, gamma = 4, 2.0
    g_fl = ufm.theory.plain.focal_threshold(K, gamma)
    expected = (1 - 1 / K) ** gamma * (1 + gamma * math.log(K) / (K - 1))
    assert g_fl == pytest.approx(expected, rel=1e-15)
    problem = ufm.UFM(K, 2, 4, ufm.losses.Focal(gamma), 0.05, 0.2, lambda_b=0.1)
    evals = ufm.landscape.hessian_eigenvalues(problem, _origin(problem))
    assert evals[0] == pytest.approx(_lambda_min_formula(0.05, 0.2, K, 2, g_fl), abs=1e-14)


def test_origin_is_strict_saddle_iff_below_threshold():
    K, n, d = 3, 2, 3
    for lam, expected in [(0.1, "strict saddle"), (0.5, "local minimum (strict, modulo symmetry)")]:
        problem = ufm.UFM(K, n, d, ufm.losses.CrossEntropy(), lam, lam, lambda_b=0.1)
        # Kτ = K √n λ: 0.42 (saddle), 2.1 (minimum)
        assert ufm.landscape.classify_critical_point(problem, _origin(problem)).verdict == expected
    problem = ufm.UFM(K, n, d, ufm.losses.CrossEntropy(), 0.1, 0.1, lambda_b=0.1)
    lam, direction = ufm.landscape.escape_direction(problem, _origin(problem))
    assert lam < 0 and float(jnp.sum(direction.W ** 2) + jnp.sum(direction.H ** 2)) > 0.99


def test_rounding_residue_at_the_origin_is_not_a_symmetry_orbit():
    """A point converged to W = H = 0 sits ~1e-13 from it: its rotation tangents are that small and
    must not count as d(d-1)/2 symmetry directions (the orbit of the origin is a point); a genuine
    orbit keeps its full dimension d(d-1)/2 - (d-r)(d-r-1)/2."""
    import jax
    import numpy as np

    import ufm
    from ufm import landscape

    p = ufm.UFM(4, 5, 3, ufm.losses.MSE(), 0.5, 0.5, bias=False)
    rng = np.random.default_rng(0)
    tiny = p.params(1e-13 * rng.standard_normal((4, 3)), 1e-13 * rng.standard_normal((20, 3)))
    assert landscape.symmetry_directions(p, tiny).shape[1] == 0
    x = p.init(jax.random.key(0))
    assert landscape.symmetry_directions(p, x).shape[1] == landscape.rotation_orbit_dimension(3, 3) == 3


def test_params_of_another_problem_are_refused_by_name():
    """Params of another problem (9 samples for a 6-sample problem) failed deep inside with a
    JAX broadcasting error, and compare returned a 'measurement failed' report."""
    p = ufm.UFM(3, 2, 3, ufm.losses.CrossEntropy(), 1e-2, 1e-2)
    other = ufm.UFM(3, 3, 3, ufm.losses.CrossEntropy(), 1e-2, 1e-2).init(jax.random.key(0))
    pred = ufm.theory.predict(p)
    calls = {"certify": lambda: landscape.certify(p, other),
             "classify": lambda: landscape.classify_critical_point(p, other),
             "hessian": lambda: landscape.hessian(p, other),
             "hvp": lambda: landscape.hvp(p, other, other),
             "escape_direction": lambda: landscape.escape_direction(p, other),
             "compare": lambda: ufm.compare(p, other, pred)}
    for name, call in calls.items():
        with pytest.raises(ValueError, match=r"params\.H must have shape \(6, 3\)"):
            call()
    good = p.init(jax.random.key(0))
    with pytest.raises(ValueError, match="^v must have the structure"):
        landscape.hvp(p, good, np.ones(3))


def test_every_entry_point_refuses_other_and_nonfinite_params():
    """symmetry_directions, symmetry_dimension and smallest_eigenpair took params of another
    problem silently (a basis / a count for the wrong point); a NaN point raised LinAlgError from
    an SVD (classify) or came back as an empty, unconverged Eigenpairs (extreme_eigenpairs).
    compare still reports a non-finite point instead of raising."""
    p = ufm.UFM(3, 2, 3, ufm.losses.CrossEntropy(), 1e-2, 1e-2)
    other = ufm.UFM(3, 2, 4, ufm.losses.CrossEntropy(), 1e-2, 1e-2).init(jax.random.key(0))
    for call in (landscape.symmetry_directions, landscape.symmetry_dimension,
                 landscape.smallest_eigenpair):
        with pytest.raises(ValueError, match=r"params\.W must have shape \(3, 3\)"):
            call(p, other)
    x = p.init(jax.random.key(0))
    bad = x._replace(W=x.W.at[0, 0].set(jnp.nan))
    for call in (landscape.classify_critical_point, landscape.extreme_eigenpairs,
                 landscape.symmetry_directions):
        with pytest.raises(ValueError, match=r"params\.W must be finite"):
            call(p, bad)
    assert not ufm.compare(p, bad, ufm.theory.predict(p)).ok


def test_origin_is_critical_with_imbalanced_classes():
    """With imbalanced classes origin() put b = 1/(K(1+λ_b)) (MSE) or 0 (CE): not critical
    (gradient 0.24). The MSE bias at W = H = 0 minimises (1/2N)Σ‖b − y_i‖² + (λ_b/2)‖b‖²:
    b_k = (n_k/N)/(1+λ_b); a softmax bias has no closed form there and is refused."""
    counts = (1, 2, 3)
    for problem in (ufm.UFM(3, counts, 3, ufm.losses.MSE(), 0.05, 0.03, lambda_b=0.1),
                    ufm.DeepUFM(3, counts, (3, 3), ufm.losses.MSE(), 0.05, 0.03, lambda_b=0.1)):
        x = landscape.origin(problem)
        np.testing.assert_allclose(x.b, np.array(counts) / 6 / 1.1, rtol=1e-15)
        grad = jax.flatten_util.ravel_pytree(jax.jit(jax.grad(problem.value))(x))[0]
        assert float(jnp.max(jnp.abs(grad))) < 1e-15
    for problem in (ufm.UFM(3, counts, 3, ufm.losses.CrossEntropy(), 0.05, 0.03),
                    ufm.DeepUFM(3, counts, (3, 3), ufm.losses.CrossEntropy(), 0.05, 0.03)):
        with pytest.raises(ValueError, match="needs balanced classes"):
            landscape.origin(problem)
    assert landscape.origin(ufm.UFM(3, counts, 3, ufm.losses.CrossEntropy(), 0.05, 0.03,
                                    bias=False)).b is None


def test_escape_step_and_certify_refuse_meaningless_settings():
    """escape_step took steps=() or NaN and then said 'no step lowers the objective' (a false
    statement about the landscape), and negative steps silently; certify(num_low=-1) sliced off
    the last low direction (above[:-1]) instead of refusing."""
    p = ufm.UFM(3, 2, 3, ufm.losses.CrossEntropy(), 0.05, 0.05)
    x = landscape.origin(p)
    for steps in [(), (float("nan"),), (-1.0,), (0.0,), "abc", None]:
        with pytest.raises(ValueError, match="steps must be"):
            landscape.escape_step(p, x, steps=steps)
    with pytest.raises(ValueError, match="num_low must be an integer >= 0"):
        landscape.certify(p, x, num_low=-1)
