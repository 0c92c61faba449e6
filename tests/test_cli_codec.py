"""`netdiff encode/decode/inspect` as a user runs them."""

from __future__ import annotations

import csv
import filecmp
import json
import shutil
import subprocess
import sys
import zipfile

import numpy as np
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


# -- impossible matrices (#11 defect 7) -------------------------------------------------------

@pytest.fixture(scope="module")
def flow(tmp_path_factory):
    """One real flow (matrix, meta JSON string) of eth.pcap."""
    d = tmp_path_factory.mktemp("flow")
    netdiff("encode", FIXTURES / "eth.pcap", "-o", d / "ds", "--min-packets", "1")
    first = sorted((d / "ds").rglob("*.npz"))[0]
    with np.load(first) as z:
        return z["matrix"], str(z["meta"])


def save(path, matrix, meta):
    np.savez(path, matrix=matrix, meta=np.array(meta))
    return path


def refused(path, *more):
    r = netdiff("decode", path, "-o", path.with_suffix(".pcap"), *more, ok=False)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0], r.stderr
    assert not path.with_suffix(".pcap").exists()
    return lines[0]


def test_decode_refuses_values_outside_the_three(tmp_path, flow):
    m, meta = flow
    f = m.astype(np.float32)
    f[2, 17] = 0.5
    msg = refused(save(tmp_path / "half.npz", f, meta))
    assert "matrix[2, 17] (ipv4_tl bit 1) is 0.5, not 1, 0 or -1" in msg and "--snap" in msg
    g = m.astype(np.float64)
    g[0, 600] = np.nan
    assert "matrix[0, 600] (" in refused(save(tmp_path / "nan.npz", g, meta)) and "is nan" in \
        refused(tmp_path / "nan.npz")
    h = m.astype(np.int16)
    h[1, 0], h[3, 5] = 2, -7
    assert "matrix[1, 0] (ipv4_ver bit 0) is 2, not 1, 0 or -1 (1 more bad values)" in \
        refused(save(tmp_path / "two.npz", h, meta))


def test_decode_snap_only_when_asked(tmp_path, flow):
    m, meta = flow
    f = m.astype(np.float32) * 0.9
    f[0, 600] = np.nan
    p = save(tmp_path / "noisy.npz", f, meta)
    refused(p)
    netdiff("decode", p, "-o", tmp_path / "snapped.pcap", "--snap")
    netdiff("decode", save(tmp_path / "exact.npz", np.where(np.isnan(f), -1, np.rint(f)).astype(np.int8), meta),
            "-o", tmp_path / "exact.pcap")
    assert filecmp.cmp(tmp_path / "snapped.pcap", tmp_path / "exact.pcap", shallow=False)


@pytest.mark.parametrize("case,expect", [
    ("no rows", "matrix has no rows"),
    ("1025 rows", "matrix has 1025 rows, more than the 1024"),
    ("1104 columns", "matrix has shape (4, 1104), expected (packets, 1105)"),
    ("3-d", "matrix has shape (1, 4, 1105)"),
    ("object", "object"),
    ("strings", "matrix has dtype <U"),
    ("forged header", "matrix has 4000000000 rows, more than the 1024"),
    ("meta list", "metadata is a JSON list"),
    ("meta port", "metadata init_port 70000 is out of range (0 to 65535)"),
    ("meta start", "metadata start_ns -5 is out of range"),
    ("no meta", "expected matrix and meta"),
])
def test_decode_refuses_impossible_files(tmp_path, flow, case, expect):
    m, meta = flow
    m4 = np.resize(m, (4, m.shape[1]))
    p = tmp_path / "f.npz"
    d = json.loads(meta)
    if case == "no rows":
        save(p, m[:0], meta)
    elif case == "1025 rows":
        save(p, np.resize(m, (1025, m.shape[1])), meta)
    elif case == "1104 columns":
        save(p, m4[:, :-1], meta)
    elif case == "3-d":
        save(p, m4[None], meta)
    elif case == "object":
        np.savez(p, matrix=np.array([[1, 0]], dtype=object), meta=np.array(meta))
    elif case == "strings":
        save(p, m4.astype(str), meta)
    elif case == "forged header":
        save(p, m4, meta)
        with zipfile.ZipFile(p) as z:
            raw = z.read("matrix.npy").replace(b"(4, 1105)", b"(4000000000, 1105)")
            meta_npy = z.read("meta.npy")
        with zipfile.ZipFile(p, "w") as z:      # a header that would ask for 4.4 TB
            z.writestr("matrix.npy", raw)
            z.writestr("meta.npy", meta_npy)
    elif case == "meta list":
        save(p, m4, json.dumps([1, 2]))
    elif case == "meta port":
        save(p, m4, json.dumps({**d, "init_port": 70000}))
    elif case == "meta start":
        save(p, m4, json.dumps({**d, "start_ns": -5}))
    elif case == "no meta":
        np.savez(p, matrix=m4)
    assert expect in refused(p)


