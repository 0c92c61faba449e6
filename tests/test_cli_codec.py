"""`netdiff encode/decode/inspect` as a user runs them."""

from __future__ import annotations

import csv
import filecmp
import shutil
import subprocess
import sys

import pytest

from conftest import FIXTURES


def netdiff(*args, ok=True):
    r = subprocess.run([sys.executable, "-m", "netdiff_tui", *map(str, args)], capture_output=True, text=True)
    if ok:
        assert r.returncode == 0, r.stderr
    return r


@pytest.mark.parametrize("fmt", ["npz", "png", "nprint"])
def test_encode_decode_formats(tmp_path, fmt):
    ds = tmp_path / "ds"
    netdiff("encode", FIXTURES / "eth.pcap", "-o", ds, "--label", "loopback", "--format", fmt, "--min-packets", "1")
    rows = list(csv.DictReader(open(ds / "manifest.csv")))
    assert rows and all(r["label"] == "loopback" for r in rows)
    assert sum(int(r["packets"]) for r in rows) == 55
    ext = {"npz": ".npz", "png": ".png", "nprint": ".csv"}[fmt]
    assert all((ds / r["file"]).suffix == ext and (ds / r["file"]).exists() for r in rows)
    assert not list(tmp_path.glob(".*partial"))
    netdiff("decode", ds, "-o", tmp_path / "back.pcap")
    r = netdiff("inspect", "--json", tmp_path / "back.pcap")
    assert '"encoded_packets": 55' in r.stdout


def test_png_and_npz_decode_to_same_bytes(tmp_path):
    outs = []
    for fmt in ("npz", "png"):
        ds = tmp_path / fmt
        netdiff("encode", FIXTURES / "sll2.pcap", "-o", ds, "--format", fmt, "--min-packets", "1")
        netdiff("decode", ds, "-o", tmp_path / f"{fmt}.pcap")
        outs.append(tmp_path / f"{fmt}.pcap")
    assert filecmp.cmp(*outs, shallow=False)


def test_decoded_capture_is_read_by_tshark(tmp_path):
    if not shutil.which("tshark"):
        pytest.skip("tshark not installed (.ci/run installs it)")
    ds = tmp_path / "ds"
    netdiff("encode", FIXTURES / "multi_if.pcapng", "-o", ds, "--min-packets", "1")
    netdiff("decode", ds, "-o", tmp_path / "o.pcap", "--link", "raw")
    r = subprocess.run(["tshark", "-r", tmp_path / "o.pcap", "-Y", "_ws.malformed"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == ""
    r = subprocess.run(["tshark", "-r", tmp_path / "o.pcap"], capture_output=True, text=True)
    assert len(r.stdout.strip().splitlines()) == 110


def test_refuses_to_overwrite_and_force(tmp_path):
    ds = tmp_path / "ds"
    netdiff("encode", FIXTURES / "eth.pcap", "-o", ds)
    r = netdiff("encode", FIXTURES / "eth.pcap", "-o", ds, ok=False)
    assert r.returncode == 2 and "not empty" in r.stderr
    netdiff("encode", FIXTURES / "eth.pcap", "-o", ds, "--force", "--label", "x")
    assert (ds / "x").is_dir() and not (ds / "unlabeled").exists()


def test_layout_command():
    r = netdiff("layout")
    assert "tcp_syn" in r.stdout and "1105 columns" in r.stdout


def test_same_stem_captures_do_not_collide(tmp_path):
    d = tmp_path / "in" / "cls"
    d.mkdir(parents=True)
    shutil.copy(FIXTURES / "eth.pcap", d / "x.pcap")
    shutil.copy(FIXTURES / "multi_if.pcapng", d / "x.pcapng")
    netdiff("encode", tmp_path / "in", "-o", tmp_path / "ds", "--label-from-dir", "--min-packets", "1")
    rows = list(csv.DictReader(open(tmp_path / "ds" / "manifest.csv")))
    files = [r["file"] for r in rows]
    assert len(files) == len(set(files))
    assert all((tmp_path / "ds" / f).exists() for f in files)
    assert sum(int(r["packets"]) for r in rows) == 55 + 110
