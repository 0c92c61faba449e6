"""engine.inputs: the one rule by which every command turns input paths into files."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import FIXTURES, ROOT
from engine.constants import CAPTURE_EXTS, FLOW_EXTS
from engine.errors import InputError
from engine.inputs import files_in, resolve_inputs


@pytest.fixture
def tree(tmp_path):
    """a/x.pcap, a/x.pcapng (twins), a/y.cap, a/sub/z.pcapng, a/.hidden/h.pcap, a/_labels/l.pcap,
    a/.dot.pcap, a/notes.txt, a/manifest.csv, a/f.npz"""
    a = tmp_path / "a"
    for rel in ("x.pcap", "x.pcapng", "y.cap", "sub/z.pcapng", ".hidden/h.pcap", "_labels/l.pcap",
                ".dot.pcap", "notes.txt", "manifest.csv", "f.npz"):
        p = a / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    return a


def names(paths, root):
    return [str(p.relative_to(root)) for p in paths]


def test_directory_scan_rules(tree):
    assert names(files_in(tree), tree) == ["sub/z.pcapng", "x.pcap", "x.pcapng", "y.cap"]
    assert names(files_in(tree, drop_twins=True), tree) == ["sub/z.pcapng", "x.pcap", "y.cap"]
    assert names(files_in(tree, recursive=False), tree) == ["x.pcap", "x.pcapng", "y.cap"]
    assert names(files_in(tree, FLOW_EXTS), tree) == ["f.npz"]          # manifest.csv is never a flow file
    assert ".dmp" in CAPTURE_EXTS and ".cap" in CAPTURE_EXTS


def test_file_glob_home_and_order(tree, monkeypatch):
    monkeypatch.setenv("HOME", str(tree.parent))
    got = resolve_inputs(["~/a/notes.txt", str(tree / "*.pcap*"), str(tree / "sub")])
    # a named file is taken whatever its extension; a glob's matches sorted; no file twice
    assert names(got, tree) == ["notes.txt", "x.pcap", "x.pcapng", "sub/z.pcapng"]
    assert resolve_inputs([tree / "x.pcap", tree / "x.pcap"]) == [tree / "x.pcap"]


@pytest.mark.parametrize("given, message", [
    ("missing.pcap", "no such file or directory"),
    ("nothing-*.pcap", "pattern matches no file"),
    ("empty", "directory holds no captures"),
])
def test_one_line_errors_name_the_input(tmp_path, given, message):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError) as e:
        resolve_inputs([tmp_path / given])
    assert message in str(e.value) and given in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(InputError, match="no input captures"):
        resolve_inputs([])


def test_cli_reports_a_missing_input_in_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "netdiff_tui", "encode", str(FIXTURES / "eth.pcap"),
                        str(tmp_path / "gone.pcap"), "-o", str(tmp_path / "ds")],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "gone.pcap" in r.stderr and "no such file" in r.stderr
    assert not (tmp_path / "ds").exists()


def test_flow_files_take_globs_and_name_a_missing_one(tmp_path):
    from engine.datasets.encoded import flow_files
    r = subprocess.run([sys.executable, "-m", "netdiff_tui", "encode", str(FIXTURES / "eth.pcap"), "-o",
                        str(tmp_path / "ds"), "--min-packets", "1", "-q"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    npz = sorted((tmp_path / "ds").rglob("*.npz"))
    assert npz and flow_files([str(tmp_path / "ds" / "*" / "*.npz")]) == npz
    with pytest.raises(InputError, match="no such file or directory") as e:
        flow_files([tmp_path / "ds" / "gone.npz"])
    assert "gone.npz" in str(e.value)
