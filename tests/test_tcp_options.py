"""TCP option lists as values (engine.model.tcp_options): fitted per class and role, drawn from
the model's soft bits, range-checked when read."""

from __future__ import annotations

import numpy as np
import pytest

from engine.codec.layout import COL_DIR, LAYOUT, bits_to_uint
from engine.errors import InputError
from engine.model.tcp_options import DOFF, EVIDENCE, OPT, OptionLists, decode_tcp_options, fit_tcp_options

LINUX_SYN = bytes.fromhex("020405b40402080a0000abcd0000000001030307")      # MSS SACKOK TS NOP WS
WIN_SYN = bytes.fromhex("020405b40103030801010402")                        # MSS NOP WS NOP NOP SACKOK
NNT = bytes.fromhex("0101080a0000123400005678")                            # NOP NOP TS


def _rows(lists: list[bytes], syn: list[int], ack: list[int], fwd: list[int] | None = None) -> np.ndarray:
    r = np.full((len(lists), LAYOUT.width), -1, np.int8)
    for i, o in enumerate(lists):
        r[i, DOFF] = [int(c) for c in f"{5 + len(o) // 4:04b}"]
        bits = np.unpackbits(np.frombuffer(o, np.uint8)).astype(np.int8)
        r[i, OPT.start:OPT.start + len(bits)] = bits
        r[i, LAYOUT.cols("tcp_syn").start] = syn[i]
        r[i, LAYOUT.cols("tcp_ackf").start] = ack[i]
        r[i, COL_DIR] = 1 if fwd is None else fwd[i]
    return r


def test_fit_keeps_lists_per_role_with_timestamp_values_free():
    rows = _rows([LINUX_SYN, LINUX_SYN, WIN_SYN, NNT, NNT, b"", bytes.fromhex("020405b4"), bytes.fromhex("05060000")],
                 syn=[1, 1, 1, 0, 0, 0, 1, 0], ack=[0, 0, 1, 1, 1, 1, 1, 1])
    t = fit_tcp_options(rows, np.array([0, len(rows)]), np.zeros(1, np.int64), ["a"])["a"]
    assert t["stamps"] == [0, 0] and t["evidence"] == EVIDENCE      # its one flow has its SYN
    assert t["syn"] == [["020405b40402080axxxxxxxxxxxxxxxx01030307", 2]]
    assert sorted(t["synack"]) == [["020405b4", 1], ["020405b40103030801010402", 1]]
    # NOP NOP TS twice, no options once; the malformed list (SACK of length 6 cut short) is not a value
    assert t["other"] == [["0101080axxxxxxxxxxxxxxxx", 2], ["", 1]]


def test_decode_takes_the_nearest_list_and_its_offset_keeping_timestamp_values():
    lists = OptionLists({"syn": [["020405b40402080axxxxxxxxxxxxxxxx01030307", 5], ["020405b40103030801010402", 5]],
                         "other": [["0101080axxxxxxxxxxxxxxxx", 5], ["", 5]]}, "a")
    want = _rows([LINUX_SYN, NNT, NNT, NNT], syn=[1, 0, 0, 0], ack=[0, 1, 1, 1], fwd=[1, 1, 1, 1]).astype(np.float32)
    x = want.copy()
    rng = np.random.default_rng(0)
    # the model's soft bits: the list blurred; the SYN's NOP byte (position 16) lost a bit
    x[:, OPT] = np.where(x[:, OPT] >= 0, np.abs(x[:, OPT] - rng.uniform(0, 0.3, (4, 320))), x[:, OPT])
    x[0, OPT.start + 16 * 8 + 7] = 0.1
    # the third segment's model put no options; the flow's other segments outvote it
    x[2, OPT] = -0.9
    x[2, DOFF] = [0, 1, 0, 1]
    got = decode_tcp_options(x[None].copy(), lists, None)[0]
    snapped = np.rint(np.clip(got, -1, 1)).astype(np.int8)
    assert (snapped[0, OPT] == want[0, OPT]).all() and bits_to_uint(snapped[:1, DOFF])[0] == 10
    for i in (1, 2, 3):
        assert bits_to_uint(snapped[i:i + 1, DOFF])[0] == 8
        assert (snapped[i, OPT.start:OPT.start + 32] == want[1, OPT.start:OPT.start + 32]).all()
        assert (snapped[i, OPT.start + 96:OPT.stop] == -1).all()
    # timestamp values stay the model's (row 1's; row 2 had none: clipped to 0)
    assert (snapped[1, OPT.start + 32:OPT.start + 96] == want[1, OPT.start + 32:OPT.start + 96]).all()