def nprint_csv(tmp_path, flow, edit=None, rows=None):
    """eth.pcap's first flow as an nprint CSV file, ``edit`` applied to its lines (lists of cells)."""
    from engine.codec.nprint_csv import matrix_to_csv
    from engine.datasets.encoded import meta_from_json
    m, meta = flow
    if rows is not None:
        m = np.resize(m, (rows, m.shape[1]))
    lines = matrix_to_csv(m, meta_from_json(json.loads(meta))).splitlines()
    cells = [ln.split(",") for ln in lines]
    if edit:
        edit(cells)
    p = tmp_path / "flow.csv"
    p.write_text("\n".join(",".join(c) for c in cells) + "\n")
    return p, cells[0]


@pytest.mark.parametrize("value", ["5", "300", "0.5", "x", "nan"])
def test_decode_refuses_bad_nprint_cells(tmp_path, flow, value):
    def put(cells):
        cells[2][10] = value
    p, header = nprint_csv(tmp_path, flow, put)
    assert f"line 3, column {header[10]} is '{value}', not 1, 0 or -1" in refused(p)


def test_nprint_snap_and_times(tmp_path, flow):
    def half(cells):
        cells[1][10] = "0.7"
    p, _ = nprint_csv(tmp_path, flow, half)
    netdiff("decode", p, "-o", tmp_path / "s.pcap", "--snap")

    def bad_time(cells):
        cells[2][1] = "nan"
    p, _ = nprint_csv(tmp_path, flow, bad_time)
    assert "line 3, column rts is 'nan', not a time in µs >= 0" in refused(p)
    p, _ = nprint_csv(tmp_path, flow, rows=1025)
    assert "1025 rows, more than the 1024" in refused(p)


def test_decode_refuses_impossible_images(tmp_path, flow):
    from PIL import Image
    from engine.codec.image import matrix_to_rgba, write_png
    m, meta = flow
    blue = tmp_path / "blue.png"
    write_png(blue, m[:0])
    assert "matrix has no rows" in refused(blue)
    tall = tmp_path / "tall.png"
    Image.fromarray(np.concatenate([matrix_to_rgba(m)] * 2), "RGBA").save(tall)
    assert "image is 1105x2048 pixels" in refused(tall)
    narrow = tmp_path / "narrow.png"
    Image.new("RGB", (100, 10)).save(narrow)
    assert "image is 100x10 pixels" in refused(narrow)
    badmeta = tmp_path / "badmeta.png"
    write_png(badmeta, m, None)
    from PIL import PngImagePlugin
    info = PngImagePlugin.PngInfo()
    info.add_text("netdiff", "{not json")
    Image.open(badmeta).save(badmeta, pnginfo=info)
    assert "netdiff text chunk is not JSON" in refused(badmeta)


def test_repair_refuses_then_snaps_float_flows(tmp_path, flow):
    m, meta = flow
    p = save(tmp_path / "f.npz", m.astype(np.float32) * 0.8, meta)
    r = netdiff("repair", p, "-o", tmp_path / "r.pcap", ok=False)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "--snap" in r.stderr
    netdiff("repair", p, "-o", tmp_path / "r.pcap", "--snap", "-q")
    assert (tmp_path / "r.pcap").exists()


@pytest.mark.parametrize("manifest,expect", [("label,x\na,b\n", "no 'file' column"),
                                             ("file,label\n../../x.npz,a\n", "is outside the dataset")])
def test_decode_refuses_bad_manifest(tmp_path, manifest, expect):
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "manifest.csv").write_text(manifest)
    r = netdiff("decode", tmp_path / "ds", "-o", tmp_path / "o.pcap", ok=False)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and expect in r.stderr
