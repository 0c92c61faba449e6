"""The initiator's packet count (engine.model.directions): fitted per class, drawn with the
flow's shape, held while sampling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.codec.layout import COL_DIR, LAYOUT
from engine.errors import InputError
from engine.model.directions import (HEAD, check_directions, check_heads, draw_head, draw_initiators,
                                     fit_directions, fit_heads, gumbel_keys, head_keys, hold_directions)
from engine.model.lengths import FIXED_HEADER


def _flows(dirs: list[list[int]], proto: int = 6) -> tuple[np.ndarray, np.ndarray]:
    rows = np.full((sum(map(len, dirs)), LAYOUT.width), -1, np.int8)
    rows[:, :96] = 0
    rows[:, LAYOUT.cols("ipv4_proto")] = [int(c) for c in f"{proto:08b}"]
    rows[:, FIXED_HEADER[proto]] = 0
    rows[:, COL_DIR] = np.concatenate(dirs)
    return rows, np.concatenate([[0], np.cumsum([len(d) for d in dirs])])


def test_fit_counts_initiator_packets_per_length_and_transport():
    rows, offsets = _flows([[1, 0, 1, 0], [1, 1, 1, 0], [1, 0, 1, 0], [1, 0], [1, 1, 0, 0, 0, 1]])
    t = fit_directions(rows, offsets, np.array([0, 0, 0, 0, 1]), ["a", "b"], max_packets=5)
    assert t["a"] == [[2, 6, 1, 1], [4, 6, 2, 2], [4, 6, 3, 1]]
    assert t["b"] == [[5, 6, 2, 1]]                      # cut at max_packets: the last packet is not counted


def test_draws_follow_the_table_and_fall_back_to_the_bucket_share():
    table = check_directions([[4, 6, 2, 3], [4, 6, 3, 1], [8, 17, 8, 5]], "a")
    got = [draw_initiators(table, s, 4, 6) for s in range(400)]
    assert set(got) == {2, 3} and 0.65 < got.count(2) / 400 < 0.85
    assert draw_initiators(table, 1, 4, 6) == draw_initiators(table, 1, 4, 6)       # the seed decides
    assert {draw_initiators(table, s, 5, 6) for s in range(50)} <= {2, 3, 4}       # 5 is 4's bucket: shares .5/.75
    assert draw_initiators(table, 0, 12, 17) == 12                                   # all the initiator's, scaled
    assert draw_initiators(table, 0, 16, 17) is None and draw_initiators(table, 0, 4, 1) is None


@pytest.mark.parametrize("bad", [[], [[4, 6, 5, 1]], [[0, 6, 0, 1]], [[4, 9, 1, 1]], [[4, 6, 1, 0]], [[4, 6, 1]],
                                 "x", [[4, 6, 1, 2 ** 70]]])
def test_hostile_tables_get_one_line(bad):
    with pytest.raises(InputError, match="directions of class 'a'") as e:
        check_directions(bad, "a")
    assert "\n" not in str(e.value)


def test_hold_keeps_the_count_and_follows_the_model():
    B, L = 64, 12
    rows = torch.arange(L)[None, :] < torch.tensor([12, 8, 3, 1] * 16)[:, None]
    x0 = torch.rand(B, L, LAYOUT.width) * 2 - 1
    x0[:, :, COL_DIR] = torch.linspace(0.95, 0.05, L)               # the model: early rows the initiator's
    counts = torch.tensor([6, 3, 2, 1] * 15 + [-1] * 4)
    before = x0[-4:].clone()
    hold_directions(x0, rows, counts, gumbel_keys(list(range(B)), L))
    d = x0[:, :, COL_DIR]
    for j in range(60):
        n = int(rows[j].sum())
        assert d[j, 0] == 1 and int((d[j, :n] == 1).sum()) == int(counts[j]) and int((d[j, :n] == 0).sum()) == n - int(counts[j])
        assert (d[j, n:] == -1).all()
    assert torch.equal(x0[-4:], before)                              # -1: left to the model
    # Gumbel-top-k over the model's odds: the rows it is surest of are chosen most often
    full = d[0:60:4, :12] == 1
    assert full[:, 1:4].float().mean() > full[:, 8:].float().mean() + 0.3


def test_sampled_flows_keep_the_drawn_count():
    """End to end through the sampler: every flow's initiator packets are what the table draws for
    its length and transport; without the table (an older checkpoint) the model's directions."""
    from engine.model.checkpoint import load_model
    from engine.model.sample import SampleOptions, sample_flows
    model, cfg, _ = load_model(None)
    table = [[n, p, 2 if n > 2 else 1, 1] for n in range(1, 9) for p in (6, 17, 1)]
    opts = SampleOptions(seed=4, steps=3, packets_min=2, packets_max=8)
    held = sample_flows(model, {**cfg, "directions": {"zoom": table}}, "zoom", list(range(12)), opts)
    for m in held.values():
        assert m[0, COL_DIR] == 1 and int((m[:, COL_DIR] == 1).sum()) == (2 if len(m) > 2 else 1), m[:, COL_DIR]
    plain = sample_flows(model, {k: v for k, v in cfg.items() if k != "directions"}, "zoom", list(range(12)), opts)
    assert any(int((m[:, COL_DIR] == 1).sum()) != (2 if len(m) > 2 else 1) for m in plain.values())


