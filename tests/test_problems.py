"""UFM construction, validation and gradients (Taylor checks)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ufm

from helpers import taylor_slope


@pytest.mark.parametrize("kwargs, match", [
    (dict(num_classes=1), "num_classes"),
    (dict(num_classes=2.0), "num_classes"),
    (dict(num_per_class=0), "num_per_class"),
    (dict(num_per_class=(3, 2)), "one count per class"),
    (dict(num_per_class=(3, 0, 1)), r"num_per_class\[1\]"),
    (dict(dim=0), "dim"),
    (dict(lambda_W=-1e-3), "lambda_W"),
    (dict(lambda_H=float("inf")), "lambda_H"),
    (dict(lambda_b=-1.0), "lambda_b"),
    (dict(loss="ce"), "loss"),
    (dict(loss=ufm.losses.PickAllLabel()), "loss"),
    (dict(bias=1), "bias"),
    (dict(bias=False, lambda_b=0.1), "lambda_b"),
])
def test_validation_names_the_argument(kwargs, match):
    base = dict(num_classes=3, num_per_class=2, dim=3, loss=ufm.losses.MSE(), lambda_W=1e-2, lambda_H=1e-2)
    with pytest.raises(ValueError, match=match):
        ufm.UFM(**{**base, **kwargs})


def test_labels_and_counts():
    p = ufm.UFM(3, (2, 1, 3), 2, ufm.losses.CrossEntropy(), 1e-2, 1e-2)
    np.testing.assert_array_equal(p.labels, [0, 0, 1, 2, 2, 2])
    assert p.num_samples == 6 and not p.balanced
    assert ufm.UFM(3, (2, 2, 2), 2, ufm.losses.MSE(), 1e-2, 1e-2).balanced


def test_objective_hand_value():
    p = ufm.UFM(2, 1, 2, ufm.losses.MSE(), 0.2, 0.4, lambda_b=0.6)
    params = p.params(W=np.eye(2), H=2 * np.eye(2), b=np.array([1.0, 0.0]))
    # outputs [[3,0],[1,2]], targets I: fit = mean(½(4+0), ½(1+1)) = 1.5
    expected = 1.5 + 0.1 * 2 + 0.2 * 8 + 0.3 * 1
    assert float(p.value(params)) == pytest.approx(expected, rel=1e-15)


@pytest.mark.parametrize("loss", [ufm.losses.MSE(), ufm.losses.CrossEntropy(),
                                  ufm.losses.LabelSmoothing(0.2), ufm.losses.Focal(2.0)])
@pytest.mark.parametrize("bias", [True, False])
def test_gradient_and_hessian_taylor_slopes(loss, bias):
    p = ufm.UFM(3, 2, 4, loss, 1e-2, 2e-2, lambda_b=0.1 if bias else 0.0, bias=bias)
    x = p.init(jax.random.key(0), scale=1.0)
    v = p.init(jax.random.key(1), scale=1.0)
    if bias:
        v = v._replace(b=jax.random.normal(jax.random.key(2), (3,)))

    def f(x, eps):
        return float(p.value(jax.tree.map(lambda a, b: a + eps * b, x, v)))

    g = jax.grad(p.value)(x)
    gv = sum(float(jnp.vdot(a, b)) for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(v)))
    hv = ufm.landscape.hvp(p, x, v)
    vhv = sum(float(jnp.vdot(a, b)) for a, b in zip(jax.tree.leaves(hv), jax.tree.leaves(v)))
    assert taylor_slope(f, x, v, gv) == pytest.approx(2.0, abs=0.1)
    assert taylor_slope(f, x, v, gv, vhv) == pytest.approx(3.0, abs=0.1)


def test_problem_is_a_pytree_with_hyperparameter_leaves():
    p = ufm.UFM(3, 2, 4, ufm.losses.Focal(2.0), 1e-2, 2e-2, lambda_b=0.1)
    leaves = jax.tree.leaves(p)
    floats = [x for x in leaves if np.ndim(x) == 0]
    assert sorted(float(x) for x in floats) == sorted([2.0, 1e-2, 2e-2, 0.1])
    # and the labels: an int leaf (an argument of compiled solves), class-major
    (labels,) = [x for x in leaves if np.ndim(x) == 1]
    assert labels.dtype == np.int32 and np.array_equal(np.asarray(labels), [0, 0, 1, 1, 2, 2])


def test_config_is_complete():
    cfg = ufm.UFM(3, (2, 1, 1), 4, ufm.losses.LabelSmoothing(0.1), 1e-2, 2e-2).config()
    assert cfg == dict(model="ufm", num_classes=3, num_per_class=(2, 1, 1), dim=4,
                       loss={"name": "ls", "alpha": 0.1}, lambda_W=1e-2, lambda_H=2e-2,
                       lambda_b=0.0, bias=True)


@pytest.mark.parametrize("name", ["lambda_W", "lambda_H", "lambda_b"])
@pytest.mark.parametrize("bad", [None, "0.1", True, [0.1], 0.1 + 0j, np.ones(2)])
def test_decays_refuse_non_scalars_by_name(name, bad):
    base = dict(num_classes=3, num_per_class=2, dim=3, loss=ufm.losses.CrossEntropy(),
                lambda_W=1e-2, lambda_H=1e-2)
    with pytest.raises(ValueError, match=name):
        ufm.UFM(**{**base, name: bad})


def test_loss_is_required():
    with pytest.raises(TypeError):
        ufm.UFM(3, 2, 3, lambda_W=1e-2, lambda_H=1e-2)


def test_init_scale_default_is_half():
    p = ufm.UFM(4, 50, 8, ufm.losses.MSE(), 1e-2, 1e-2)
    params = p.init(jax.random.key(0))
    assert float(jnp.std(params.H)) == pytest.approx(0.5, rel=0.05)
    assert float(jnp.std(p.init(jax.random.key(0), scale=2.0).H)) == pytest.approx(1.0 * 2.0, rel=0.05)


@pytest.mark.parametrize("problem", [
    ufm.UFM(3, (2, 1, 1), 4, ufm.losses.LabelSmoothing(0.1), 1e-2, 2e-2),
    ufm.UFM(4, 3, 3, ufm.losses.Focal(1.5), 3e-3, 2e-2, lambda_b=0.2),
    ufm.UFM(3, 2, 2, ufm.losses.MSE(), 1e-2, 1e-2, bias=False),
    ufm.UFM(3, 2, 2, ufm.losses.CrossEntropy(), 1e-2, 1e-2),
], ids=["ls-imbalanced", "fl-regbias", "mse-nobias", "ce"])
def test_from_config_inverts_config(problem):
    import json
    cfg = problem.config()
    assert ufm.UFM.from_config(cfg) == problem
    again = ufm.UFM.from_config(json.loads(json.dumps(cfg)))  # through JSON: tuples become lists
    assert again == problem and again.config() == cfg


def test_problems_with_array_fields_compare_and_hash_by_value():
    """A per-layer λ or a regression's targets are arrays: == compared them as a tuple and raised
    ("truth value of an array ... is ambiguous"); a config round trip of such a problem must be ==
    to it, with the same hash, and a problem differing in one entry must not."""
    import json
    rng = np.random.default_rng(0)
    problems = [ufm.DeepUFM(3, 2, (4, 4), ufm.losses.MSE(), [1e-2, 2e-2], 1e-2),
                ufm.RegressionUFM(rng.normal(size=(6, 2)), 2, 0.1, 0.2)]
    for p in problems:
        q = type(p).from_config(json.loads(json.dumps(p.config())))
        assert q == p and hash(q) == hash(p)
    assert problems[0] != ufm.DeepUFM(3, 2, (4, 4), ufm.losses.MSE(), [1e-2, 3e-2], 1e-2)
    assert problems[1] != ufm.RegressionUFM(np.asarray(problems[1].targets) + 1e-9, 2, 0.1, 0.2)
    assert ufm.losses.MSE() != ufm.losses.CrossEntropy()
    assert ufm.UFM(3, 2, 2, ufm.losses.MSE(), 1e-2, 1e-2) != ufm.UFM(3, 2, 2, ufm.losses.CrossEntropy(), 1e-2, 1e-2)


@pytest.mark.parametrize("cfg, match", [
    ([1, 2], "mapping"),
    (dict(model="regression"), "expected 'ufm'"),
    (dict(model="ufm", num_classes=3), "lacks"),
])
def test_from_config_refuses_other_configs(cfg, match):
    with pytest.raises(ValueError, match=match):
        ufm.UFM.from_config(cfg)
    bad_loss = {**ufm.UFM(3, 2, 3, ufm.losses.MSE(), 1e-2, 1e-2).config(), "loss": {"name": "hinge"}}
    with pytest.raises(ValueError, match="config loss"):
        ufm.UFM.from_config(bad_loss)


def test_a_problem_too_large_for_memory_is_refused_at_construction():
    with pytest.raises(ValueError, match="GiB"):
        ufm.UFM(100_000, 1000, 512, ufm.losses.CrossEntropy(), 1e-3, 1e-3)


def test_large_ce_problem_has_no_dense_label_constant():
    """K = 1000, n = 100, d = 512 (N = 10⁵) constructs, and its compiled objective holds no
    [N]- or [N, K]-sized constant, even when ``p.value`` is jitted with the problem closed over:
    the labels are then an iota built in the graph (passed as an argument, they are the problem's
    int leaf: tests/test_driver_speed.py). Lowered from shapes only (nothing of size N·K is
    allocated here)."""
    p = ufm.UFM(1000, 100, 512, ufm.losses.CrossEntropy(), 1e-3, 1e-3)
    shapes = jax.eval_shape(lambda: p.init(jax.random.key(0)))
    text = jax.jit(p.value).lower(shapes).as_text()
    assert len(text) < 50_000, len(text)  # a 10⁵-entry label constant would print ≥ 10⁵ characters
    import re
    literals = re.findall(r"constant dense<([^>]*)>", text)
    assert literals and max(len(x) for x in literals) < 100, literals  # splats and scalars only


@pytest.mark.slow
def test_large_ce_problem_solves_a_few_steps():
    p = ufm.UFM(1000, 100, 512, ufm.losses.CrossEntropy(), 1e-3, 1e-3)
    sol = ufm.solve(p, ufm.solvers.GradientDescent(1e-2), p.init(jax.random.key(0)), max_steps=2,
                    gtol=1e-12)
    assert int(sol.num_steps) == 2 and np.isfinite(float(sol.value))


def test_tree_structures_of_different_classes_differ():
    """Two problems that differ only in the loss's class must never share a compiled program:
    their tree structures compare unequal (jax.tree_util.register_dataclass made MSE() and
    CrossEntropy() -- and LabelSmoothing/Focal -- structurally equal, and `ufm verify` once
    measured MSE rows with a program compiled for a CE problem of the same shapes)."""
    import itertools

    import jax

    import ufm

    losses = [ufm.losses.MSE(), ufm.losses.CrossEntropy(), ufm.losses.LabelSmoothing(0.1),
              ufm.losses.Focal(2.0)]
    structures = [jax.tree_util.tree_structure(ufm.UFM(4, 5, 3, loss, 1e-2, 1e-2)) for loss in losses]
    for (i, a), (j, b) in itertools.combinations(enumerate(structures), 2):
        assert a != b, (losses[i], losses[j])
    pal = [ufm.losses.PickAllLabel(), ufm.losses.PickAllLabelNormalised()]
    a, b = (jax.tree_util.tree_structure(ufm.MultiLabelUFM.balanced(3, {1: 2}, 3, loss, 1e-2, 1e-2))
            for loss in pal)
    assert a != b
    solvers = [ufm.solvers.LBFGS(), ufm.solvers.TrustRegion(), ufm.solvers.GradientDescent(0.1),
               ufm.solvers.Adam(0.1), ufm.solvers.RiemannianGradientDescent()]
    for s, t in itertools.combinations(solvers, 2):
        assert jax.tree_util.tree_structure(s) != jax.tree_util.tree_structure(t), (s, t)
    # the same class with other hyperparameter values keeps one structure (one compilation)
    assert structures[0] == jax.tree_util.tree_structure(ufm.UFM(4, 5, 3, ufm.losses.MSE(), 0.5, 0.2))


def test_objective_is_never_computed_with_another_loss():
    """The compiled objective of an MSE problem and of a CE problem of the same shapes stay apart."""
    import jax
    import numpy as np

    import ufm
    from ufm.metrics import objective

    x = ufm.UFM(4, 5, 3, ufm.losses.MSE(), 1e-2, 1e-2).init(jax.random.key(0))
    for loss in (ufm.losses.CrossEntropy(), ufm.losses.MSE(), ufm.losses.CrossEntropy()):
        p = ufm.UFM(4, 5, 3, loss, 1e-2, 1e-2)
        assert np.isclose(float(objective(p, x)), float(p.value(x)), rtol=1e-13, atol=0)
