"""Initial sequence numbers drawn per flow direction (engine.model.tcp_isn)."""

from __future__ import annotations

import numpy as np

from engine.codec.layout import COL_DIR, LAYOUT, bits_to_uint
from engine.model.tcp_isn import SEQ, initial_numbers, write_initial_numbers

DOFF = LAYOUT.cols("tcp_doff")


def _flows(n: int) -> np.ndarray:
    """``n`` flows of 4 rows: TCP initiator, TCP responder, TCP initiator, a UDP-like row (no TCP)."""
    x = np.full((n, 4, LAYOUT.width), -1.0, np.float32)
    x[:, :3, DOFF] = [0, 1, 0, 1]
    x[:, :3, SEQ] = 0.0                              # the denoiser's bits, leaning to 0
    x[:, :, COL_DIR] = [1, 0, 1, 1]
    return x


def test_each_direction_starts_at_its_own_number_drawn_from_the_flows_seed():
    seeds = list(range(4000))
    out = write_initial_numbers(_flows(4000), seeds)
    seq = bits_to_uint(np.rint(out[..., SEQ]).astype(np.int8).reshape(-1, 32)).reshape(4000, 4).astype(np.int64)
    isn = initial_numbers(seeds).astype(np.int64)
    assert (seq[:, 0] == isn[:, 1]).all() and (seq[:, 2] == isn[:, 1]).all() and (seq[:, 1] == isn[:, 0]).all()
    assert (out[:, 3, SEQ] == -1).all()                                   # a row without TCP keeps none
    assert (seq[:, 0] != seq[:, 1]).mean() > 0.99
    top = (seq[:, :2] >> 31).mean()
    assert 0.47 < top < 0.53 and 0.47 < ((seq[:, :2] >> 30) & 1).mean() < 0.53
    again = write_initial_numbers(_flows(3), [7, 8, 9])
    assert (again == write_initial_numbers(_flows(3), [7, 8, 9])).all()
    assert (again[0] == write_initial_numbers(_flows(1), [7])[0]).all()   # a flow's own, whatever its batch


def test_sampled_flows_start_their_sequence_spaces_uniformly():
    """Through the sampler (the shipped model, a few steps): the first segment of each direction
    starts anywhere in the 32-bit space, not where the denoiser's bits lean (the repair goes on
    from there)."""
    from engine.model.checkpoint import load_model
    from engine.model.sample import SampleOptions, sample_flows
    model, cfg, _ = load_model(None)
    opts = SampleOptions(seed=3, steps=3, packets_min=4, packets_max=8, transport="tcp")
    flows = sample_flows(model, cfg, "zoom", list(range(48)), opts)
    first = []
    for m in flows.values():
        tcp = m[:, DOFF.start] != -1
        for d in (0, 1):
            r = np.nonzero(tcp & (m[:, COL_DIR] == d))[0]
            if len(r):
                first.append(int(bits_to_uint(m[r[0]:r[0] + 1, SEQ])[0]))
    first = np.asarray(first, np.int64)
    assert len(first) > 60 and 0.3 < (first >> 31).mean() < 0.7 and 0.3 < ((first >> 30) & 1).mean() < 0.7
