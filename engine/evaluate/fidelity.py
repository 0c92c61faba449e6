"""Statistical fidelity: per class and per compared quantity, real test split vs a candidate."""

from __future__ import annotations

import numpy as np

from .data import FlowSet
from .features import SPECS, packet_values
from .metrics import ABSENT_CODE, METRICS, compare, mean_of

GROUPS = ("header", "packet", "flow")


def fidelity(test_real: FlowSet, candidate: FlowSet, classes: list[str],
             real_values: dict[str, dict] | None = None) -> dict:
    """``{"classes": {c: {"fields": {name: {jsd, tvd, hellinger, bins}}, "mean": {...}, "mean_by_group": ...}},
    "overall": {metric: mean over classes}}``.

    A quantity missing on both sides of a class (``None``) is left out of the means; one
    the candidate lacks (e.g. no readable packets at all) but the real data has scores 1.
    ``real_values`` caches :func:`packet_values` of the real side per class.
    """
    out: dict = {"classes": {}}
    for c in classes:
        rv = real_values[c] if real_values and c in real_values else packet_values(test_real.of(c).mats)
        cv = packet_values(candidate.of(c).mats)
        fields = {}
        for s in SPECS:
            if len(rv[s.name]) and not len(cv[s.name]):
                # nothing readable where the real data has something: as far apart as it gets
                fields[s.name] = {"jsd": 1.0, "tvd": 1.0, "hellinger": 1.0, "bins": 0, "empty": True}
            else:
                fields[s.name] = compare(rv[s.name], cv[s.name], **s.bin_kwargs())
        # header fields again over only the packets that carry the header on both sides:
        # the field's own shape, without the protocol mix that the absent bin adds
        present = {}
        for s in SPECS:
            if s.group == "header":
                a, b = rv[s.name], cv[s.name]
                present[s.name] = compare(a[a != ABSENT_CODE], b[b != ABSENT_CODE], **s.bin_kwargs())
        entry = {"flows": len(candidate.of(c)), "fields": fields, "fields_present": present,
                 "mean": {m: mean_of(v[m] for v in fields.values() if v) for m in METRICS}}
        entry["mean_by_group"] = {
            g: {m: mean_of(fields[s.name][m] for s in SPECS if s.group == g and fields[s.name]) for m in METRICS}
            for g in GROUPS}
        entry["mean_by_group"]["header_present"] = {
            m: mean_of(v[m] for v in present.values() if v) for m in METRICS}
        out["classes"][c] = entry
    out["overall"] = {m: mean_of(out["classes"][c]["mean"][m] for c in classes) for m in METRICS}
    out["overall_by_group"] = {
        g: {m: mean_of(out["classes"][c]["mean_by_group"][g][m] for c in classes) for m in METRICS}
        for g in GROUPS + ("header_present",)}
    return out


def field_means(fid: dict, metric: str = "jsd") -> dict[str, float | None]:
    """Per compared quantity, the mean over classes (for the overall field table)."""
    names = [s.name for s in SPECS]
    return {n: mean_of((fid["classes"][c]["fields"][n] or {}).get(metric) for c in fid["classes"]) for n in names}


def cdf_points(v: np.ndarray, n: int = 400) -> tuple[np.ndarray, np.ndarray]:
    v = np.sort(np.asarray(v, np.float64))
    if len(v) == 0:
        return v, v
    q = np.linspace(0, 1, min(n, len(v)))
    return np.quantile(v, q), q
