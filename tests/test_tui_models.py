"""The Models pane (checkpoint manager, Hub download/verify/delete, fine-tune form) and the system bar.

The Hub is tests/hub_fake.py (no network); detached jobs land in tmp dirs.
Snapshots live in tests/__snapshots__/test_tui_models/ (update with ``--snapshot-update``).
"""

from __future__ import annotations

import asyncio
import functools
import sys
import time

import pytest

pytest.importorskip("textual")

from textual.app import App  # noqa: E402

from netdiff_tui.screens import sysstats  # noqa: E402
from netdiff_tui.widgets.sysbar import SysBar  # noqa: E402


def sync(fn):
    """Run an async test on its own event loop (no async pytest plugin needed)."""
    @functools.wraps(fn)
    def wrapper(*a, **kw):
        return asyncio.run(fn(*a, **kw))
    return wrapper


async def wait_for(pilot, cond, timeout: float = 30.0) -> None:
    # a wall-clock deadline: on a loaded 2-core CI machine one pause can take far longer than asked
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await pilot.pause(0.05)


# -- system panel readers -------------------------------------------------------------------------

STAT = """cpu  100 20 30 800 50 0 0 0 7 0
cpu0 50 10 15 400 25 0 0 0 0 0
intr 12345
"""
MEMINFO = """MemTotal:       16384000 kB
MemFree:         2048000 kB
MemAvailable:    8192000 kB
Cached:          4096000 kB
"""


def test_parse_proc_stat():
    # busy = user + nice + system (+irq, softirq, steal); idle + iowait are not busy; guest is in user already
    assert sysstats.parse_stat(STAT) == (150, 1000)
    assert sysstats.parse_stat("intr 1 2\n") is None
    assert sysstats.parse_stat("") is None
    assert sysstats.cpu_percent((150, 1000), (200, 1100)) == pytest.approx(50.0)
    assert sysstats.cpu_percent(None, (200, 1100)) is None
    assert sysstats.cpu_percent((150, 1000), (150, 1000)) is None


def test_parse_meminfo():
    assert sysstats.parse_meminfo(MEMINFO) == ((16384000 - 8192000) * 1024, 16384000 * 1024)
    # an old kernel without MemAvailable: free + page cache count as available
    old = "MemTotal: 1000 kB\nMemFree: 100 kB\nCached: 300 kB\n"
    assert sysstats.parse_meminfo(old) == (600 * 1024, 1000 * 1024)
    assert sysstats.parse_meminfo("garbage\n") is None


def test_readers_from_files(tmp_path):
    (tmp_path / "stat").write_text(STAT)
    (tmp_path / "meminfo").write_text(MEMINFO)
    assert sysstats.cpu_times(str(tmp_path / "stat")) == (150, 1000)
    assert sysstats.memory(str(tmp_path / "meminfo"))[1] == 16384000 * 1024
    assert sysstats.cpu_times(str(tmp_path / "missing")) is None
    assert sysstats.memory(str(tmp_path / "missing")) is None
    # a not yet created output folder: the free space of its nearest existing parent
    assert sysstats.disk_free(tmp_path / "not" / "yet") == sysstats.disk_free(tmp_path) > 0


def test_no_nvml_means_no_gpu(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)     # import pynvml raises ImportError
    assert sysstats.gpus() == []
    line = sysstats.system_line(12.4, [], (2**30, 4 * 2**30), 5 * 2**30)
    assert line == "no GPU | CPU 12% | RAM 1.0G/4.0G | disk 5.0G free"


def test_nvml_that_cannot_start_means_no_gpu(monkeypatch):
    class NoDriver:
        @staticmethod
        def nvmlInit():
            raise RuntimeError("NVML Shared Library Not Found")
    monkeypatch.setitem(sys.modules, "pynvml", NoDriver)
    assert sysstats.gpus() == []


def test_gpu_line_per_device(monkeypatch):
    class Mem:
        used, total = 3 * 2**30, 80 * 2**30

    class Util:
        gpu = 42

    class FakeNvml:
        nvmlInit = nvmlShutdown = staticmethod(lambda: None)
        nvmlDeviceGetCount = staticmethod(lambda: 2)
        nvmlDeviceGetHandleByIndex = staticmethod(lambda i: i)
        nvmlDeviceGetName = staticmethod(lambda h: b"NVIDIA H100" if h == 0 else "NVIDIA A10")
        nvmlDeviceGetMemoryInfo = staticmethod(lambda h: Mem)

        @staticmethod
        def nvmlDeviceGetUtilizationRates(h):
            if h == 1:
                raise RuntimeError("not supported")     # e.g. a MIG slice
            return Util
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml)
    g = sysstats.gpus()
    assert [(x.index, x.name, x.util) for x in g] == [(0, "NVIDIA H100", 42), (1, "NVIDIA A10", -1)]
    line = sysstats.system_line(None, g, None, None)
    assert line == "GPU0 H100 42% 3.0G/80.0G | GPU1 A10 - 3.0G/80.0G | CPU - | RAM - | disk -"


class _BarApp(App):
    def __init__(self, bar: SysBar):
        super().__init__()
        self.bar = bar

    def compose(self):
        yield self.bar


@sync
async def test_sysbar_refreshes_from_its_provider_off_the_ui_thread():
    import threading
    calls = []

    def provider():
        calls.append(threading.current_thread() is threading.main_thread())
        return f"sample {len(calls)}"
    app = _BarApp(SysBar(provider=provider, interval=0.05))
    async with app.run_test() as pilot:
        await wait_for(pilot, lambda: len(calls) >= 3)
        await wait_for(pilot, lambda: app.bar.line.startswith("sample "))
        assert not any(calls), "the provider ran on the UI thread"


@sync
async def test_sysbar_default_reads_this_machine():
    app = _BarApp(SysBar(interval=0))
    async with app.run_test() as pilot:
        await wait_for(pilot, lambda: app.bar.line != "")
        parts = app.bar.line.split(" | ")
        assert parts[-3].startswith("CPU ") and parts[-2].startswith("RAM ") and parts[-1].endswith(" free")
