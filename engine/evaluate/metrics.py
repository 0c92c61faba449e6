"""Distances between two distributions, and the binning that turns values into them.

All three distances are symmetric and lie in [0, 1]:

* Jensen-Shannon divergence, base 2: ``JSD(p, q) = H(m) - (H(p) + H(q)) / 2`` with
  ``m = (p + q) / 2``. This is the divergence, not its square root (scipy's
  ``jensenshannon`` returns the root). 0 for identical, 1 for disjoint supports.
* Total variation distance: ``TVD = sum |p - q| / 2``.
* Hellinger distance: ``H = sqrt(1 - sum sqrt(p * q))``.

Binning (:func:`bin_pair`): values with few distinct levels are compared exactly
(one bin per value); fields wider than 8 bits with more than ``MAX_EXACT``
distinct values get quantile bins computed on the *pooled* real + synthetic
values (so the result does not depend on which side is called "real"), or
caller-given fixed edges. Missing values (``ABSENT_CODE``, a header that is not
in the packet) always get their own bin, so a protocol mix mismatch counts.
"""

from __future__ import annotations

import math

import numpy as np

ABSENT_CODE = -1          # field value of a packet that lacks the field's header
MAX_EXACT = 64            # at most this many distinct values -> exact bins
QUANTILE_BINS = 32        # otherwise this many pooled-quantile bins


def _normalize(p) -> np.ndarray:
    p = np.asarray(p, np.float64)
    if p.ndim != 1:
        raise ValueError("distributions are 1-D")
    if (p < 0).any():
        raise ValueError("negative counts")
    s = p.sum()
    if s <= 0:
        raise ValueError("empty distribution")
    return p / s


def _entropy2(p: np.ndarray) -> float:
    nz = p[p > 0]
    return float(-(nz * np.log2(nz)).sum())


def jsd(p, q) -> float:
    """Jensen-Shannon divergence (base 2) of two count or probability vectors, in [0, 1]."""
    p, q = _normalize(p), _normalize(q)
    m = (p + q) / 2
    v = _entropy2(m) - (_entropy2(p) + _entropy2(q)) / 2
    return float(min(max(v, 0.0), 1.0))


def tvd(p, q) -> float:
    """Total variation distance, in [0, 1]."""
    p, q = _normalize(p), _normalize(q)
    return float(min(max(np.abs(p - q).sum() / 2, 0.0), 1.0))


def hellinger(p, q) -> float:
    """Hellinger distance, in [0, 1]."""
    p, q = _normalize(p), _normalize(q)
    bc = float(np.sqrt(p * q).sum())
    return float(math.sqrt(max(0.0, 1.0 - min(bc, 1.0))))


METRICS = {"jsd": jsd, "tvd": tvd, "hellinger": hellinger}


def distances(p, q) -> dict[str, float]:
    """All three distances of two count vectors over the same bins."""
    return {k: f(p, q) for k, f in METRICS.items()}


def bin_pair(a, b, edges: np.ndarray | None = None, exact: bool | None = None,
             max_exact: int = MAX_EXACT, nbins: int = QUANTILE_BINS) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Histogram two samples over common bins.

    Args:
        a, b: 1-D numeric samples; ``ABSENT_CODE`` marks "field not present"
            and is always its own bin (when ``edges`` is given, values below
            the first edge are *not* treated specially: pass ``exact=False``).
        edges: fixed bin edges for present values (right-open, the last bin
            takes everything above). ``None``: exact or pooled quantiles.
        exact: force exact bins (True) or binned (False); ``None`` decides by
            the number of distinct present values (``<= max_exact`` -> exact).
    Returns:
        ``(counts_a, counts_b, bin_labels)``.
    """
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    ab, bb = a == ABSENT_CODE, b == ABSENT_CODE
    ap, bp = a[~ab], b[~bb]
    labels: list[str] = []
    ca: list[np.ndarray] = [np.array([ab.sum()])]
    cb: list[np.ndarray] = [np.array([bb.sum()])]
    labels.append("absent")
    pooled = np.concatenate([ap, bp])
    if len(pooled):
        uniq = np.unique(pooled)
        if edges is None and (exact or (exact is None and len(uniq) <= max_exact)):
            ia = np.searchsorted(uniq, ap)
            ib = np.searchsorted(uniq, bp)
            ca.append(np.bincount(ia, minlength=len(uniq)))
            cb.append(np.bincount(ib, minlength=len(uniq)))
            labels += [_fmt(v) for v in uniq]
        else:
            if edges is None:
                qs = np.quantile(pooled, np.linspace(0, 1, nbins + 1)[1:-1])
                e = np.unique(np.concatenate([[uniq[0]], qs]))
            else:
                e = np.asarray(edges, np.float64)
            # bin k holds [e[k], e[k+1]); everything below e[0] goes to bin 0
            ia = np.clip(np.searchsorted(e, ap, side="right") - 1, 0, len(e) - 1)
            ib = np.clip(np.searchsorted(e, bp, side="right") - 1, 0, len(e) - 1)
            ca.append(np.bincount(ia, minlength=len(e)))
            cb.append(np.bincount(ib, minlength=len(e)))
            labels += [f">={_fmt(v)}" for v in e]
    return np.concatenate(ca).astype(np.float64), np.concatenate(cb).astype(np.float64), labels


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:.4g}"


def compare(a, b, **kw) -> dict | None:
    """Distances between two samples (``None`` when either side is empty)."""
    if len(np.ravel(a)) == 0 or len(np.ravel(b)) == 0:
        return None
    ca, cb, labels = bin_pair(a, b, **kw)
    d = distances(ca, cb)
    d["bins"] = len(labels)
    return d


def log_edges(lo: float, hi: float, per_decade: int = 4) -> np.ndarray:
    """Edges 0, lo, ..., hi spaced ``per_decade`` per factor of 10 (for gaps, lengths)."""
    n = int(math.ceil(math.log10(hi / lo) * per_decade))
    return np.concatenate([[0.0], lo * 10 ** (np.arange(n + 1) / per_decade)])


def mean_of(values) -> float | None:
    v = [x for x in values if x is not None and not (isinstance(x, float) and math.isnan(x))]
    return float(np.mean(v)) if v else None
