"""Test configuration (DESIGN.md, Tests): float64 everywhere, no silent rank promotion, and strict
dtype promotion (mixing int32 with int64, or float32 with float64, is an error rather than a silent
upcast; Python scalars stay weakly typed). Library code never touches ``jax.config``: optax's own
int32 step counters are scoped to standard promotion inside the solvers
(``ufm.solvers._common.optax_promotion``)."""

import os

import jax

# The CLI's persistent compile cache stays out of the tests (a test run must not depend on, nor
# write to, the user's cache); the cache tests opt back in explicitly (UFM_NO_CACHE=0).
os.environ.setdefault("UFM_NO_CACHE", "1")

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "strict")