def test_later_segments_carry_timestamps_exactly_when_the_handshake_has_them():
    lists = OptionLists({"syn": [["020405b40103030801010402", 1]],                       # no timestamps
                         "synack": [["020405b40103030801010402", 1]],
                         "other": [["0101080axxxxxxxxxxxxxxxx", 99], ["", 1]]}, "a")
    rows = _rows([WIN_SYN, WIN_SYN, NNT, NNT], syn=[1, 1, 0, 0], ack=[0, 1, 1, 1], fwd=[1, 0, 1, 0]).astype(np.float32)
    # flow 0 has the handshake; flow 1 starts mid-connection (no SYN): the model's timestamps stay
    x = np.stack([rows, np.concatenate([rows[2:], rows[2:]])])
    got = np.rint(np.clip(decode_tcp_options(x, lists, None), -1, 1)).astype(np.int8)
    assert (bits_to_uint(got[0, 2:, DOFF]) == 5).all()
    assert (bits_to_uint(got[1, :, DOFF]) == 8).all()


def test_draws_follow_counts_where_the_model_is_unsure():
    lists = OptionLists({"syn": [["020405b40103030801010402", 3], ["020405b4", 1]]}, "a")
    x = np.zeros((1, 2000, LAYOUT.width), np.float32)
    x[..., DOFF] = [0, 1, 1, 0]
    x[..., LAYOUT.cols("tcp_syn").start] = 1
    # the shared MSS word there; the longer list's other bytes as likely absent as present
    # (a 1 bit at 0: "0" sure, so 1 and absent both at the floor; a 0 bit at -0.5: half 0, half absent)
    t = np.unpackbits(np.frombuffer(bytes.fromhex("020405b40103030801010402"), np.uint8)).astype(np.float32)
    x[..., OPT.start:OPT.start + 32] = t[:32]
    x[..., OPT.start + 32:OPT.start + 96] = np.where(t[32:] == 1, 0.0, -0.5)
    x[..., OPT.start + 96:OPT.stop] = -1
    u = np.random.default_rng(1).random((1, 2000))
    got = decode_tcp_options(x, lists, u)[0]
    share = (bits_to_uint(np.rint(got[:, DOFF]).astype(np.int8)) == 8).mean()
    assert 0.6 < share < 0.9


def test_fit_counts_the_flows_seen_without_their_handshake_and_those_that_stamp():
    hand = _rows([LINUX_SYN, LINUX_SYN, NNT], syn=[1, 1, 0], ack=[0, 1, 1])
    mid_ts = _rows([NNT, NNT, b""], syn=[0, 0, 0], ack=[1, 1, 1])       # most segments stamped
    mid_no = _rows([b"", NNT], syn=[0, 0], ack=[1, 1])                   # half: not most
    rows = np.concatenate([hand, mid_ts, mid_no, mid_ts])
    offsets = np.array([0, 3, 6, 8, 11])
    t = fit_tcp_options(rows, offsets, np.array([0, 0, 0, 1]), ["a", "b"])
    assert t["a"]["stamps"] == [1, 2] and t["b"]["stamps"] == [1, 1]


