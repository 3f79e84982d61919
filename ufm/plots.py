"""Small matplotlib helpers for experiments and notebooks: Gram heatmaps, theory against solver.

Every helper draws on an ``Axes`` it is given and returns it; nothing here creates a window or
calls ``plt.show``, so the helpers work under the non-interactive "Agg" backend (scripts, CI).

Examples:
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import matplotlib.pyplot as plt, numpy as np
    >>> fig, (a, b) = plt.subplots(1, 2)
    >>> _ = gram_heatmap(a, np.eye(3) - 1 / 3, "centring")
    >>> _ = theory_vs_solver(b, [1, 2], [1.0, 2.0], [1.0, 2.1], "x")
    >>> plt.close(fig)
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np


def gram_heatmap(ax, G, title: str = "", *, cmap: str = "RdBu_r", colorbar: bool = True,
                 annotate: Optional[bool] = None, fmt: str = "{:.2f}"):
    """Heatmap of a Gram matrix (e.g. W Wᵀ) on a colour scale symmetric about 0.

    Args:
        ax: matplotlib Axes.
        G: [K, K] array.
        title: axes title.
        cmap: a diverging colour map (0 is white).
        colorbar: whether to add a colour bar beside the axes.
        annotate: write the entries in the cells (default: when K ≤ 6).
        fmt: format of the annotations.

    Returns:
        The AxesImage.
    """
    G = np.asarray(G, dtype=float)
    if G.ndim != 2:
        raise ValueError(f"G must be a 2-D matrix, got shape {G.shape}")
    vmax = float(np.max(np.abs(G))) or 1.0
    im = ax.imshow(G, cmap=cmap, vmin=-vmax, vmax=vmax, interpolation="nearest")
    ax.set_title(title)
    K = G.shape[0]
    ax.set_xticks(range(G.shape[1]))
    ax.set_yticks(range(K))
    if annotate if annotate is not None else K <= 6:
        for i in range(K):
            for j in range(G.shape[1]):
                ax.text(j, i, fmt.format(G[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if abs(G[i, j]) > 0.6 * vmax else "black")
    if colorbar:
        ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return im


def theory_vs_solver(ax, x: Sequence[float], theory: Sequence[float], measured: Sequence[float],
                     label: str = "", *, x_theory: Optional[Sequence[float]] = None,
                     color=None, logx: bool = True):
    """A theory curve (line) against solver results (markers) on the same axes.

    Args:
        ax: matplotlib Axes.
        x: abscissae of the solver points (and of ``theory`` unless ``x_theory`` is given).
        theory: closed-form values, at ``x`` or at ``x_theory`` (a finer grid for a smooth curve).
        measured: solver values at ``x``.
        label: legend label; the line is labelled "<label> theory", the markers "<label> solver".
        x_theory: optional abscissae of ``theory``.
        color: line and marker colour (default: the next colour of the axes' cycle).
        logx: logarithmic x axis.

    Returns:
        (line, markers) artists.
    """
    x = np.asarray(x, dtype=float)
    xt = x if x_theory is None else np.asarray(x_theory, dtype=float)
    theory, measured = np.asarray(theory, dtype=float), np.asarray(measured, dtype=float)
    if theory.shape != xt.shape or measured.shape != x.shape:
        raise ValueError(f"shapes do not match: x {x.shape}, theory {theory.shape} (x_theory "
                         f"{xt.shape}), measured {measured.shape}")
    (line,) = ax.plot(xt, theory, "-", color=color, lw=1.5, label=f"{label} theory".strip())
    (pts,) = ax.plot(x, measured, "o", color=line.get_color(), mfc="none", ms=6,
                     label=f"{label} solver".strip())
    if logx:
        ax.set_xscale("log")
    return line, pts


OKABE_ITO = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")


def spectral_density_plot(ax, density, *, exact: Optional[Sequence[float]] = None,
                          width: Optional[float] = None, grid: Optional[Sequence[float]] = None,
                          label: str = "SLQ", color: str = OKABE_ITO[0], logy: bool = True):
    """Spectral density of a Hessian (a :class:`ufm.landscape.SpectralDensity`) as eigenvalue
    counts per unit λ, with the exact spectrum, smoothed by the same Gaussian, overlaid.

    The symmetry zeros appear as a spike at 0 and the negative eigenvalues of a saddle left of a
    dotted line at λ = 0.

    Args:
        ax: matplotlib Axes.
        density: the SLQ result (``nodes``, ``weights``, ``dim``, ``density(grid, width)``).
        exact: all eigenvalues (a dense spectrum of a small problem), or None.
        width: Gaussian smoothing width (default 1% of the spectral range).
        grid: λ values to draw at (default 800 points over the range).
        label, color: of the SLQ curve. logy: logarithmic count axis.

    Returns:
        the SLQ line artist.
    """
    # Nodes of negligible weight (a Krylov space exhausted by few distinct eigenvalues leaves
    # decoupled Ritz values) carry no mass: they do not set the range.
    nodes = np.asarray(density.nodes, float)[np.asarray(density.weights) > 1e-10]
    lo = float(nodes.min()) if exact is None else min(float(nodes.min()), float(np.min(exact)))
    hi = float(nodes.max()) if exact is None else max(float(nodes.max()), float(np.max(exact)))
    span = max(hi - lo, 1e-12)
    width = 0.01 * span if width is None else float(width)
    grid = np.linspace(lo - 5 * width, hi + 5 * width, 800) if grid is None else np.asarray(grid, float)
    counts = density.dim * density.density(grid, width)
    floor = 1e-3 * density.dim / span if logy else 0.0
    (line,) = ax.plot(grid, np.maximum(counts, floor), "-", color=color, lw=1.6, label=label)
    if exact is not None:
        ex = np.asarray(exact, float)
        z = (grid[:, None] - ex[None, :]) / width
        ref = np.exp(-0.5 * z ** 2).sum(axis=1) / (width * np.sqrt(2 * np.pi))
        ax.plot(grid, np.maximum(ref, floor), "--", color=OKABE_ITO[1], lw=1.2, label="exact (dense)")
    ax.axvline(0.0, color="0.4", lw=0.8, ls=":")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(r"Hessian eigenvalue $\lambda$")
    ax.set_ylabel(r"eigenvalue density $\rho(\lambda)\cdot\dim$")
    return line
