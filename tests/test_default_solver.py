"""The default stepper (ufm.solvers.default_solver): which one, that it leaves strict saddles, and
that a capped truncated CG is counted and reported."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ufm
from ufm.cli_models import trust_region_notes


@pytest.mark.parametrize("problem, expected", [
    (ufm.UFM(3, 2, 3, ufm.losses.CrossEntropy(), 1e-2, 1e-2), "TrustRegion"),
    (ufm.UFM(3, 2, 3, ufm.losses.MSE(), 1e-2, 1e-2, bias=False), "TrustRegion"),
    (ufm.DeepUFM(3, 2, (4, 4), ufm.losses.MSE(), 1e-2, 1e-2, activation="identity"), "TrustRegion"),
    (ufm.DeepUFM(3, 2, (4,), ufm.losses.MSE(), 1e-2, 1e-2), "TrustRegion"),  # one layer: no ReLU
    (ufm.DeepUFM(3, 2, (4, 4), ufm.losses.MSE(), 1e-2, 1e-2), "LBFGS"),  # ReLU: kinks
    (ufm.SphericalUFM(4, 2, 5, ufm.losses.CrossEntropy(), temperature=0.5), "TrustRegion"),
])
def test_default_solver_choice(problem, expected):
    assert type(ufm.solvers.default_solver(problem)).__name__ == expected


def _perturbed(x, eps, seed):
    leaves, tree = jax.tree.flatten(x)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    return jax.tree.unflatten(tree, [a + eps * jax.random.normal(k, a.shape, a.dtype)
                                     for a, k in zip(leaves, keys)])


@pytest.mark.parametrize("problem", [
    # CE below the threshold Kτ < 1 (Kτ = K √n λ = 0.42): the origin is a strict saddle
    ufm.UFM(3, 2, 3, ufm.losses.CrossEntropy(), 1e-1, 1e-1),
    # MSE without bias below its threshold: the origin is a strict saddle too
    ufm.UFM(3, 2, 3, ufm.losses.MSE(), 1e-2, 1e-2, bias=False),
])
@pytest.mark.parametrize("eps", [1e-8, 1e-4])
def test_trust_region_leaves_the_origin_saddle(problem, eps):
    """Started next to a strict saddle the gradient is O(eps); the negative-curvature step of the
    truncated CG carries the iterate to the global minimum, whose value is the closed form."""
    pred = ufm.theory.predict(problem)
    zero = jax.tree.map(jnp.zeros_like, problem.init(jax.random.key(0)))
    assert ufm.landscape.hessian_eigenvalues(problem, zero)[0] < 0  # a strict saddle indeed
    for seed in range(2):
        sol = ufm.solve(problem, ufm.solvers.default_solver(problem), _perturbed(zero, eps, seed),
                        gtol=1e-11, max_steps=200)
        assert sol.status_name == "converged", (seed, sol.status_name)
        assert abs(float(sol.value) - pred.value) <= 1e-10 * abs(pred.value), (seed, float(sol.value))
        assert int(sol.state.inner.capped) == 0


def test_capped_truncated_cg_is_counted_and_reported():
    p = ufm.UFM(4, 5, 6, ufm.losses.CrossEntropy(), 5e-3, 5e-3)
    x0 = p.init(jax.random.key(0))
    tight = ufm.solvers.TrustRegion(max_inner=2)
    sol = ufm.solve(p, tight, x0, gtol=1e-10, max_steps=300)
    capped, steps = int(sol.state.inner.capped), int(sol.num_steps)
    assert 0 < capped <= steps + int(sol.state.inner.rejections)
    notes = trust_region_notes(tight, sol)
    assert len(notes) == 1 and f"{capped} subproblem(s)" in notes[0] and "max_inner = 2" in notes[0]
    free = ufm.solve(p, ufm.solvers.TrustRegion(), x0, gtol=1e-10, max_steps=300)
    assert free.status_name == "converged" and int(free.state.inner.capped) == 0
    assert trust_region_notes(ufm.solvers.TrustRegion(), free) == []
    # another stepper's state has no counter: no note
    assert trust_region_notes(ufm.solvers.LBFGS(), ufm.solve(p, ufm.solvers.LBFGS(), x0, max_steps=5)) == []
    assert np.isfinite(float(sol.value))


@pytest.mark.parametrize("K, n, d, seeds", [(4, 10, 8, 3), (10, 100, 64, 1)])
def test_trust_region_follows_negative_curvature_below_the_threshold(K, n, d, seeds):
    """At Kτ = 0.77 from a small start the iterate passes near the origin saddle. Truncated CG
    must follow the negative curvature it meets to the boundary (Steihaug), not keep its interior
    η: keeping it measured 15–39 steps at K = 4 and 831–855 at paper size, following it 9–13."""
    lam = 0.77 / (K * np.sqrt(n))
    p = ufm.UFM(K, n, d, ufm.losses.CrossEntropy(), lam, lam)
    target = ufm.theory.predict(p).value
    for seed in range(seeds):
        sol = ufm.solve(p, ufm.solvers.TrustRegion(), p.init(jax.random.key(seed), scale=0.1),
                        gtol=1e-10, max_steps=5000)
        assert sol.status_name == "converged" and int(sol.num_steps) <= 20, (seed, int(sol.num_steps))
        assert abs(float(sol.value) - target) <= 1e-12 * target