def _soft(lists: list[bytes], syn, ack, fwd) -> np.ndarray:
    """Rows whose option bits the model is sure of (the lists given), and whose data offset the
    field decoder left at 0, which no list has: it says nothing of the lists."""
    r = _rows(lists, syn, ack, fwd).astype(np.float32)
    r[:, DOFF] = 0
    return r


STAMPING = {"syn": [["020405b40402080axxxxxxxxxxxxxxxx01030307", 1], ["020405b40103030801010402", 1]],
            "synack": [["020405b40402080axxxxxxxxxxxxxxxx01030307", 1], ["020405b40103030801010402", 3]],
            "other": [["0101080axxxxxxxxxxxxxxxx", 99], ["", 1]], "stamps": [1, 4], "evidence": EVIDENCE}


def test_a_flow_without_its_handshake_stamps_at_its_class_share_in_both_directions():
    # every segment's model says "timestamps"; the segment counts say 99 %; the class's flows
    # seen without a SYN stamped in 1 of 4 (smoothed: 2 / 6)
    one = _soft([NNT] * 4, syn=[0] * 4, ack=[1] * 4, fwd=[1, 0, 1, 0])
    x = np.repeat(one[None], 3000, 0)
    u = np.random.default_rng(2).random(x.shape[:2])
    got = np.rint(np.clip(decode_tcp_options(x, OptionLists(STAMPING, "a"), u), -1, 1)).astype(np.int8)
    doff = bits_to_uint(got[..., DOFF].reshape(-1, 4)).reshape(3000, 4)
    assert ((doff == 8) | (doff == 5)).all() and (doff == doff[:, :1]).all()     # directions agree
    # sure evidence over 96 bits weighs exp(0.003 * ~290) ~ 2.4: odds 1:2 -> ~1.2:1, not 99:1
    assert 0.45 < (doff[:, 0] == 8).mean() < 0.65
    old = {k: v for k, v in STAMPING.items() if k not in ("stamps", "evidence")}
    got = np.rint(np.clip(decode_tcp_options(np.repeat(one[None], 3000, 0), OptionLists(old, "a"), u), -1, 1))
    assert (bits_to_uint(got[:, :, DOFF].reshape(-1, 4).astype(np.int8)) == 8).all()   # a table before stamps


def test_a_syn_ack_stamps_only_after_a_stamping_syn_and_keeps_its_share():
    hs = _soft([LINUX_SYN, LINUX_SYN, NNT], syn=[1, 1, 0], ack=[0, 1, 1], fwd=[1, 0, 1])
    x = np.repeat(hs[None], 4000, 0)
    u = np.random.default_rng(3).random(x.shape[:2])
    got = np.rint(np.clip(decode_tcp_options(x, OptionLists(STAMPING, "a"), u), -1, 1)).astype(np.int8)
    d = bits_to_uint(got[..., DOFF].reshape(-1, 4)).reshape(4000, 3)
    syn_ts, ack_ts, later_ts = d[:, 0] == 10, d[:, 1] == 10, d[:, 2] == 8
    assert not (ack_ts & ~syn_ts).any() and (later_ts == (syn_ts & ack_ts)).all()
    # counts: SYN stamps 1 in 2, SYN-ACK 1 in 4 (1 in 2 after a stamping SYN); the model's sure
    # evidence (weighed by EVIDENCE) moves each some way, not all the way
    assert 0.55 < syn_ts.mean() < 0.8 and 0.5 < ack_ts[syn_ts].mean() < 0.8


