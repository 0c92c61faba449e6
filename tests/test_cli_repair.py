"""`netdiff repair` and `netdiff check` as a user runs them: noisy images in, valid capture out."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import tshark_judge
from conftest import FIXTURES
from engine.codec.image import matrix_to_rgba
from engine.codec.layout import LAYOUT


def netdiff(*args):
    return subprocess.run([sys.executable, "-m", "netdiff_tui", *map(str, args)], capture_output=True, text=True)


def test_repair_noisy_images_to_a_clean_capture(tmp_path):
    rng = np.random.default_rng(7)
    for i in range(3):
        m = rng.integers(-1, 2, size=(40, LAYOUT.width)).astype(np.int8)
        img = matrix_to_rgba(m).astype(np.int16) + rng.integers(-80, 81, size=(1024, LAYOUT.width, 4))
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGBA").save(tmp_path / f"gen{i}.png")
    out = tmp_path / "out.pcap"
    r = netdiff("repair", *sorted(tmp_path.glob("*.png")), "-o", out, "--server-port", "443", "-q")
    assert r.returncode == 0, r.stderr
    rep = json.loads((tmp_path / "out.pcap.compliance.json").read_text())
    assert rep["clean"] and rep["mode"] == "repair" and rep["totals"]["before"]["packets"] > 0
    assert (tmp_path / "out.pcap.compliance.txt").read_text().startswith("Compliance repair")
    r = netdiff("check", out, "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout)["clean"]
    if tshark_judge.available():
        v = tshark_judge.judge(out)
        assert v.frames > 0 and not v.findings, v.findings[:5]


def test_check_exit_codes(tmp_path):
    # loopback capture with offloaded checksums: violations -> 1
    r = netdiff("check", FIXTURES / "eth.pcap", "-r", tmp_path / "rep")
    assert r.returncode == 1 and "NOT clean" in r.stdout
    assert (tmp_path / "rep" / "compliance.json").exists() and (tmp_path / "rep" / "compliance.txt").exists()
    r = netdiff("check", FIXTURES / "bad_truncated.pcap")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    r = netdiff("check", "--disable", "no_such_rule", FIXTURES / "eth.pcap")
    assert r.returncode == 2 and "unknown repair rule" in r.stderr


@pytest.mark.parametrize("fixture", ["eth.pcap", "sll2.pcap"])
def test_repair_capture_then_check_clean(tmp_path, fixture):
    out = tmp_path / "r.pcap"
    r = netdiff("repair", FIXTURES / fixture, "-o", out, "-q")
    assert r.returncode == 0, r.stderr
    assert netdiff("check", out).returncode == 0
