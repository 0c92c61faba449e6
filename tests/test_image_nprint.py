"""Matrix <-> PNG (paper colours, snapping) and nprint CSV."""

from __future__ import annotations

import numpy as np
from PIL import Image

from engine.codec.matrix import FlowMeta
from engine.codec.image import HEIGHT, image_to_matrix, matrix_to_rgba, read_png, write_png
from engine.codec.layout import LAYOUT
from engine.codec.nprint_csv import csv_columns, matrix_to_csv, read_csv
from engine.codec.packets import ip_int


def _flow(n=50, seed=0):
    rng = np.random.default_rng(seed)
    m = rng.integers(-1, 2, size=(n, LAYOUT.width)).astype(np.int8)
    m[:, LAYOUT.cols("meta_direction")] = rng.integers(0, 2, size=(n, 1))
    m[:, LAYOUT.cols("ipv4_ver")] = [0, 1, 0, 0]
    return m


def test_png_colours_and_roundtrip(tmp_path):
    m = _flow()
    img = matrix_to_rgba(m)
    assert img.shape == (HEIGHT, LAYOUT.width, 4)
    assert tuple(img[0, LAYOUT.cols("ipv4_ver").start + 1]) == (255, 0, 0, 255)     # 1 is red
    assert tuple(img[0, LAYOUT.cols("ipv4_ver").start]) == (0, 255, 0, 255)         # 0 is green
    assert tuple(img[-1, 0]) == (0, 0, 255, 255)                                    # padding is blue
    meta = {"flow_id": "f", "label": "zoom", "proto": 6, "init_ip": "10.0.0.1", "resp_ip": "10.0.0.2",
            "init_port": 1, "resp_port": 2, "start_ns": 5, "packets": len(m)}
    write_png(tmp_path / "f.png", m, meta)
    back, meta2 = read_png(tmp_path / "f.png")
    assert np.array_equal(back, m)
    assert meta2["label"] == "zoom"


def test_snap_noisy_image():
    m = _flow(seed=1)
    img = matrix_to_rgba(m).astype(np.int16)
    rng = np.random.default_rng(2)
    noisy = np.clip(img + rng.integers(-100, 101, size=img.shape), 0, 255).astype(np.uint8)
    back = image_to_matrix(noisy)
    assert np.array_equal(back[:len(m)], m)


def test_paper_width_image_reads(tmp_path):
    m = _flow(seed=3)
    img = matrix_to_rgba(m, paper=True)
    assert img.shape[1] == LAYOUT.base_width == 1088
    Image.fromarray(img, "RGBA").save(tmp_path / "p.png")
    back, meta = read_png(tmp_path / "p.png")
    assert meta is None
    assert np.array_equal(back[:, :1088], m[:, :1088])
    assert (back[:, LAYOUT.cols("meta_direction").start] == 1).all()


def test_nprint_csv_roundtrip(tmp_path):
    m = _flow(seed=4)
    m[:, LAYOUT.cols("meta_iat")] = 0
    m[:, LAYOUT.block("ipv6")] = -1      # IPv4-only CSV (-4 -t -u -i) has no IPv6 columns
    meta = FlowMeta("f", "x", 6, ip_int("192.168.1.2"), ip_int("8.8.8.8"), 1, 2, 0, len(m))
    m[0, LAYOUT.cols("meta_direction")] = 1
    text = matrix_to_csv(m, meta)
    header = text.splitlines()[0].split(",")
    assert header[0] == "src_ip" and header[2:] == csv_columns()
    assert "ipv4_src_0" in header and "tcp_opt_319" in header and "icmp_roh_31" in header
    (tmp_path / "f.csv").write_text(text)
    back, meta2 = read_csv(tmp_path / "f.csv")
    assert np.array_equal(back[:, :LAYOUT.base_width], m[:, :LAYOUT.base_width])
    assert np.array_equal(back[:, LAYOUT.cols("meta_direction")], m[:, LAYOUT.cols("meta_direction")])
    assert meta2.init_ip == meta.init_ip and meta2.resp_ip == meta.resp_ip
