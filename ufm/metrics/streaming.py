"""Streaming collapse metrics: NC1-NC4, CDNV and NRC1-3 of features that arrive batch by batch.

A real network's features rarely fit in memory at once. The accumulators here read them one batch
at a time and keep only what the metrics need, in float64, whatever the input dtype (float16,
bfloat16, float32, float64; NumPy or JAX arrays):

* **classification** (:func:`class_stats_init` / :func:`class_stats_update`): per-class counts
  n_k, means μ_k [K, d], the traces of the per-class scatter matrices [K] and their sum, the
  within-class scatter Σ_k Σ_{i∈k} (h_i − μ_k)(h_i − μ_k)ᵀ [d, d]. Memory O(K d + d²), never O(N).
* **NC4** (:func:`nc4_init` / :func:`nc4_update`): a second pass over the data (training or test
  features) against fixed class means (the training means, from the first pass) and classifier.
* **regression** (:func:`regression_stats_init` / :func:`regression_stats_update`): the centred
  joint covariance of [H | Y] and the second moment of the unit rows ĥ = h/‖h‖.

Batches are merged with the pairwise update of Chan, Golub & LeVeque (1979): each batch's class
means and scatters are computed around the batch's own means, then combined with the running ones
through S = S_a + S_b + (n_a n_b / n) δδᵀ, δ = μ_b − μ_a, all relative to a fixed per-class
reference point (the class's mean in its first batch). Raw sums of squares (Σ hhᵀ − n μμᵀ) cancel
catastrophically when the mean is large against the spread: for features offset by 1e6 with
spread 1 they get Sw wrong by ~1e-3, this update to ~3e-16 (tests/test_streaming_metrics.py) —
better than the in-memory two-pass functions on the same features (~3e-10: their class means are
rounded to the offset's ulp).

The metrics are the in-memory ones of :mod:`ufm.metrics.classification` and
:mod:`ufm.metrics.regression` (same definitions, the same functions where they take class means
or covariances), and agree with them to ~1e-12 on float64 input. What a second moment cannot
resolve: metrics that are *squared* distances of collapsed features (NRC1, NRC2, DNRC1) are
computed here from a covariance, so their rounding floor is ~1e-16 of the covariance's scale,
where the in-memory SVD of the features reaches ~1e-32; both are zero to the test tolerance.

Empty batches are accepted and change nothing (a data loader's last, empty batch is not an error);
every other bad batch raises ``ValueError`` naming the batch index.

Examples:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> H = rng.standard_normal((600, 8)); y = rng.integers(0, 3, 600)
    >>> state = class_stats_init(num_classes=3, dim=8)
    >>> for start in range(0, 600, 128):                 # any batch sizes, in any order
    ...     state = class_stats_update(state, H[start:start + 128], y[start:start + 128])
    >>> report = collapse_report(state)
    >>> from ufm.metrics import nc1
    >>> abs(report["nc1"] - float(nc1(H, y, 3))) < 1e-12
    True
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Iterable, NamedTuple

import jax.numpy as jnp
import numpy as np

from ufm._types import check_int
from ufm.labels import check_labels
from ufm.metrics import classification as _cls
from ufm.metrics import regression as _reg

_NAN = float("nan")


# ---- batch validation -----------------------------------------------------------------------------

def _batch_array(name: str, x, ndim: int, batch: int, cols: int | None = None) -> np.ndarray:
    """``x`` as a finite float64 NumPy array of ``ndim`` dimensions; ValueError naming the batch."""
    where = f"batch {batch}: {name}"
    if x is None or isinstance(x, (str, bytes, bool)):
        raise ValueError(f"{where} must be a {ndim}-D array of real numbers, got {x!r}")
    try:
        arr = np.asarray(x)
    except Exception as exc:  # ragged lists
        raise ValueError(f"{where} must be a {ndim}-D array of real numbers ({exc})") from None
    # bfloat16 and float8 (ml_dtypes) are floating for JAX but not for NumPy's dtype kinds
    if not (arr.dtype.kind in "iuf" or jnp.issubdtype(arr.dtype, jnp.floating)):
        raise ValueError(f"{where} must hold real numbers, got dtype {arr.dtype}")
    if arr.ndim != ndim:
        shape = {"features": "[B, d]", "targets": "[B, t]", "labels": "[B]"}.get(name, "")
        raise ValueError(f"{where} must be a {ndim}-D array {shape}, got shape {arr.shape}")
    if cols is not None and arr.shape[1] != cols:
        raise ValueError(f"{where} has {arr.shape[1]} columns, but earlier batches (or dim) had "
                         f"{cols}: every batch must have the same feature dimension")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        i = int(np.flatnonzero(~np.all(np.isfinite(arr.reshape(arr.shape[0], -1)), axis=1))[0])
        raise ValueError(f"{where} row {i} has non-finite entries (NaN or inf): the metrics of such "
                         "features are undefined")
    return arr


def _batch_labels(labels, num_classes: int, rows: int, batch: int) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.ndim != 1 or arr.shape[0] != rows:
        raise ValueError(f"batch {batch}: labels must be a 1-D array with one entry per feature row "
                         f"({rows}), got shape {arr.shape}")
    if rows == 0:
        return arr.astype(np.int64)
    try:
        return check_labels(arr, num_classes)
    except ValueError as exc:
        raise ValueError(f"batch {batch}: {exc}") from None


def _check_state(state, cls, init: str):
    if not isinstance(state, cls):
        raise TypeError(f"state must be a {cls.__name__} (from {init} or a previous update), got "
                        f"{type(state).__name__}")


def _fixed_array(name: str, x, shape: tuple, what: str) -> np.ndarray:
    """A fixed input (W, b, means) as a finite float64 array of exactly ``shape``."""
    if x is None or isinstance(x, (str, bytes, bool)):
        raise ValueError(f"{name} must be {what} {list(shape)}, got {x!r}")
    arr = np.asarray(x)
    if arr.shape != tuple(shape):
        raise ValueError(f"{name} must be {what} {list(shape)}, got shape {arr.shape}")
    if not (arr.dtype.kind in "iuf" or jnp.issubdtype(arr.dtype, jnp.floating)):
        raise ValueError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} has non-finite entries (NaN or inf)")
    return arr


# ---- per-class statistics (classification) --------------------------------------------------------

class ClassStats(NamedTuple):
    """Running per-class statistics (a pytree of float64 NumPy arrays).

    Each class keeps its statistics relative to a fixed reference point (the mean of the class in
    the first batch that has it): sums over features far from the origin (an offset of 1e6 against
    a spread of 1) then lose no digits to the offset, and a mean rounded to the offset's ulp never
    enters the scatter.

    Attributes:
        counts: n_k [K], samples seen per class.
        shift: the per-class reference points c_k [K, d] (0 for a class not seen yet).
        shifted_means: μ_k − c_k [K, d]; the class means are :attr:`means`.
        within_scatter: Σ_k Σ_{i: y_i = k} (h_i − μ_k)(h_i − μ_k)ᵀ [d, d].
        class_variance_sums: Σ_{i: y_i = k} ‖h_i − μ_k‖² [K] (the traces of the class scatters).
        num_batches: batches seen (an int64 scalar array; names the batch in error messages).
    """

    counts: np.ndarray
    shift: np.ndarray
    shifted_means: np.ndarray
    within_scatter: np.ndarray
    class_variance_sums: np.ndarray
    num_batches: np.ndarray

    @property
    def means(self) -> np.ndarray:
        """The uncentred class means μ_k [K, d] (0 for a class not seen yet)."""
        return self.shift + self.shifted_means


def class_stats_init(num_classes: int, dim: int) -> ClassStats:
    """Empty :class:`ClassStats` for K classes of d-dimensional features.

    Raises:
        ValueError: ``num_classes`` < 2 or ``dim`` < 1.
    """
    K = check_int("num_classes", num_classes, low=2)
    d = check_int("dim", dim, low=1)
    return ClassStats(np.zeros(K), np.zeros((K, d)), np.zeros((K, d)), np.zeros((d, d)),
                      np.zeros(K), np.zeros((), np.int64))


def _chan_merge(n_a, m_a, n_b, m_b):
    """Pairwise (Chan, Golub & LeVeque) merge of counts and means; returns the merged count and
    mean, the mean difference δ = m_b − m_a and the weight n_a n_b / n of its outer product."""
    n = n_a + n_b
    safe = np.where(n > 0, n, 1.0)
    delta = m_b - m_a
    return n, m_a + delta * (n_b / safe)[..., None], delta, n_a * n_b / safe  # absent: unchanged


def class_stats_update(state: ClassStats, features, labels) -> ClassStats:
    """Add one batch: features [B, d] (any float dtype, NumPy or JAX), labels [B] in [0, K).

    A pure function: returns a new state and leaves ``state`` as it was. An empty batch (B = 0)
    returns the state unchanged except for the batch counter.

    Raises:
        ValueError: naming the batch index, for features that are not a finite 2-D array with the
            state's d columns, labels that are not one integer in [0, K) per row.
        TypeError: ``state`` is not a :class:`ClassStats`.
    """
    _check_state(state, ClassStats, "class_stats_init")
    K, d = state.shift.shape
    batch = int(state.num_batches)
    H = _batch_array("features", features, 2, batch, cols=d)
    y = _batch_labels(labels, K, H.shape[0], batch)
    if H.shape[0] == 0:
        return state._replace(num_batches=state.num_batches + 1)
    Y = np.zeros((H.shape[0], K))
    Y[np.arange(H.shape[0]), y] = 1.0
    n_b = Y.sum(axis=0)
    safe_b = np.where(n_b > 0, n_b, 1.0)[:, None]
    new = (state.counts == 0) & (n_b > 0)
    shift = state.shift
    # class sums as np.dot(Yᵀ, ·): NumPy's `@` on the transposed one-hot [K, B] runs ~10x slower
    if np.any(new):  # classes seen for the first time: their reference point is this batch's mean
        shift = np.where(new[:, None], np.dot(Y.T, H) / safe_b, shift)
    Z = H - shift[y]
    m_b = np.dot(Y.T, Z) / safe_b
    D = Z - m_b[y]                                       # deviations from the batch's class means
    n, means, delta, c = _chan_merge(state.counts, state.shifted_means, n_b, m_b)
    scatter = state.within_scatter + D.T @ D + (delta * c[:, None]).T @ delta
    variance_sums = (state.class_variance_sums + np.dot(Y.T, np.einsum("bd,bd->b", D, D))
                     + c * np.einsum("kd,kd->k", delta, delta))
    return ClassStats(n, shift, means, scatter, variance_sums, state.num_batches + 1)


def class_stats(batches: Iterable, num_classes: int, dim: int | None = None) -> ClassStats:
    """:class:`ClassStats` of an iterable of (features, labels) batches (e.g. a generator)."""
    state = None if dim is None else class_stats_init(num_classes, dim)
    for features, labels in batches:
        if state is None:
            state = class_stats_init(num_classes, _first_dim(features))
        state = class_stats_update(state, features, labels)
    if state is None:
        raise ValueError("batches is empty and dim was not given: nothing to accumulate")
    return state


def _first_dim(features) -> int:
    shape = np.shape(features)
    if len(shape) != 2:
        raise ValueError(f"batch 0: features must be a 2-D array [B, d], got shape {tuple(shape)}")
    return int(shape[1])


# ---- CDNV -----------------------------------------------------------------------------------------

def cdnv(means, variances, dist_exp: float = 1.0) -> float:
    """Average class-distance normalised variance over the class pairs k < l.

    CDNV_kl = (σ_k² + σ_l²) / (2 ‖μ_k − μ_l‖^(2p)), p = ``dist_exp``, with σ_k² = E‖h − μ_k‖²
    over class k (the trace of the class covariance, 1/n_k).

    * p = 1 is the CDNV of Galanti, György & Hutter, "On the role of neural collapse in transfer
      learning" (ICLR 2022), which is scale invariant; the ``neural-collapse`` library of Wu &
      Papyan ("Linguistic Collapse", NeurIPS 2024) computes the same at its default
      ``dist_exp=1`` (felixsh/nc-toolbox too, there summarised by the coefficient of variation
      of the pairwise values instead of their mean).
    * p = 2 divides by the squared squared distance, ‖μ_k − μ_l‖⁴: the ``dist_exp`` the
      Wu–Papyan library offers to damp already distant pairs further (an earlier revision of its
      kernel divided by it unconditionally). It is not scale invariant (units 1/length²): compare
      it only between features of one scale.

    Args:
        means: class means [K, d].
        variances: σ_k² [K].
        dist_exp: p > 0.

    Returns:
        The mean over the K(K−1)/2 pairs; inf if two class means coincide (NaN if they also have
        no variance).

    Examples:
        >>> cdnv(np.array([[0.0, 0.0], [2.0, 0.0]]), np.array([1.0, 3.0]))   # (1 + 3)/(2·4)
        0.5
    """
    M = np.asarray(means, dtype=np.float64)
    v = np.asarray(variances, dtype=np.float64)
    if M.ndim != 2 or M.shape[0] < 2 or v.shape != (M.shape[0],):
        raise ValueError(f"cdnv needs means [K, d] with K >= 2 and variances [K], got shapes "
                         f"{M.shape} and {v.shape}")
    if not (isinstance(dist_exp, (int, float)) and not isinstance(dist_exp, bool)
            and math.isfinite(dist_exp) and dist_exp > 0):
        raise ValueError(f"dist_exp must be a real number > 0, got {dist_exp!r}")
    k, l = np.triu_indices(M.shape[0], k=1)
    dist2 = np.sum((M[k] - M[l]) ** 2, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):  # coinciding means: inf (or NaN at 0/0)
        return float(np.mean((v[k] + v[l]) / (2.0 * dist2 ** dist_exp)))


# ---- the report -----------------------------------------------------------------------------------

# quantity -> what it measures (the table's last column)
_MEANINGS = {
    "nc1": "tr(Sw Sb⁺)/K (Papyan 2020)",
    "nc1_trace": "tr(Sw)/tr(Sb)",
    "cdnv": "CDNV, Galanti et al. 2022",
    "cdnv_dist4": "CDNV over ‖μ_k−μ_l‖⁴ (dist_exp=2)",
    "means_etf_distance": "‖G/‖G‖ − E‖, G = M Mᵀ (centred)",
    "means_of_distance": "‖G/‖G‖ − O‖, G = M_raw M_rawᵀ",
    "means_equinorm": "std/mean of ‖μ_k‖ (frame-matched)",
    "means_equiangle": "mean |cos − target| over k≠l",
    "means_mean_cosine": "mean cos(μ_k, μ_l), k≠l (frame-matched)",
    "W_etf_distance": "‖G/‖G‖ − E‖, G = W_c W_cᵀ",
    "W_of_distance": "‖G/‖G‖ − O‖, G = W Wᵀ",
    "W_equinorm": "std/mean of ‖w_k‖ (frame-matched)",
    "W_equiangle": "mean |cos − target| over k≠l",
    "W_mean_cosine": "mean cos(w_k, w_l), k≠l (frame-matched)",
    "nc3_duality": "‖W'/‖W'‖ − M'/‖M'‖‖ (Papyan)",
    "nc3_zhu": "frame distance of W' M'ᵀ (Zhu)",
    "bias_relation": "‖W μ_G + b‖",
    "nc4": "argmax logits ≠ nearest class mean",
    "classifier_accuracy": "argmax logits = label",
    "ncc_accuracy": "nearest class mean = label",
    "nrc1": "dist. of ĥ to top-t principal subspace",
    "nrc2": "dist. of ĥ to the row space of W",
    "nrc3": "min_γ ‖WWᵀ/‖·‖ − (Σ½ − √γ I)/‖·‖‖²",
    "nrc3_gamma": "γ̂ attaining NRC3",
    "dnrc1": "centred variance outside the top t",
    "dnrc1_squared": "squared variant of DNRC1",
    "stable_rank": "Σν²/ν₁² of the centred covariance",
    "dnrc2": "linear CKA of H̃ and Ỹ",
}


@dataclasses.dataclass(frozen=True)
class CollapseReport:
    """Collapse metrics of accumulated features, next to what a fully collapsed UFM would give.

    Attributes:
        kind: ``"classification"`` or ``"regression"``.
        num_samples: N.
        dim: d, the feature dimension.
        num_classes: K (classification), or the target dimension t (regression).
        geometry: the reference frame (``"etf"`` or ``"of"``; ``None`` for regression).
        values: quantity -> measured value (float; NaN where undefined).
        prediction: quantity -> the value at the collapsed geometry of the UFM for the same K, d
            and frame (:mod:`ufm.theory`), or ``None`` where the theory gives no number without the
            loss and regularisation (the bias relation, NRC3, CKA, ...).
        notes: short remarks (e.g. why a prediction is missing).

    ``report[name]`` reads a value; ``str(report)`` is a table; :meth:`to_dict` / :meth:`from_dict`
    and :meth:`to_json` / :meth:`from_json` round-trip it exactly (NaN is written as JSON ``NaN``).
    """

    kind: str
    num_samples: int
    dim: int
    num_classes: int
    geometry: str | None
    values: dict
    prediction: dict
    notes: tuple = ()

    def __getitem__(self, name: str) -> float:
        return self.values[name]

    def __eq__(self, other) -> bool:
        # by value, with NaN equal to NaN: an undefined metric is written as JSON NaN and read
        # back as a new NaN object, which plain dict equality (NaN != NaN) called unequal
        if other.__class__ is not self.__class__:
            return NotImplemented
        a, b = self.to_dict(), other.to_dict()
        same = lambda x, y: x == y or (isinstance(x, float) and isinstance(y, float)  # noqa: E731
                                       and math.isnan(x) and math.isnan(y))
        return (all(a[k] == b[k] for k in a if k not in ("values", "prediction"))
                and all(a[k].keys() == b[k].keys() and all(same(a[k][n], b[k][n]) for n in a[k])
                        for k in ("values", "prediction")))

    __hash__ = None  # holds dicts: not hashable (as before), but comparable by value

    def __contains__(self, name: str) -> bool:
        return name in self.values

    def to_dict(self) -> dict:
        """Plain Python types only (floats, ints, str, None, lists)."""
        return dict(kind=self.kind, num_samples=self.num_samples, dim=self.dim,
                    num_classes=self.num_classes, geometry=self.geometry,
                    values={k: float(v) for k, v in self.values.items()},
                    prediction={k: (None if v is None else float(v)) for k, v in self.prediction.items()},
                    notes=list(self.notes))

    @classmethod
    def from_dict(cls, data: dict) -> "CollapseReport":
        fields = {f.name for f in dataclasses.fields(cls)}
        missing = fields - set(data) - {"notes"}
        if missing:
            raise ValueError(f"not a CollapseReport dict: missing {sorted(missing)}")
        return cls(kind=data["kind"], num_samples=int(data["num_samples"]), dim=int(data["dim"]),
                   num_classes=int(data["num_classes"]), geometry=data["geometry"],
                   values={k: float(v) for k, v in data["values"].items()},
                   prediction={k: (None if v is None else float(v))
                               for k, v in data["prediction"].items()},
                   notes=tuple(data.get("notes", ())))

    def to_json(self, **kwargs) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_json(cls, text: str) -> "CollapseReport":
        return cls.from_dict(json.loads(text))

    def __str__(self) -> str:
        what = (f"K = {self.num_classes}, {self.geometry.upper()} frame" if self.kind == "classification"
                else f"t = {self.num_classes}")
        head = f"{self.kind} collapse report: N = {self.num_samples}, d = {self.dim}, {what}"
        rows = [("quantity", "measured", "collapsed UFM", "definition")]
        for name, value in self.values.items():
            pred = self.prediction.get(name)
            rows.append((name, _fmt(value), "—" if pred is None else _fmt(pred), _MEANINGS.get(name, "")))
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        lines = [head]
        for j, r in enumerate(rows):
            lines.append("  ".join([r[0].ljust(widths[0]), r[1].rjust(widths[1]),
                                    r[2].rjust(widths[2]), r[3]]).rstrip())
            if j == 0:
                lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 10)
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def _fmt(x: float) -> str:
    if isinstance(x, float) and math.isnan(x):
        return "nan"
    if x == 0:
        return "0"
    return f"{x:.4g}" if 1e-3 <= abs(x) < 1e4 else f"{x:.3e}"


def _mean_cosine(V: np.ndarray) -> float:
    U = V / np.linalg.norm(V, axis=1, keepdims=True)
    off = ~np.eye(V.shape[0], dtype=bool)
    return float(np.mean((U @ U.T)[off]))


def _frame_values(M_raw: np.ndarray, W: np.ndarray | None, b, geometry: str,
                  M_rel: np.ndarray | None = None) -> dict:
    """NC2 of the means (and of W), NC3 and the bias relation: the in-memory functions applied to
    the class means as one "sample" per class (the class means of the means are themselves).

    ``M_rel`` is M_raw shifted by any common vector, known more precisely than M_raw (which is
    rounded to the ulp of the features' offset): what is invariant under a shift uses it."""
    K = M_raw.shape[0]
    M_rel = M_raw if M_rel is None else M_rel
    M = M_rel - M_rel.mean(axis=0, keepdims=True)
    V, M_frame = (M, M_rel) if geometry == "etf" else (M_raw, M_raw)
    values = dict(means_etf_distance=float(_cls.etf_distance(M @ M.T)),
                  means_of_distance=float(_cls.of_distance(M_raw @ M_raw.T)),
                  means_equinorm=float(_cls.equinorm(V)),
                  means_equiangle=float(_cls.equiangle(V, geometry)),
                  means_mean_cosine=_mean_cosine(V))
    if W is None:
        return values
    classes = np.arange(K)
    Wc = W - W.mean(axis=0, keepdims=True)
    Wf = Wc if geometry == "etf" else W
    values.update(W_etf_distance=float(_cls.etf_distance(Wc @ Wc.T)),
                  W_of_distance=float(_cls.of_distance(W @ W.T)),
                  W_equinorm=float(_cls.equinorm(Wf)),
                  W_equiangle=float(_cls.equiangle(Wf, geometry)),
                  W_mean_cosine=_mean_cosine(Wf),
                  nc3_duality=float(_cls.nc3_duality(W, M_frame, classes, geometry)),
                  nc3_zhu=float(_cls.nc3_zhu(W, M_frame, classes, geometry)),
                  bias_relation=float(_cls.bias_relation(W, M_raw, b, classes)))
    return values


def _frame_prediction(K: int, d: int, geometry: str) -> tuple[dict, list]:
    """The frame quantities at the collapsed UFM geometry: the same metrics evaluated on the
    construction of :mod:`ufm.theory.frames` (class means and classifier rows a simplex ETF, or an
    orthogonal frame), so the cosine −1/(K−1) (ETF) or 0 (OF) comes from the theory's frame."""
    from ufm.theory.frames import orthogonal_frame, simplex_etf

    try:
        frame = simplex_etf(K, d) if geometry == "etf" else orthogonal_frame(K, d)
    except ValueError:
        need = "d >= K-1" if geometry == "etf" else "d >= K"
        return {}, [f"no {geometry.upper()} of K = {K} vectors in d = {d} dimensions ({need}): "
                    "the frame quantities are not predicted"]
    pred = _frame_values(frame, frame, None, geometry)
    # the theory fixes only the centred means and W_c in the ETF frame: the uncentred Grams depend
    # on the global mean and on mean_k w_k; the bias relation depends on the loss and λ's
    drop = {"bias_relation"} | ({"means_of_distance", "W_of_distance"} if geometry == "etf" else set())
    # rounding of the construction (~1e-16) is shown as the exact value the theory gives, 0
    return {k: (0.0 if abs(v) < 1e-12 else v) for k, v in pred.items() if k not in drop}, []


def collapse_report(state: ClassStats, W=None, b=None, *, geometry: str = "etf",
                    nc4: "NC4Stats | None" = None) -> CollapseReport:
    """NC1 (both forms), CDNV (both normalisations), NC2 of the means and, given the classifier
    W [K, d] (and bias b [K]), NC2 of W, NC3 (both variants) and the bias relation; NC4 from an
    :class:`NC4Stats` second pass.

    The definitions are those of :mod:`ufm.metrics.classification` (Sw with 1/N, Sb of the
    centred means with 1/K; the ETF frame centres W and the means, the OF frame does not); the
    frame quantities, NC3 and the bias relation are the in-memory functions applied to the class
    means themselves.

    Raises:
        ValueError: a class has no samples (its mean is undefined), W or b of the wrong shape or
            not finite, an unknown ``geometry``.
    """
    _check_state(state, ClassStats, "class_stats_init")
    _cls._check_geometry(geometry)
    K, d = state.shift.shape
    missing = np.flatnonzero(state.counts == 0)
    if missing.size:
        raise ValueError(f"class {int(missing[0])} has no samples (of {int(missing.size)} empty "
                         f"classes, num_classes={K}): every class needs at least one sample")
    N = float(state.counts.sum())
    M_raw = state.means
    # differences of the reference points are exact (nearby floats): the centred means and the
    # distances between means keep their digits even when the features sit far from the origin
    M_rel = (state.shift - state.shift[0]) + state.shifted_means
    M = M_rel - M_rel.mean(axis=0, keepdims=True)
    Sw = state.within_scatter / N
    Sb = M.T @ M / K
    rtol = max(1e-10, 100 * float(np.finfo(np.float64).eps))  # as ufm.metrics.nc1
    with np.errstate(divide="ignore", invalid="ignore"):  # all means equal: Sb = 0, NaN as in memory
        trace_ratio = float(np.trace(Sw) / np.trace(Sb))
    values = dict(
        # all means equal but features varying: inf, not pinv(0) = 0 (as ufm.metrics.nc1)
        nc1=(math.inf if np.trace(Sb) == 0 and np.trace(Sw) > 0
             else float(np.trace(Sw @ np.linalg.pinv(Sb, rtol=rtol, hermitian=True)) / K)),
        nc1_trace=trace_ratio,
        cdnv=cdnv(M_rel, state.class_variance_sums / state.counts),
        cdnv_dist4=cdnv(M_rel, state.class_variance_sums / state.counts, dist_exp=2.0),
    )
    if W is not None:
        W = _fixed_array("W", W, (K, d), "the classifier [K, d] =")
        if b is not None:
            b = _fixed_array("b", b, (K,), "the bias [K] =")
    elif b is not None:
        raise ValueError("b needs W: pass the classifier W [K, d] with its bias")
    values.update(_frame_values(M_raw, W, b, geometry, M_rel))
    if nc4 is not None:
        values.update(nc4_result(nc4))
    prediction = {"nc1": 0.0, "nc1_trace": 0.0, "cdnv": 0.0, "cdnv_dist4": 0.0}
    frame, notes = _frame_prediction(K, d, geometry)
    prediction.update(frame)
    if nc4 is not None:
        prediction["nc4"] = 0.0
    if "bias_relation" in values:
        notes.append("bias_relation: its collapsed value depends on the loss and λ's "
                     "(ufm.theory.predict of the matching UFM gives it)")
    prediction = {k: v for k, v in prediction.items() if k in values}
    return CollapseReport("classification", int(N), d, K, geometry, values, prediction, tuple(notes))


# ---- NC4: a second pass against fixed means --------------------------------------------------------

class NC4Stats(NamedTuple):
    """Counts of a pass over features against fixed class means and a classifier.

    Attributes:
        count: samples seen.
        mismatches: samples where argmax_k (h Wᵀ + b)_k ≠ argmin_k ‖h − μ_k‖ (NC4's numerator).
        labelled: samples that came with labels.
        classifier_correct, ncc_correct: of the labelled samples, those the classifier and the
            nearest-class-mean rule get right.
        num_batches: batches seen.
    """

    count: np.ndarray
    mismatches: np.ndarray
    labelled: np.ndarray
    classifier_correct: np.ndarray
    ncc_correct: np.ndarray
    num_batches: np.ndarray


def nc4_init() -> NC4Stats:
    """Empty :class:`NC4Stats`."""
    z = np.zeros((), np.int64)
    return NC4Stats(z, z, z, z, z, z)


def nc4_update(state: NC4Stats, features, W, b, means, labels=None) -> NC4Stats:
    """Add one batch of features [B, d] to an NC4 pass.

    ``means`` [K, d] are fixed class means — for NC4 on the training data, those of the training
    features (``collapse_report``'s first pass, ``ClassStats.means``); for test features, still
    the *training* means (the classifier is compared with the nearest *training* class mean).
    ``W`` [K, d] and ``b`` [K] (or None) are the classifier. ``labels`` (optional) add the two
    accuracies.

    Raises:
        ValueError: naming the batch index, for bad features or labels; W, b or means of the
            wrong shape.
    """
    _check_state(state, NC4Stats, "nc4_init")
    batch = int(state.num_batches)
    shape = np.shape(means)
    if len(shape) != 2 or shape[0] < 2:
        raise ValueError(f"means must be class means [K, d] with K >= 2, got shape {tuple(shape)}")
    K, d = shape
    M = _fixed_array("means", means, (K, d), "the class means [K, d] =")
    W = _fixed_array("W", W, (K, d), "the classifier [K, d] =")
    if b is not None:
        b = _fixed_array("b", b, (K,), "the bias [K] =")
    H = _batch_array("features", features, 2, batch, cols=d)
    y = None if labels is None else _batch_labels(labels, K, H.shape[0], batch)
    if H.shape[0] == 0:
        return state._replace(num_batches=state.num_batches + 1)
    logits = H @ W.T + (0.0 if b is None else b[None, :])
    # ‖h − μ_k‖² = ‖h − c‖² − 2(h − c)·(μ_k − c) + ‖μ_k − c‖²: the first term does not depend on k;
    # centring at c = mean of the means keeps the expansion accurate for features far from 0.
    c = M.mean(axis=0)
    Mc = M - c
    dist = np.sum(Mc ** 2, axis=1)[None, :] - 2.0 * (H - c) @ Mc.T
    pred_W, pred_ncc = np.argmax(logits, axis=1), np.argmin(dist, axis=1)
    new = dict(count=state.count + H.shape[0],
               mismatches=state.mismatches + int(np.sum(pred_W != pred_ncc)),
               num_batches=state.num_batches + 1)
    if y is not None:
        new.update(labelled=state.labelled + H.shape[0],
                   classifier_correct=state.classifier_correct + int(np.sum(pred_W == y)),
                   ncc_correct=state.ncc_correct + int(np.sum(pred_ncc == y)))
    return state._replace(**new)


def nc4_result(state: NC4Stats) -> dict:
    """``nc4`` (and, if labels were given, ``classifier_accuracy``, ``ncc_accuracy``)."""
    _check_state(state, NC4Stats, "nc4_init")
    if int(state.count) == 0:
        raise ValueError("the NC4 pass has seen no samples")
    out = {"nc4": int(state.mismatches) / int(state.count)}
    if int(state.labelled):
        out.update(classifier_accuracy=int(state.classifier_correct) / int(state.labelled),
                   ncc_accuracy=int(state.ncc_correct) / int(state.labelled))
    return out


# ---- regression -----------------------------------------------------------------------------------

class RegressionStats(NamedTuple):
    """Running statistics of features H [N, d] and targets Y [N, t] (float64 NumPy arrays).

    Attributes:
        count: N.
        shift: a fixed reference point of the joint rows (the first batch's mean) [d + t].
        shifted_mean: the mean of the joint rows [h | y] minus ``shift`` [d + t].
        scatter: the centred joint scatter Σ_i (z_i − z̄)(z_i − z̄)ᵀ of z = (h, y), a [d+t, d+t] matrix.
        unit_count: rows of H that are not exactly zero.
        unit_moment: Σ ĥ ĥᵀ over those rows, ĥ = h/‖h‖ [d, d].
        num_batches: batches seen.
    """

    count: np.ndarray
    shift: np.ndarray
    shifted_mean: np.ndarray
    scatter: np.ndarray
    unit_count: np.ndarray
    unit_moment: np.ndarray
    num_batches: np.ndarray


def regression_stats_init(dim: int, target_dim: int) -> RegressionStats:
    """Empty :class:`RegressionStats` for features of dimension d and targets of dimension t."""
    d = check_int("dim", dim, low=1)
    t = check_int("target_dim", target_dim, low=1)
    p = d + t
    return RegressionStats(np.zeros(()), np.zeros(p), np.zeros(p), np.zeros((p, p)), np.zeros(()),
                           np.zeros((d, d)), np.zeros((), np.int64))


def regression_stats_update(state: RegressionStats, features, targets) -> RegressionStats:
    """Add one batch: features [B, d] and targets [B, t] (any float dtype). Pure; B = 0 is a no-op.

    Raises:
        ValueError: naming the batch index, for non-finite or mis-shaped features or targets.
    """
    _check_state(state, RegressionStats, "regression_stats_init")
    d = state.unit_moment.shape[0]
    t = state.shift.shape[0] - d
    batch = int(state.num_batches)
    H = _batch_array("features", features, 2, batch, cols=d)
    Y = _batch_array("targets", targets, 2, batch, cols=t)
    if Y.shape[0] != H.shape[0]:
        raise ValueError(f"batch {batch}: features and targets need the same number of rows, got "
                         f"{H.shape[0]} and {Y.shape[0]}")
    if H.shape[0] == 0:
        return state._replace(num_batches=state.num_batches + 1)
    Z = np.hstack([H, Y])
    shift = Z.mean(axis=0) if float(state.count) == 0 else state.shift
    Z = Z - shift
    m_b = Z.mean(axis=0)
    D = Z - m_b
    n, mean, delta, c = _chan_merge(state.count, state.shifted_mean, np.asarray(float(Z.shape[0])), m_b)
    scatter = state.scatter + D.T @ D + np.outer(delta, delta) * c
    norms = np.linalg.norm(H, axis=1)
    keep = norms > 0
    U = H[keep] / norms[keep, None]
    return RegressionStats(n, shift, mean, scatter, state.unit_count + float(keep.sum()),
                           state.unit_moment + U.T @ U, state.num_batches + 1)


def regression_stats(batches: Iterable, dim: int | None = None,
                     target_dim: int | None = None) -> RegressionStats:
    """:class:`RegressionStats` of an iterable of (features, targets) batches."""
    state = None if dim is None or target_dim is None else regression_stats_init(dim, target_dim)
    for features, targets in batches:
        if state is None:
            state = regression_stats_init(_first_dim(features), _first_dim(targets))
        state = regression_stats_update(state, features, targets)
    if state is None:
        raise ValueError("batches is empty and dim, target_dim were not given: nothing to accumulate")
    return state


def _complement_trace(C: np.ndarray, basis: np.ndarray) -> float:
    """tr((I − P) C) for P the projector onto the orthonormal columns of ``basis``, as the trace
    over an orthonormal basis of the complement (never 1 − tr(P C): no cancellation near 0)."""
    d = C.shape[0]
    if basis.shape[1] >= d:
        return 0.0
    Q, _ = np.linalg.qr(np.hstack([basis, np.eye(d)]))   # first r columns span the basis
    perp = Q[:, basis.shape[1]:d]
    return float(max(np.trace(perp.T @ C @ perp), 0.0))


def regression_report(state: RegressionStats, W=None) -> CollapseReport:
    """NRC1 (and DNRC1, its squared variant, the stable rank, DNRC2 = CKA) and, given the
    regression head W [t, d], NRC2 and NRC3 (with γ̂).

    NRC1 and NRC2 are means over samples of ‖ĥ_i − ĥ_i P‖² for a fixed projector P, which equal
    tr((I − P) Ĉ) with Ĉ = mean_i ĥ_i ĥ_iᵀ the accumulated second moment of the unit rows: exact,
    since P (the top-t principal directions of the centred features for NRC1, the row space of W
    for NRC2) does not depend on the sample. NRC3 needs only W and the centred target covariance.
    Definitions and undefined points (NaN) are those of :mod:`ufm.metrics.regression`.

    Raises:
        ValueError: no samples seen; W not [t, d] or not finite.
    """
    _check_state(state, RegressionStats, "regression_stats_init")
    if float(state.count) == 0:
        raise ValueError("no samples accumulated: nothing to report")
    d = state.unit_moment.shape[0]
    t = state.shift.shape[0] - d
    N = float(state.count)
    cov = state.scatter / N
    S_H, S_Y, S_HY = cov[:d, :d], cov[d:, d:], cov[:d, d:]
    evals, evecs = np.linalg.eigh((S_H + S_H.T) / 2)
    order = np.argsort(evals)[::-1]
    nu, V_all = np.maximum(evals[order], 0.0), evecs[:, order]
    C_hat = state.unit_moment / state.unit_count if float(state.unit_count) else None
    centred_zero = not np.any(S_H)
    if C_hat is None or centred_zero:
        nrc1 = _NAN
    else:
        nrc1 = _complement_trace(C_hat, V_all[:, :t])
    total = nu.sum()
    values = dict(nrc1=nrc1,
                  dnrc1=_NAN if total == 0 else float(nu[t:].sum() / total),
                  dnrc1_squared=_NAN if total == 0 else float((nu[t:] ** 2).sum() / (nu ** 2).sum()),
                  stable_rank=_NAN if nu[0] == 0 else float(np.sum(nu ** 2) / nu[0] ** 2))
    denom = np.linalg.norm(S_H) * np.linalg.norm(S_Y)
    values["dnrc2"] = _NAN if denom == 0 else float(np.linalg.norm(S_HY) ** 2 / denom)
    if W is not None:
        W = _fixed_array("W", W, (t, d), "the regression head [t, d] =")
        if C_hat is None:
            values["nrc2"] = _NAN
        else:
            values["nrc2"] = _complement_trace(C_hat, _reg._row_space(W, rtol=1e-10))
        r3 = _reg.nrc3(W, covariance=S_Y)
        values.update(nrc3=r3.value, nrc3_gamma=r3.gamma)
    prediction = {"nrc1": 0.0, "dnrc1": 0.0, "dnrc1_squared": 0.0}
    notes = []
    if W is not None:
        prediction["nrc2"] = 0.0
        notes.append("nrc3 is 0 at the regression UFM's minimiser only when c = Nλ_Hλ_W < λ_min(Σ), "
                     "with γ̂ = c: not predicted without the λ's (ufm.theory.predict gives it)")
    notes.append("dnrc2 (CKA) < 1 at the optimum unless Σ ∝ I, stable_rank depends on Σ: not "
                 "predicted without the λ's")
    return CollapseReport("regression", int(N), d, t, None, values, prediction, tuple(notes))


# ---- class wrappers -------------------------------------------------------------------------------

class CollapseAccumulator:
    """Stateful convenience around :func:`class_stats_update` (the state stays a pure pytree).

    Examples:
        >>> rng = np.random.default_rng(1)
        >>> acc = CollapseAccumulator(num_classes=4)
        >>> for _ in range(3):
        ...     acc.update(rng.standard_normal((50, 6)).astype(np.float32), rng.integers(0, 4, 50))
        >>> acc.num_samples, round(acc.result()["nc1"], 2) > 0
        (150, True)
    """

    def __init__(self, num_classes: int, dim: int | None = None):
        self.num_classes = check_int("num_classes", num_classes, low=2)
        self.state = None if dim is None else class_stats_init(num_classes, dim)

    def update(self, features, labels) -> None:
        if self.state is None:
            self.state = class_stats_init(self.num_classes, _first_dim(features))
        self.state = class_stats_update(self.state, features, labels)

    @property
    def num_samples(self) -> int:
        return 0 if self.state is None else int(self.state.counts.sum())

    @property
    def means(self) -> np.ndarray:
        """The class means so far [K, d] (the input of an :class:`NC4Accumulator`)."""
        self._need_state()
        return self.state.means.copy()

    def _need_state(self):
        if self.state is None:
            raise ValueError("no batch accumulated yet")

    def result(self, W=None, b=None, *, geometry: str = "etf", nc4=None) -> CollapseReport:
        self._need_state()
        if isinstance(nc4, NC4Accumulator):
            nc4 = nc4.state
        return collapse_report(self.state, W, b, geometry=geometry, nc4=nc4)


class NC4Accumulator:
    """Stateful convenience around :func:`nc4_update` with fixed (training) means and classifier."""

    def __init__(self, W, b, means):
        self.W, self.b, self.means = W, b, means
        self.state = nc4_init()

    def update(self, features, labels=None) -> None:
        self.state = nc4_update(self.state, features, self.W, self.b, self.means, labels)

    def result(self) -> dict:
        return nc4_result(self.state)


class RegressionAccumulator:
    """Stateful convenience around :func:`regression_stats_update`."""

    def __init__(self, dim: int | None = None, target_dim: int | None = None):
        self.state = (None if dim is None or target_dim is None
                      else regression_stats_init(dim, target_dim))

    def update(self, features, targets) -> None:
        if self.state is None:
            self.state = regression_stats_init(_first_dim(features), _first_dim(targets))
        self.state = regression_stats_update(self.state, features, targets)

    def result(self, W=None) -> CollapseReport:
        if self.state is None:
            raise ValueError("no batch accumulated yet")
        return regression_report(self.state, W)


__all__ = ["ClassStats", "class_stats_init", "class_stats_update", "class_stats", "collapse_report",
           "cdnv", "CollapseReport", "NC4Stats", "nc4_init", "nc4_update", "nc4_result",
           "RegressionStats", "regression_stats_init", "regression_stats_update", "regression_stats",
           "regression_report", "CollapseAccumulator", "NC4Accumulator", "RegressionAccumulator"]