def test_the_data_offset_of_the_flows_profile_picks_lists_of_its_length():
    # SYN-ACKs stamp in 1 of 4 after a stamping SYN by the counts; a flow whose profile gave its
    # SYN-ACK the offset of the list without timestamps (8) takes it, one whose profile gave 10
    # the stamped list, and the later segments follow the handshake; the model's bits are unsure
    hs = _soft([LINUX_SYN, LINUX_SYN, NNT], syn=[1, 1, 0], ack=[0, 1, 1], fwd=[1, 0, 1])
    hs[:, OPT] = 0.0
    x = np.repeat(hs[None], 2000, 0)
    x[:, 0, DOFF] = [1, 0, 1, 0]                                 # the SYNs: 10, stamped
    x[:1000, 1, DOFF] = [1, 0, 0, 0]
    x[1000:, 1, DOFF] = [1, 0, 1, 0]
    u = np.random.default_rng(5).random(x.shape[:2])
    got = np.rint(np.clip(decode_tcp_options(x, OptionLists(STAMPING, "a"), u), -1, 1)).astype(np.int8)
    d = bits_to_uint(got[..., DOFF].reshape(-1, 4)).reshape(2000, 3)
    assert (d[:, 0] == 10).mean() > 0.97
    assert (d[:1000, 1] == 8).mean() > 0.97 and (d[1000:, 1] == 10).mean() > 0.9
    assert ((d[:, 2] == 8) == ((d[:, 0] == 10) & (d[:, 1] == 10))).all()


@pytest.mark.parametrize("bad", [
    {"syn": [["020405b4", 1]], "stamps": [1, 2]}, {"syn": [["020405b4", 1]], "evidence": 0.1},
    {"syn": [["020405b4", 1]], "stamps": [3, 2], "evidence": 0.1},
    {"syn": [["020405b4", 1]], "stamps": [1, 2], "evidence": 2},
    {"syn": [["020405b4", 1]], "stamps": [1, 2], "evidence": True},
    {"syn": [["020405b4", 1]], "stamps": [1.0, 2], "evidence": 0.1},
    {"syn": [["020405b4", 1]], "stamps": "1/2", "evidence": 0.1},
    [], {"syn": []}, {"fin": [["", 1]]}, {"syn": [["0204", 1]]}, {"syn": [["zz0405b4", 1]]},
    {"syn": [["020405b4", 0]]}, {"syn": [["020405b4", True]]}, {"syn": [["00" * 44, 1]]},
    {"syn": [["020405b4", 1]] * 65}, {"syn": "020405b4"}])
def test_hostile_tables_get_one_line(bad):
    with pytest.raises(InputError) as e:
        OptionLists(bad, "a")
    assert "tcp_options" in str(e.value) and "\n" not in str(e.value)


def test_sampled_syns_carry_the_class_lists():
    """End to end through the sampler (the shipped model, a few steps): every SYN row, before the
    repair, carries one of the class's lists; without the table (an older checkpoint) the
    model's bits, which make lists the table does not have."""
    from engine.model.checkpoint import load_model
    from engine.model.sample import SampleOptions, sample_flows
    model, cfg, _ = load_model(None)
    keys = ["020405b40103030801010402", "020405b4010303080101080axxxxxxxxxxxxxxxx04020000"]
    table = {"syn": [[keys[0], 3], [keys[1], 1]], "synack": [[keys[0], 1]], "other": [["", 1]]}
    opts = SampleOptions(seed=2, steps=3, packets_min=4, packets_max=12, transport="tcp")

    def lists_of(flows):
        out = []
        for m in flows.values():
            for r in m[(m[:, LAYOUT.cols("tcp_syn").start] == 1) & (m[:, DOFF.start] != -1)]:
                n = (int(bits_to_uint(r[None, DOFF])[0]) - 5) * 4
                b = np.packbits(r[OPT][: n * 8] == 1).tobytes().hex()
                out.append(b)
        return out
    held = lists_of(sample_flows(model, {**cfg, "tcp_options": {"http": table}}, "http", list(range(10)), opts))
    assert held and all(b == keys[0] or (b[:24] == keys[1][:24] and b[-8:] == keys[1][-8:]) for b in held)
    plain = lists_of(sample_flows(model, {k: v for k, v in cfg.items() if k != "tcp_options"}, "http",
                                  list(range(10)), opts))
    assert any(b not in (keys[0],) and not b.startswith(keys[1][:24]) for b in plain)
