"""Shared test fixtures: where the real captures are, and small helpers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"


def data_dir() -> Path:
    """Real captures: $NETDIFF_DATA, else ../shared/data next to the repository."""
    return Path(os.environ.get("NETDIFF_DATA", ROOT.parent / "shared" / "data"))


def real_captures() -> list[Path]:
    real = data_dir() / "real"
    if not real.is_dir():
        return []
    return sorted(p for p in real.rglob("*") if p.suffix in (".pcap", ".pcapng"))


@pytest.fixture(scope="session")
def real_dir() -> Path:
    real = data_dir() / "real"
    if not real.is_dir():
        pytest.skip(f"real captures not found at {real} (set NETDIFF_DATA to the folder holding real/)")
    return real