def test_heads_are_counted_by_transport_size_and_directions():
    rows, offsets = _flows([[1, 0, 1, 1, 0, 0, 0, 1, 1, 0], [1, 0, 1, 1, 0, 0, 0, 1], [1, 1], [1, 0, 0, 1],
                            [1, 0, 1, 1, 0]])
    t = fit_heads(rows, offsets, np.array([0, 0, 0, 1, 1]), ["a", "b"])
    # bit i = packet i is the initiator's, over the first HEAD (8): 1,0,1,1,0,0,0,1 -> 0b10001101 = 141
    assert HEAD == 8 and t["a"] == [[6, 2, 3, 1], [6, 8, 141, 2]]
    assert t["b"] == [[6, 4, 9, 1], [6, 5, 13, 1]]


def test_a_head_covers_the_response_and_an_older_table_keeps_four():
    """A table fitted with eight-packet heads holds a flow's packets 4-7 (the server's
    acknowledgment and response) too; a table fitted with four (before the fourteenth session)
    still draws four and leaves the rest to the keys."""
    new = check_heads([[6, 8, 0b00111101, 3], [6, 4, 13, 1]], "a")
    assert draw_head(new, 0, 20, 6, 8) == [1, 0, 1, 1, 1, 1, 0, 0]
    old = check_heads([[6, 4, 13, 3]], "a")
    assert draw_head(old, 0, 20, 6, 8) == [1, 0, 1, 1]
    assert draw_head(new, 0, 20, 6, 4) is None                    # five of eight would be too many


def test_a_drawn_head_fits_the_initiator_count():
    table = check_heads([[6, 4, 13, 9], [6, 4, 1, 1], [17, 4, 15, 5]], "a")
    got = [draw_head(table, s, 10, 6, 5) for s in range(300)]
    assert set(map(tuple, got)) == {(1, 0, 1, 1), (1, 0, 0, 0)} and 0.8 < got.count([1, 0, 1, 1]) / 300 < 0.97
    assert draw_head(table, 7, 10, 6, 5) == draw_head(table, 7, 10, 6, 5)           # the seed decides
    assert draw_head(table, 0, 10, 6, 2) == [1, 0, 0, 0]          # three initiator packets would be too many
    assert draw_head(table, 0, 4, 6, 4) is None                   # no head of four initiator packets in TCP
    assert draw_head(table, 0, 3, 6, 2) is None                   # no 3-packet head at all
    keys = head_keys(torch.zeros(2, 6), [[1, 0, 1, 1], None])
    assert keys[0, :4].tolist() == [float("inf"), float("-inf"), float("inf"), float("inf")]
    assert (keys[0, 4:] == 0).all() and (keys[1] == 0).all()


@pytest.mark.parametrize("bad", [[], [[6, 9, 1, 1]], [[6, 2, 4, 1]], [[6, 2, 1, 0]], [[9, 2, 1, 1]], [[6, 2, 1]], "x"])
def test_hostile_head_tables_get_one_line(bad):
    with pytest.raises(InputError) as e:
        check_heads(bad, "a")
    assert "heads" in str(e.value) and "\n" not in str(e.value)


def test_sampled_flows_open_with_a_drawn_head():
    """End to end through the sampler: every flow's first four directions are the table's head,
    its initiator count the directions table's."""
    from engine.model.checkpoint import load_model
    from engine.model.sample import SampleOptions, sample_flows
    model, cfg, _ = load_model(None)
    dirs = [[n, 6, 3, 1] for n in range(6, 11)]
    heads = [[6, 4, 13, 1]]
    opts = SampleOptions(seed=9, steps=3, packets_min=6, packets_max=10, transport="tcp")
    got = sample_flows(model, {**cfg, "directions": {"http": dirs}, "heads": {"http": heads}}, "http",
                       list(range(12)), opts)
    for m in got.values():
        assert m[:4, COL_DIR].tolist() == [1, 0, 1, 1] and int((m[:, COL_DIR] == 1).sum()) == 3
