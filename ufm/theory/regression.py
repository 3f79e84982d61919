"""Closed forms for the regression UFM (docs/theory/regression.md; Andriopoulos et al., NeurIPS 2024).

Convention:
    The library objective, in code layout (Y [N, t], H [N, d], W [t, d], b [t] unregularised):

        F(W, H, b) = (1/(2N))‖H Wᵀ + 1 bᵀ − Y‖_F² + (λ_W/2)‖W‖_F² + (λ_H/2)‖H‖_F²,

    the H penalty a sum over samples. Andriopoulos et al. write the feature penalty as
    (λ_H^P/(2N))‖H‖², i.e. λ_H^P = N λ_H (:func:`lambda_H_to_paper`), and their threshold
    c^P = λ_W λ_H^P becomes ``c = N λ_H λ_W`` here; with that substitution the two objectives are
    identical (factor 1, docs/theory/conventions.md). Their formulas are in paper layout (H is d×N, Y is t×N);
    here ``outputs = H @ W.T + b`` is [N, t].

    Σ = ỸᵀỸ/N is the *centred* target covariance (Ỹ = Y − ȳ), with eigenvalues
    λ_min = λ_1 ≤ … ≤ λ_t = λ_max and eigenvectors u_j; s_j = (√λ_j − √c)_+.

    * b* = ȳ, and H* has zero column means.
    * W Wᵀ = √(Nλ_H/λ_W) Σ_j s_j u_j u_jᵀ (keep the d largest s_j when d < t).
    * H* = Ỹ (W Wᵀ + Nλ_H I)⁻¹ W, the outputs are ȳ + Ỹ Σ_j (1 − √(c/λ_j))_+ u_j u_jᵀ.
    * F* = Σ_j φ(λ_j), φ(λ) = √(cλ) − c/2 for kept λ > c, λ/2 otherwise.
    * Regimes (:data:`ufm.theory.REGIMES`): ``collapse`` (full rank t: c < λ_min and d ≥ t),
      ``partial-rank`` (0 < rank < t), ``zero`` (c ≥ λ_max: W = H = 0, F* = tr(Σ)/2).

References:
    G. Andriopoulos, Z. Dong, L. Guo, Z. Zhao, K. Ross, "The prevalence of neural collapse in
    neural multivariate regression", NeurIPS 2024 (UFM theorem; NRC1-NRC3).
    S. Rangamani, A. Unal, deep neural regression collapse (DNRC1-4), docs/theory/metrics.md.
"""

from __future__ import annotations

import math

import numpy as np

from ufm.theory._prediction import COLLAPSE, PARTIAL_RANK, ZERO, NoClosedForm, Prediction
from ufm.theory.frames import random_orthonormal
_PINV_RTOL_DNRC4 = 1e-3  # docs/theory/metrics.md: DNRC4 uses pinv(H, rtol=1e-3)


def lambda_H_to_paper(lambda_H: float, num_samples: int) -> float:
    """The paper's feature decay λ_H^P = N λ_H (Andriopoulos et al. penalise (λ_H^P/(2N))‖H‖²)."""
    return num_samples * lambda_H


def lambda_H_from_paper(lambda_H_paper: float, num_samples: int) -> float:
    """The library's λ_H = λ_H^P / N for a paper-normalised λ_H^P (docs/theory/conventions.md).

    Examples:
        >>> lambda_H_from_paper(0.5, 10)
        0.05
    """
    return lambda_H_paper / num_samples


def threshold_c(num_samples: int, lambda_W: float, lambda_H: float) -> float:
    """c = N λ_H λ_W (= the paper's c^P = λ_W λ_H^P): eigenvalues of Σ below c are dropped."""
    return num_samples * lambda_H * lambda_W


