"""Reference geometries (docs/theory/conventions.md): simplex ETF, orthogonal frame, and a factor from a Gram.

Everything here is NumPy float64: closed forms never depend on JAX's precision settings.
Layout is sample-major (rows are classes), see DESIGN.md.
"""

from __future__ import annotations

import numpy as np


def centering(K: int) -> np.ndarray:
    """The centring matrix C_K = I_K − 11ᵀ/K."""
    return np.eye(K) - np.ones((K, K)) / K


def random_orthonormal(d: int, r: int, rng: np.random.Generator | None) -> np.ndarray:
    """A d×r matrix with orthonormal columns: the first r coordinate axes, or a random frame."""
    if r > d:
        raise ValueError(f"need d >= r for an orthonormal d x r frame, got d={d}, r={r}")
    if rng is None:
        return np.eye(d)[:, :r]
    q, rr = np.linalg.qr(rng.standard_normal((d, d)))
    return (q * np.sign(np.diag(rr)))[:, :r]


def simplex_etf(K: int, d: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """Unit-row simplex ETF W [K, d] with W Wᵀ = (K/(K−1)) C_K; needs d ≥ K−1.

    Examples:
        >>> W = simplex_etf(4, 3)
        >>> np.allclose(W @ W.T, 4 / 3 * centering(4))
        True
    """
    if K < 2 or d < K - 1:
        raise ValueError(f"a simplex ETF of K={K} vectors needs K >= 2 and d >= K-1, got d={d}")
    return factor_from_gram(K / (K - 1) * centering(K), d, rng)


def orthogonal_frame(K: int, d: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """Orthonormal rows W [K, d] with W Wᵀ = I_K; needs d ≥ K."""
    if d < K:
        raise ValueError(f"an orthogonal frame of K={K} vectors needs d >= K, got d={d}")
    return random_orthonormal(d, K, rng).T


def factor_from_gram(gram: np.ndarray, d: int, rng: np.random.Generator | None = None,
                     rtol: float = 1e-12) -> np.ndarray:
    """W [K, d] with W Wᵀ = gram (PSD): W = V_r Λ_r^{1/2} Qᵀ over the r positive eigenvalues.

    Raises:
        ValueError: if the rank of ``gram`` exceeds ``d``.
    """
    gram = np.asarray(gram, dtype=np.float64)
    evals, evecs = np.linalg.eigh((gram + gram.T) / 2)
    scale = max(float(np.max(np.abs(evals))), np.finfo(float).tiny)
    keep = evals > rtol * scale
    r = int(keep.sum())
    if r > d:
        raise ValueError(f"a Gram of rank {r} needs d >= {r}, got d={d}")
    factor = evecs[:, keep] * np.sqrt(evals[keep])
    return factor @ random_orthonormal(d, r, rng).T
