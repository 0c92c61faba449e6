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
