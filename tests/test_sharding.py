"""Sweeps split over several devices (simulated: 4 host devices in a fresh process) give the same
solutions as on one device, and the batch really is split."""

from helpers import run_script_for_json

SCRIPT = r'''
import os
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
import json
import jax
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
import numpy as np
import ufm

p = ufm.UFM(3, 2, 3, ufm.losses.CrossEntropy(), 1e-2, 1e-2)
lams = jnp.array([2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.3])  # 6 rows on 4 devices: padded to 8
start = p.init(jax.random.key(0))
one = ufm.sweep.vmap_solve(p, ufm.solvers.LBFGS(), start, {"lambda_W": lams}, gtol=1e-10)
split = ufm.sweep.vmap_solve(p, ufm.solvers.LBFGS(), start, {"lambda_W": lams}, gtol=1e-10,
                             devices="all")
ms_split = ufm.sweep.multi_start(p, ufm.solvers.LBFGS(), jax.random.key(1), 3, [0.5, 1.0],
                                 gtol=1e-10, devices="all")
ms_one = ufm.sweep.multi_start(p, ufm.solvers.LBFGS(), jax.random.key(1), 3, [0.5, 1.0], gtol=1e-10)
padded, batched, _ = ufm.sweep._batch_placement("all", 6)
vals = jax.device_put(ufm.sweep._pad_rows((lams,), padded), batched)
raw = ufm.sweep._vmap_solve(p, ufm.solvers.LBFGS(), start, vals, jnp.asarray(1e-10),
                            names=("lambda_W",), max_steps=10000, params_batched=False)
theory = [ufm.theory.predict(ufm.UFM(3, 2, 3, ufm.losses.CrossEntropy(), float(l), 1e-2)).value
          for l in lams]
print(json.dumps(dict(devices=len(jax.devices()), shape=list(split.value.shape),
                      same=np.asarray(one.value).tolist() == np.asarray(split.value).tolist(),
                      ms_same=bool(np.allclose(ms_one.value, ms_split.value, rtol=1e-13, atol=0)
                                   and np.array_equal(ms_one.num_steps, ms_split.num_steps)),
                      ms_shape=list(ms_split.value.shape), split_over=len(raw.value.sharding.device_set),
                      padded=padded, values=np.asarray(split.value).tolist(), theory=theory)))
'''


def test_sharded_sweep_matches_single_device():
    out = run_script_for_json(SCRIPT)
    assert out["devices"] == 4 and out["padded"] == 8 and out["split_over"] == 4
    assert out["shape"] == [6] and out["ms_shape"] == [6]
    # same seed, same result, however the batch is placed: the same steps, values to rounding
    # (a sharded program is compiled on its own, and may sum in another order: seen 1 ulp apart)
    assert out["same"] and out["ms_same"]
    for got, expected in zip(out["values"], out["theory"]):
        assert abs(got - expected) <= 1e-9 * abs(expected)
