"""TCP timestamp values as a clock (engine.model.tcp_timestamps), written when a table with
``stamps`` places the option lists."""

from __future__ import annotations

import numpy as np
import pytest
from test_tcp_options import LINUX_SYN, NNT, STAMPING, _rows

from engine.codec.layout import LAYOUT
from engine.codec.matrix import COL_DIR, COL_IAT, gaps_to_iat, iat_to_gaps
from engine.model.tcp_options import OPT, OptionLists, decode_tcp_options

GAPS_MS = [0, 20, 1, 30, 5, 1]


def _flow(model_values_on_later_rows: bool) -> np.ndarray:
    r = _rows([LINUX_SYN, LINUX_SYN, NNT, NNT, NNT, NNT], syn=[1, 1, 0, 0, 0, 0], ack=[0, 1, 1, 1, 1, 1],
              fwd=[1, 0, 1, 0, 1, 0]).astype(np.float32)
    w = COL_IAT.stop - COL_IAT.start
    iat = gaps_to_iat(np.array(GAPS_MS) * 1_000_000)
    r[:, COL_IAT] = (iat[:, None] >> np.arange(w - 1, -1, -1)) & 1
    r[1, OPT.start + 64:OPT.start + 96] = np.unpackbits(np.frombuffer((7_000_000).to_bytes(4, "big"), np.uint8))
    if not model_values_on_later_rows:
        r[2:, OPT.start + 32:OPT.start + 96] = -1
    return r


def _values(flow: np.ndarray) -> tuple[list[int], list[int]]:
    b = np.packbits(np.rint(np.clip(flow[:, OPT], 0, 1)).astype(np.uint8), axis=1)
    start = [6 if k < 2 else 2 for k in range(len(flow))]        # TS after MSS SACKOK on a SYN
    val = [int.from_bytes(b[i, s + 2:s + 6].tobytes(), "big") for i, s in enumerate(start)]
    ecr = [int.from_bytes(b[i, s + 6:s + 10].tobytes(), "big") for i, s in enumerate(start)]
    return val, ecr


def _stamped(x: np.ndarray, u: np.ndarray, lists) -> np.ndarray:
    out = decode_tcp_options(x, lists, u)
    # keep the flows whose handshake drew timestamps on both sides (every row has them then)
    d = np.rint(np.clip(out[..., LAYOUT.cols("tcp_doff")], 0, 1)) @ (1 << np.arange(3, -1, -1))
    return out[(d[:, 0] == 10) & (d[:, 1] == 10)]


def test_values_count_milliseconds_per_direction_and_echo_the_peer():
    x = np.repeat(_flow(False)[None], 400, 0)
    got = _stamped(x, np.random.default_rng(0).random(x.shape[:2]), OptionLists(STAMPING, "a"))
    assert len(got) > 20
    t = np.cumsum(iat_to_gaps(gaps_to_iat(np.array(GAPS_MS) * 1_000_000))) // 1_000_000
    t[0] = 0
    bases = set()
    for f in got:
        val, ecr = _values(f)
        assert val[0] == 0xABCD and val[1] == 7_000_000            # the model's TSvals where it wrote them
        assert ecr[0] == 0 and ecr[1] == val[0]                     # a SYN echoes nothing; the SYN-ACK the SYN
        for i in range(2, 6):
            first = i % 2                                            # rows 0, 2, 4 one direction; 1, 3, 5 the other
            assert val[i] == (val[first] + t[i] - t[first]) % 2 ** 32
            assert ecr[i] == val[i - 1]                              # the peer's last TSval
        bases.add(val[2])
    assert len(bases) == 1          # the clock continues from the SYN's base, whatever the draw


def test_a_direction_without_the_models_values_starts_at_a_drawn_base():
    f = _flow(False)[2:]            # mid-connection: no handshake, the model wrote no values
    x = np.repeat(f[None], 300, 0)
    lists = OptionLists({**STAMPING, "stamps": [99, 100]}, "a")
    out = decode_tcp_options(x, lists, np.random.default_rng(1).random(x.shape[:2]))
    ts_len = [0, 0, 0, 0, 1, 0, 1, 0]                                  # the TS option's length byte, 10
    stamped = [g for g in out if (np.rint(np.clip(g[:, OPT.start + 24:OPT.start + 32], 0, 1)) == ts_len).all()]
    assert len(stamped) > 200
    starts = [_values(np.concatenate([g[:2], g]))[0][2] for g in stamped]     # _values reads rows 0-1 as SYNs
    assert 0 not in starts and len(set(starts)) == len(starts)     # no zero clocks; each flow its own
    assert np.quantile(starts, 0.2) < 2 ** 31 < np.quantile(starts, 0.8)


