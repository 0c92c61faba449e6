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


def _short_tables(app) -> list:
    """The DataTables of every open screen whose auto-width columns are not yet as wide as their
    widest cell (Textual measures new rows in the table's idle handler)."""
    from rich.text import Text
    from textual.widgets import DataTable
    out = []
    for t in (t for s in app.screen_stack for t in s.query(DataTable)):
        if t._require_update_dimensions or t._updated_cells:
            out.append(t)
            continue
        for ci, col in enumerate(t.ordered_columns):
            cells = [t.get_row_at(r)[ci] for r in range(t.row_count)]
            widest = max((c.cell_len if isinstance(c, Text) else Text(str(c)).cell_len for c in cells), default=0)
            if col.auto_width and col.content_width < widest:
                out.append(t)
                break
    return out


async def settle_tables(pilot, timeout: float = 30.0) -> None:
    """Wait (with a deadline) until every table of every open screen has measured its rows, and the
    screens have drawn that: a screen under a dialog keeps the picture it had when the dialog opened,
    so tests settle before they open one. Textual is pinned in the test extra, so the DataTable
    internals used here do not move."""
    import asyncio
    import time
    deadline, nudged = time.monotonic() + timeout, set()
    while time.monotonic() < deadline:
        short = _short_tables(pilot.app)
        if not short:
            break
        for t in short:
            if id(t) not in nudged and not t._require_update_dimensions:
                nudged.add(id(t))           # measure every row again at its next idle
                t._new_rows.update(t.rows)
                t._require_update_dimensions = True
                t.check_idle()
        await asyncio.sleep(0.02)
    # Lines a table painted before it measured its rows stay in its line cache (their key does not
    # hold the column widths) until its next change: drop them so the picture shows the widths.
    from textual.widgets import DataTable
    for t in (t for s in pilot.app.screen_stack for t in s.query(DataTable)):
        t._clear_caches()
        t.refresh()
    # and the shown screen has laid out and painted what changed (a screen only does that while it
    # is the current one)
    while time.monotonic() < deadline:
        scr = pilot.app.screen
        if not (scr._layout_required or scr._scroll_required or scr._repaint_required or scr._dirty_widgets
                or any(w._layout_required or w._repaint_required for w in scr.walk_children())):
            break
        await asyncio.sleep(0.02)
    await pilot.pause()


@pytest.fixture
def snap_compare(snap_compare):
    """pytest-textual-snapshot's ``snap_compare``, taking its screenshot only once the screen has settled.

    A DataTable sizes its auto-width columns in its idle handler, after rows are added: a screenshot
    taken before that shows columns as wide as their headers. On a loaded machine that happened
    now and then (a column cut to "zoom" instead of "zoom-00000"), so every snapshot first waits
    for :func:`settle_tables`.
    """
    import asyncio

    def compare(app, *args, run_before=None, **kw):
        async def before(pilot):
            if run_before is not None:
                result = run_before(pilot)
                if asyncio.iscoroutine(result):
                    await result
            await settle_tables(pilot)
        return snap_compare(app, *args, run_before=before, **kw)
    return compare
