"""A sampled flow's seed (the one a request gives flow ``i``) and its named random streams.

Every draw of a flow (its length, its directions, its ports, its field values, ...) reads its own
stream of the flow's seed, so a flow is the same whatever else is drawn around it, and a new
draw leaves the others' numbers alone. The tags are declared here, together, so that two draws
cannot share a stream by accident.
"""

from __future__ import annotations

import hashlib

import numpy as np

LENGTH = 0x1E               #: engine.model.lengths.draw_shape: length and transport
INITIATORS = 0xD1           #: engine.model.directions.draw_initiators: the initiator's packet count
DIRECTION_KEYS = 0xD2       #: engine.model.directions.gumbel_keys: which rows are the initiator's
OPENING = 0xD3              #: engine.model.directions: the first packets' direction pattern
PORTS = 0x9047              #: engine.model.ports: server port entry and ephemeral client port
FIELD_UNIFORMS = 0x70CA     #: engine.model.sample: per row and field, the field decoder's draws
FLOW_DRAWS = 0x9F0F         #: engine.model.sample: per flow, the profile and pair draws
ISN = 0x15E0                #: engine.model.tcp_isn: the two initial sequence numbers


def flow_seed(seed: int, index: int, attempt: int) -> int:
    """Flow ``index``'s 63-bit seed in a request of ``seed`` (``attempt``: its redraws)."""
    h = hashlib.sha256(f"netdiff/{seed}/{index}/{attempt}".encode()).digest()
    return int.from_bytes(h[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF


def of(seed: int, tag: int) -> np.random.Generator:
    """The random stream ``tag`` (one of this module's constants) of the flow seed ``seed``."""
    s = int(seed)
    return np.random.default_rng([s & 0xFFFF_FFFF, s >> 32, tag])
