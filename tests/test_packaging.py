"""The packaging helpers that decide what the bundle holds and which systems it runs on."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "packaging" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _elf_with_versions() -> Path:
    import _ctypes      # an extension module of this Python: an ELF file that needs glibc symbol versions
    return Path(_ctypes.__file__)


@pytest.mark.skipif(not shutil.which("objdump"), reason="binutils' objdump is the reference")
def test_glibc_versions_match_objdump():
    floor = _load("glibc_floor")
    elf = _elf_with_versions()
    ours = {v for v in floor.needed_versions(elf) if v.startswith("GLIBC_")}
    out = subprocess.run(["objdump", "-p", str(elf)], capture_output=True, text=True, check=True).stdout
    theirs = set(re.findall(r"\b(GLIBC_[0-9][0-9.]*)\b", out.split("Version References:")[1]))
    assert ours and ours == theirs


def test_glibc_floor_names_the_highest_version_and_ignores_other_files(tmp_path, capsys):
    floor = _load("glibc_floor")
    elf = _elf_with_versions()
    shutil.copy(elf, tmp_path / elf.name)
    (tmp_path / "notes.txt").write_text("GLIBC_9.99 in text is not a requirement\n")
    (tmp_path / "short").write_bytes(b"\x7fELF")
    assert floor.main(str(tmp_path)) == 0
    top, files = capsys.readouterr().out.split(maxsplit=1)
    want = max((v for v in floor.needed_versions(elf) if v.startswith("GLIBC_")), key=floor._key)
    assert (top, files.strip()) == (want, elf.name)
    assert floor._key("GLIBC_2.9") < floor._key("GLIBC_2.17")


def test_probe_keeps_modules_that_replace_themselves_and_drops_aliases():
    """torch.backends.cudnn swaps itself for an object without a spec; a bundle without it cannot
    import torch.nn. Aliases (os.path) and extension-registered submodules (torch._C._nn) have no file."""
    probe = _load("runtime_modules")
    import types
    import email.mime.text
    swapped = types.ModuleType("email.mime.text")      # what a self-replacing module leaves in sys.modules
    assert swapped.__spec__ is None
    assert probe.own_module("email.mime.text", swapped)
    assert probe.own_module("email.mime.text", email.mime.text)
    assert not probe.own_module("os.path", sys.modules["os.path"])
    assert not probe.own_module("_ctypes.inner", types.ModuleType("_ctypes.inner"))
    assert not probe.own_module("email.no_such_module", types.ModuleType("email.no_such_module"))


def test_identical_libraries_become_links_to_one_copy(tmp_path):
    """scipy.libs carries numpy.libs' libgfortran byte for byte: one copy stays, the other becomes a relative
    link, and PyInstaller's own top-level link to the replaced copy points at the kept one."""
    dedupe = _load("dedupe")
    for d, name, data in (("numpy.libs", "libg.so", b"same" * 10), ("scipy.libs", "libg.so", b"same" * 10),
                          ("scipy.libs", "libother.so", b"diff" * 10), ("torch/lib", "libsize.so", b"same" * 11)):
        (tmp_path / d).mkdir(parents=True, exist_ok=True)
        (tmp_path / d / name).write_bytes(data)
    toc = [("scipy.libs/libg.so", str(tmp_path / "scipy.libs/libg.so"), "BINARY"),
           ("numpy.libs/libg.so", str(tmp_path / "numpy.libs/libg.so"), "BINARY"),
           ("scipy.libs/libother.so", str(tmp_path / "scipy.libs/libother.so"), "BINARY"),
           ("torch/lib/libsize.so", str(tmp_path / "torch/lib/libsize.so"), "BINARY"),
           ("libg.so", "scipy.libs/libg.so", "SYMLINK"),
           ("notes.txt", str(tmp_path / "scipy.libs/libg.so"), "DATA")]
    out, linked = dedupe.link_duplicates(toc, min_size=0)
    assert linked == [("scipy.libs/libg.so", "numpy.libs/libg.so", 40)]
    assert out == [("scipy.libs/libg.so", "../numpy.libs/libg.so", "SYMLINK"), toc[1], toc[2], toc[3],
                   ("libg.so", "numpy.libs/libg.so", "SYMLINK"), toc[5]]
    assert dedupe.link_duplicates(toc, min_size=41) == (toc, [])      # small files are left alone
    datas = [("libg.so", "scipy.libs/libg.so", "SYMLINK"), ("x/libg.so", "../scipy.libs/libg.so", "SYMLINK"),
             ("libo.so", "scipy.libs/libother.so", "SYMLINK")]
    assert dedupe.retarget_links(datas, linked) == [("libg.so", "numpy.libs/libg.so", "SYMLINK"),
                                                    ("x/libg.so", "../numpy.libs/libg.so", "SYMLINK"), datas[2]]


def test_the_sd_route_is_a_build_choice(monkeypatch):
    probe = _load("runtime_modules")
    monkeypatch.delenv("NETDIFF_BUNDLE_SD", raising=False)
    assert probe.bundle_sd() is False           # the lab bundle by default
    monkeypatch.setenv("NETDIFF_BUNDLE_SD", "1")
    assert probe.bundle_sd() is True
    monkeypatch.setenv("NETDIFF_BUNDLE_SD", "yes")
    with pytest.raises(SystemExit, match="NETDIFF_BUNDLE_SD='yes'"):
        probe.bundle_sd()


@pytest.mark.parametrize("frozen", [False, True])
def test_sd_commands_without_the_sd_libraries_say_so_in_one_line(tmp_path, monkeypatch, frozen):
    """What the lab bundle (built without transformers and peft) and a Python install without the
    sd extra answer to an SD command: one line naming the way to the SD route, exit status 2."""
    from click.testing import CliRunner

    from engine.selftest import Skip, check_sd
    from netdiff_tui.cli import main
    for name in ("transformers", "peft"):
        monkeypatch.setitem(sys.modules, name, None)
    if frozen:
        monkeypatch.setattr(sys, "frozen", True, raising=False)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text('{"model_type": "sd-lora"}')
    monkeypatch.chdir(tmp_path)
    for argv in (["generate", "--model", "run", "--label", "zoom", "-n", "1", "-o", "out"],
                 ["train", "--model-type", "sd", "--base", "base", "--data", "run", "--out", "lora"]):
        r = CliRunner().invoke(main, argv)
        assert r.exit_code == 2, r.output
        (line,) = r.output.strip().splitlines()
        assert "transformers, peft" in line and "pip install 'netdiffusion[sd]'" in line
        assert ("built without the Stable Diffusion route" in line and "NETDIFF_BUNDLE_SD=1" in line) == frozen
    assert not (tmp_path / "out").exists() and not (tmp_path / "lora").exists()
    with pytest.raises(Skip, match="built without the SD route" if frozen else "SD libraries not installed"):
        check_sd(tmp_path)
