"""Calibrating the field decoder: the values a class's sampled packets take, in aggregate, as
its training packets'.

The decoder (:mod:`engine.model.vocab`) draws each value from ``prior(v) * evidence(v)``: the
class's (or the flow profile's) frequency times the model's soft bits. But the model's soft
bits are themselves a prediction that already leans to the common values, so the product
counts the class's frequencies twice, and draws pile onto the modes: a class's small packets
came out 61 % of tls_https's packets where its training packets have 40 %, zoom's 1,100-byte
media packets 1 % instead of 12 % (bench/quality.md, packet sizes were the one packet-level
quantity where drawing every field from the class's marginals did better than the model).

So each checkpoint carries, per class and span, a log-weight per vocabulary value
(``config.json`` key ``calibration``) that is added to the prior. :func:`calibrate` fits it
like iterative proportional fitting: sample a set of flows, count the values drawn, and move
each weight by the log-ratio of the class's training share to the drawn share; a few rounds.
The weights depend on the class and the model only, so every flow is still decided by its own
seed, whatever batch it is sampled in.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from engine.codec.layout import bits_to_uint
from engine.errors import InputError

#: the spans calibrated (those a flow profile holds)
CALIBRATED = ("ipv4_tos", "ipv4_tl", "ipv4_ttl", "tcp_doff", "tcp_flags", "tcp_wsize", "meta_iat_coarse")
#: a weight moves this share of the log-ratio per round, and stays within +-LIMIT
STEP = 0.8
LIMIT = 4.0


def drawn_counts(flows: list[np.ndarray], name: str, v: np.ndarray) -> np.ndarray:
    """``(V,)``: how many packet rows of ``flows`` carry each vocabulary value ``v`` in span ``name``."""
    from .profiles import _value_index
    from .vocab import SPANS
    if not flows:
        return np.zeros(len(v))
    sub = np.concatenate(flows)[:, SPANS[name]]
    sub = sub[(sub != -1).all(axis=1)]
    vi = _value_index(bits_to_uint(sub), v.astype(np.uint64))
    return np.bincount(vi[vi >= 0], minlength=len(v)).astype(np.float64)


def calibrate(model, model_cfg: dict, labels: list[str], flows: int = 64, rounds: int = 3, seed: int = 0,
              opts=None, on_round=None) -> dict:
    """``{label: {span: [log-weight per vocabulary value]}}`` for the classes ``labels`` (those
    with a vocabulary), fitted on ``flows`` sampled flows per class and round. ``opts``: the
    :class:`engine.model.sample.SampleOptions` to sample with (default: the model's length);
    ``on_round(label, round)`` is called after each round (progress)."""
    from .sample import SampleOptions, sample_flows
    from .vocab import _entries
    L = int(model.config.max_packets)
    opts = opts or SampleOptions(packets_max=L, steps=int((model_cfg.get("sampling") or {}).get("steps", 20)))
    out: dict = {}
    for label in labels:
        vocab = (model_cfg.get("vocab") or {}).get(label) or {}
        spans = {n: _entries(vocab[n]) for n in CALIBRATED if vocab.get(n)}
        if not spans:
            continue
        w = {n: np.zeros(len(v)) for n, (v, _) in spans.items()}
        for r in range(rounds):
            cfg = {**model_cfg, "calibration": {**(model_cfg.get("calibration") or {}),
                                                label: {n: x.tolist() for n, x in w.items()}}}
            got = list(sample_flows(model, cfg, label, list(range(flows)), replace(opts, seed=seed + r)).values())
            for n, (v, cnt) in spans.items():
                target = cnt / cnt.sum()
                have = drawn_counts(got, n, v)
                if have.sum() == 0:
                    continue
                # a value never drawn counts as half a draw: its weight rises, but by a bounded step
                share = np.maximum(have, 0.5) / have.sum()
                w[n] = np.clip(w[n] + STEP * (np.log(target) - np.log(share)), -LIMIT, LIMIT)
            if on_round is not None:
                on_round(label, r)
        out[label] = {n: [round(float(a), 3) for a in x] for n, x in w.items()}
    return out


def check_calibration(table, vocab: dict, label: str) -> dict[str, np.ndarray]:
    """A class's calibration as read from config.json, range-checked against its vocabulary."""
    if not isinstance(table, dict):
        raise InputError(None, f"config.json: calibration of class {label!r} is not a table")
    out = {}
    for n, w in table.items():
        try:
            a = np.asarray(w, np.float64)
        except (TypeError, ValueError):
            a = None
        if n not in CALIBRATED or a is None or a.shape != (len(vocab.get(n, [])),) \
                or not np.isfinite(a).all() or np.abs(a).max(initial=0) > LIMIT:
            raise InputError(None, f"config.json: calibration of class {label!r}, span {n!r}: want "
                                   f"{len(vocab.get(n, []))} weights within +-{LIMIT}, one per vocabulary value")
        out[n] = a
    return out
