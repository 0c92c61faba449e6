"""Shared test fixtures: where the real captures are, and small helpers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# The test session never sees the user's Hugging Face cache: the console's Models tab and
# `netdiff models list` scan it, so its contents would leak into views and snapshots. Set before any
# test module imports huggingface_hub (which reads HF_HOME at import); subprocesses inherit it.
if "NETDIFF_TEST_KEEP_HF_HOME" not in os.environ:
    import atexit
    import shutil
    import tempfile
    _hf_home = tempfile.mkdtemp(prefix="netdiff-test-hf-")
    os.environ["HF_HOME"] = _hf_home
    os.environ.pop("HF_HUB_CACHE", None)
    atexit.register(shutil.rmtree, _hf_home, True)

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


@pytest.fixture(autouse=True, scope="session")
def _jobs_dir_of_the_session(tmp_path_factory):
    """Every command run by a test records its job here, not in the user's jobs directory."""
    old = os.environ.get("NETDIFF_JOBS_DIR")
    os.environ["NETDIFF_JOBS_DIR"] = str(tmp_path_factory.mktemp("jobs"))
    yield
    if old is None:
        os.environ.pop("NETDIFF_JOBS_DIR", None)
    else:
        os.environ["NETDIFF_JOBS_DIR"] = old