def test_a_table_before_stamps_keeps_the_models_values():
    old = {k: v for k, v in STAMPING.items() if k not in ("stamps", "evidence")}
    x = _flow(True)[None].copy()
    out = decode_tcp_options(x.copy(), OptionLists(old, "a"), None)
    want = np.rint(np.clip(x[0, :, OPT], 0, 1))
    got = np.rint(np.clip(out[0, :, OPT], 0, 1))
    assert (got[2:, 32:96] == want[2:, 32:96]).all()


def test_a_class_clock_epoch_is_drawn_from_its_table_per_direction():
    # the initiator's clocks of this class start in epoch 0x52 (3 in 4) or 0x14; the responder's in 0xA4
    clock = [[1, 0x52, 3], [1, 0x14, 1], [0, 0xA4, 5]]
    lists = OptionLists({**STAMPING, "stamps": [99, 100], "clock": clock}, "a")
    x = np.repeat(_flow(True)[2:][None], 2000, 0)          # mid-connection, both directions stamp
    out = decode_tcp_options(x, lists, np.random.default_rng(4).random(x.shape[:2]))
    tops = {0: [], 1: []}
    for g in out:
        b = np.packbits(np.rint(np.clip(g[:, OPT], 0, 1)).astype(np.uint8), axis=1)
        if (b[:, 2] == 8).all():
            for i in range(2):
                tops[int(g[i, COL_DIR] > 0.5)].append(b[i, 4])
    assert len(tops[1]) > 1000 and set(tops[0]) == {0xA4} and set(tops[1]) == {0x52, 0x14}
    assert 0.7 < np.mean(np.array(tops[1]) == 0x52) < 0.8


def test_hostile_clock_tables_get_one_line():
    from engine.errors import InputError
    for bad in ([[2, 1, 1]], [[1, 256, 1]], [[1, 1, 0]], [[1, 1]], "x", [[1, 1, True]]):
        with pytest.raises(InputError) as e:
            OptionLists({**STAMPING, "clock": bad}, "a")
        assert "clock" in str(e.value) and "\n" not in str(e.value)


def test_clock_epochs_of_sixteen_bits_are_fitted_and_drawn_per_direction():
    from engine.model.tcp_timestamps import fit_clocks
    # two flows of one class: the initiator's first TSvals 0x1234_5678 and 0x1234_9999 (one
    # 65-second epoch, 0x1234), the responder's 0xABCD_0001 once; the later TSvals do not count
    rows = []
    for first, later in ((0x1234_5678, 0x1300_0000), (0x1234_9999, 0x1300_0000)):
        f = _flow(True)[2:5].astype(np.int8)                   # NNT rows: initiator, responder, initiator
        for i, v in enumerate((first, 0xABCD_0001, later)):
            f[i, OPT.start + 32:OPT.start + 64] = np.unpackbits(np.frombuffer(v.to_bytes(4, "big"), np.uint8))
        rows.append(f)
    rows = np.concatenate(rows)
    t = fit_clocks(rows, np.array([0, 3, 6]), np.zeros(2, np.int64), ["a"])["a"]
    assert t == {"bits": 16, "counts": [[0, 0xABCD, 2], [1, 0x1234, 2]]}
    lists = OptionLists({**STAMPING, "stamps": [99, 100], "clock": t}, "a")
    x = np.repeat(_flow(True)[2:][None], 600, 0)
    out = decode_tcp_options(x, lists, np.random.default_rng(6).random(x.shape[:2]))
    tops, lows = {0: set(), 1: set()}, set()
    for g in out:
        b = np.packbits(np.rint(np.clip(g[:, OPT], 0, 1)).astype(np.uint8), axis=1)
        if (b[:, 2] == 8).all():
            for i in range(2):
                tops[int(g[i, COL_DIR] > 0.5)].add(int.from_bytes(b[i, 4:6].tobytes(), "big"))
                lows.add(int.from_bytes(b[i, 6:8].tobytes(), "big"))
    assert tops == {0: {0xABCD}, 1: {0x1234}} and len(lows) > 300      # the rest of the base uniform


@pytest.mark.parametrize("bad", [{"bits": 12, "counts": [[1, 1, 1]]}, {"bits": 16, "counts": [[1, 65536, 1]]},
                                 {"bits": 16}, {"bits": True, "counts": [[1, 1, 1]]},
                                 {"bits": 8, "counts": [[1, 256, 1]]}, {"bits": 16, "counts": [[1, 1, 1]], "x": 1}])
def test_hostile_sixteen_bit_clocks_get_one_line(bad):
    from engine.errors import InputError
    with pytest.raises(InputError) as e:
        OptionLists({**STAMPING, "clock": bad}, "a")
    assert "clock" in str(e.value) and "\n" not in str(e.value)
