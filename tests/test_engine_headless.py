"""The engine never imports Textual (the TUI is a view over it)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import engine
from conftest import ROOT


def test_engine_imports_without_textual():
    mods = [m.name for m in pkgutil.walk_packages(engine.__path__, "engine.")]
    assert "engine.codec.matrix" in mods
    code = (
        "import sys, importlib\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'textual' or name.startswith('textual.'):\n"
        "            raise ImportError('textual is blocked in this test')\n"
        "sys.meta_path.insert(0, Block())\n"
        f"for m in {mods!r}:\n"
        "    importlib.import_module(m)\n"
        "assert not any(k.startswith('textual') for k in sys.modules)\n"
        "print(len(" + repr(mods) + "))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