def threshold_product(targets) -> float:
    """P* = λ_max/N: the minimiser is non-zero iff P = λ_W λ_H < P*, i.e. c = N P < λ_max (§8).

    λ_max is the largest eigenvalue of the centred target covariance; d does not enter (the
    largest direction is the last one kept for every d ≥ 1).

    Examples:
        >>> Y = np.array([[1., 0.], [-1., 0.], [0., 2.], [0., -2.]])   # Σ = diag(0.5, 2), N = 4
        >>> threshold_product(Y)
        0.5
    """
    Y = np.asarray(targets, dtype=np.float64)
    return float(target_statistics(Y)[2][-1] / Y.shape[0])


def target_statistics(targets) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mean ȳ [t], centred covariance Σ = ỸᵀỸ/N [t, t], its ascending eigenvalues and eigenvectors.

    Eigenvalues that are negative by rounding are clipped to 0 (Σ is PSD).

    Examples:
        >>> Y = np.array([[1., 0.], [-1., 0.], [0., 2.], [0., -2.]]) + 3.0
        >>> ybar, cov, evals, _ = target_statistics(Y)
        >>> ybar.tolist(), evals.tolist()
        ([3.0, 3.0], [0.5, 2.0])
    """
    Y = np.asarray(targets, dtype=np.float64)
    if Y.ndim != 2:
        raise ValueError(f"targets must be a 2-D array [N, t], got shape {Y.shape}")
    mean = Y.mean(axis=0)
    Yc = Y - mean
    cov = Yc.T @ Yc / Y.shape[0]
    cov = (cov + cov.T) / 2
    evals, evecs = np.linalg.eigh(cov)
    # Eigenvalues at the rounding level of the decomposition are exact zeros of the data (low-rank
    # targets): report them as 0, so that what the theory says vanishes is predicted as 0.
    evals[evals <= 10 * len(evals) * np.finfo(np.float64).eps * max(float(evals.max()), 0.0)] = 0.0
    return mean, cov, evals, evecs


def kept_mask(eigenvalues, c: float, dim: int) -> np.ndarray:
    """Which eigen-directions carry a non-zero W: λ_j > c, and among those the d largest.

    Examples:
        >>> kept_mask([0.2, 0.5, 1.0], 0.3, 5).tolist(), kept_mask([0.2, 0.5, 1.0], 0.1, 2).tolist()
        ([False, True, True], [False, True, True])
    """
    lam = np.asarray(eigenvalues, dtype=np.float64)
    keep = lam > c
    if keep.sum() > dim:  # the d largest s_j are the d largest λ_j
        order = np.argsort(-lam, kind="stable")
        keep = np.zeros(lam.shape, bool)
        keep[order[:dim]] = True
    return keep


def regime(eigenvalues, c: float, dim: int | None = None) -> str:
    """``"collapse"`` (full rank t), ``"partial-rank"`` (0 < rank < t) or ``"zero"`` (rank 0).

    The thresholds are exact: an eigenvalue λ_j is kept iff λ_j > c, so c = λ_min is already
    partial rank and c = λ_max is zero. ``dim`` (d) caps the rank.

    Examples:
        >>> [regime([0.2, 0.5, 1.0], c) for c in (0.1, 0.2, 0.5, 0.99, 1.0)]
        ['collapse', 'partial-rank', 'partial-rank', 'partial-rank', 'zero']
    """
    lam = np.asarray(eigenvalues, dtype=np.float64)
    rank = int(kept_mask(lam, c, lam.size if dim is None else dim).sum())
    return ZERO if rank == 0 else (COLLAPSE if rank == lam.size else PARTIAL_RANK)


def shrunk_roots(eigenvalues, c: float, dim: int) -> np.ndarray:
    """s_j = (√λ_j − √c)_+ on the kept directions (:func:`kept_mask`), 0 elsewhere."""
    lam = np.asarray(eigenvalues, dtype=np.float64)
    return np.where(kept_mask(lam, c, dim), np.sqrt(lam) - math.sqrt(c), 0.0)


def optimal_value(eigenvalues, c: float, dim: int) -> float:
    """F* = Σ_j φ(λ_j) with φ = √(cλ) − c/2 on kept directions and λ/2 on the others.

    Examples:
        >>> optimal_value([1.0, 4.0], 1.0, 2)  # λ=1 dropped (λ ≤ c): 1/2; λ=4: 2 − 1/2
        2.0
    """
    lam = np.asarray(eigenvalues, dtype=np.float64)
    keep = kept_mask(lam, c, dim)
    return float(np.sum(np.where(keep, np.sqrt(c * lam) - c / 2, lam / 2)))


def predict_regression(targets, dim: int, lambda_W: float, lambda_H: float) -> Prediction:
    """Global minimiser of the regression UFM (docs/theory/regression.md) in rotation-invariant quantities.

    Args:
        targets: Y [N, t] (any real data; the centred covariance is used).
        dim: feature dimension d.
        lambda_W, lambda_H: weight decays in the library normalisation (both > 0).

    Returns:
        A :class:`Prediction` with ``value``; ``norm_W_sq``, ``norm_H_sq``, ``gram_W_spectrum``
        (descending) and ``bias`` (= ȳ) always; ``gram_W`` (W Wᵀ), ``gram_H`` (H Hᵀ, [N, N]) and
        ``outputs`` (H Wᵀ + b, [N, t]) when W Wᵀ is unique; unless W = 0, ``balance`` (relative
        ‖λ_W WᵀW − λ_H HᵀH‖ = 0), ``nrc1`` = ``nrc2`` = ``dnrc1`` = 0, ``dnrc2`` (CKA =
        Σλ_j s_j/(‖s‖‖λ‖)) and ``dnrc4`` (Σ of the dropped λ_j, over t); in the full-rank regime
        ``nrc3`` = 0, ``dnrc3`` = 1 and ``nrc3_gamma`` = c (γ only when Σ is not a multiple of I,
        where it is unidentifiable).
        ``scalars`` hold c, λ_min, λ_max, the rank, the scale √(Nλ_H/λ_W) and the paper's λ_H^P.

    Raises:
        NoClosedForm: if λ_W = 0 or λ_H = 0 (the infimum is then not attained, or every
            interpolating factorisation is optimal).

    Convention:
        See the module docstring: c = N λ_H λ_W, λ_H^P = N λ_H.

    References:
        Andriopoulos et al., NeurIPS 2024, the UFM theorem (converted and re-verified, docs/theory/regression.md).

    Examples:
        >>> Y = np.array([[1., 0.], [-1., 0.], [0., 2.], [0., -2.]])   # Σ = diag(0.5, 2)
        >>> p = predict_regression(Y, dim=2, lambda_W=0.1, lambda_H=0.5)   # c = 4·0.5·0.1 = 0.2
        >>> p.regime, abs(p.value - (0.2 ** 0.5 * (0.5 ** 0.5 + 2 ** 0.5) - 0.2)) < 1e-15
        ('collapse', True)
    """
    if lambda_W <= 0 or lambda_H <= 0:
        raise NoClosedForm("the regression UFM closed form needs lambda_W > 0 and lambda_H > 0 "
                           "(with a zero decay the infimum is not attained or every interpolating "
                           "factorisation is optimal, docs/theory/regression.md)")
    Y = np.asarray(targets, dtype=np.float64)
    N, t = Y.shape
    ybar, cov, lam, U = target_statistics(Y)
    Yc = Y - ybar
    c = threshold_c(N, lambda_W, lambda_H)
    scale = math.sqrt(N * lambda_H / lambda_W)
    keep = kept_mask(lam, c, dim)
    rank = int(keep.sum())
    s = np.where(keep, np.sqrt(lam) - math.sqrt(c), 0.0)
    omega = scale * s  # eigenvalues of W Wᵀ
    reg = regime(lam, c, dim)

    # d < t cutting through equal eigenvalues: W Wᵀ (and H Hᵀ, the outputs) are not unique.
    above = np.sort(lam[lam > c])[::-1]
    tie = dim < above.size and math.isclose(above[dim - 1], above[dim], rel_tol=1e-12)
    notes = []
    if dim < t and rank < int(np.sum(lam > c)):
        notes.append(f"d = {dim} < t = {t}: only the d largest s_j are kept (docs/theory/regression.md, derived)")
    if tie:
        notes.append("d < t cuts through equal eigenvalues of Σ: W Wᵀ is not unique; only its "
                     "spectrum and the value are compared")

    ratio = np.zeros(t)  # 1 − √(c/λ_j) on kept directions: the shrinkage of the fitted outputs
    ratio[keep] = 1.0 - np.sqrt(c / lam[keep])
    gram_W = (U * omega) @ U.T
    gram_H_core = np.zeros(t)  # H Hᵀ = Ỹ U diag(ω/(ω + Nλ_H)²) Uᵀ Ỹᵀ
    gram_H_core[keep] = omega[keep] / (omega[keep] + N * lambda_H) ** 2
    YU = Yc @ U

    q = dict(value=optimal_value(lam, c, dim),
             norm_W_sq=float(scale * s.sum()),
             norm_H_sq=float(math.sqrt(N * lambda_W / lambda_H) * s.sum()),
             gram_W_spectrum=np.sort(omega)[::-1], bias=ybar)
    if not tie:
        q.update(gram_W=gram_W, gram_H=(YU * gram_H_core) @ YU.T,
                 outputs=ybar[None, :] + (YU * ratio) @ U.T)
    if rank == 0:
        q.update(norm_W=0.0, norm_H=0.0)
    else:
        q.update(balance=0.0, nrc1=0.0, nrc2=0.0, dnrc1=0.0,
                 dnrc2=float(np.dot(lam, s) / (np.linalg.norm(s) * np.linalg.norm(lam))))
        # The fit of Ỹ by the span of H* leaves exactly the dropped directions; DNRC4's pinv cutoff
        # (1e-3 of σ_max(H)) keeps every direction of H* iff √(s_min/s_max) > 1e-3 (σ_j(H)² ∝ s_j).
        if math.sqrt(s[keep].min() / s.max()) > 10 * _PINV_RTOL_DNRC4:
            q["dnrc4"] = float(np.sum(lam[~keep]) / t)
        if rank == t:
            q.update(nrc3=0.0, dnrc3=1.0)
            if not math.isclose(lam[0], lam[-1], rel_tol=1e-9):
                q["nrc3_gamma"] = c
            else:
                notes.append("Σ is a multiple of I: NRC3's γ is unidentifiable (the objective is "
                             "flat in γ); only NRC3 = 0 is compared")

    def build(rng):
        W = np.zeros((t, dim))
        H = np.zeros((N, dim))
        if rank:
            Q = random_orthonormal(dim, rank, rng)  # [d, r]
            root = np.sqrt(omega[keep])
            W = (U[:, keep] * root) @ Q.T
            H = (YU[:, keep] * (root / (omega[keep] + N * lambda_H))) @ Q.T
        return dict(W=W, H=H, b=ybar.copy())

    scalars = dict(c=c, lambda_min=float(lam[0]), lambda_max=float(lam[-1]), rank=rank,
                   scale=scale, lambda_H_paper=lambda_H_to_paper(lambda_H, N), c_paper=c)
    return Prediction(value=q["value"], quantities=q, regime=reg,
                      geometry="zero" if rank == 0 else "regression", notes=tuple(notes),
                      params_builder=build, scalars=scalars)


__all__ = ["threshold_product", "lambda_H_to_paper", "lambda_H_from_paper", "threshold_c", "target_statistics",
           "kept_mask", "regime", "shrunk_roots", "optimal_value", "predict_regression"]
