"""The Models pane (checkpoint manager, Hub download/verify/delete, fine-tune form) and the system bar.

The Hub is tests/hub_fake.py (no network); detached jobs land in tmp dirs.
Snapshots live in tests/__snapshots__/test_tui_models/ (update with ``--snapshot-update``).
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import shutil
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("textual")

from click.testing import CliRunner  # noqa: E402
from textual.app import App  # noqa: E402
from textual.widgets import DataTable, Footer, Header  # noqa: E402

from conftest import FIXTURES, ROOT, settle_tables  # noqa: E402
from hub_fake import DEFAULT_MODEL, FakeHub, native_files  # noqa: E402
from netdiff_tui.screens import models_data as md, sysstats  # noqa: E402
from netdiff_tui.screens.models import ModelsPane  # noqa: E402
from netdiff_tui.settings import Settings  # noqa: E402
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


# -- the Models pane ------------------------------------------------------------------------------

T_NOW = 1_800_000_000.0


@pytest.fixture(scope="module")
def hub():
    """The fake Hub with two repos of our native checkpoint (lab/cached is also in the pristine cache)."""
    h = FakeHub().start()
    h.commit("lab/net", native_files(b"# lab/net\n"))
    h.commit("lab/cached", native_files(b"# lab/cached\n"))
    yield h
    h.stop()


@pytest.fixture(scope="module")
def pristine(hub, tmp_path_factory):
    from huggingface_hub import snapshot_download
    cache = tmp_path_factory.mktemp("pristine") / "hub"
    snapshot_download("lab/cached", cache_dir=cache, endpoint=hub.endpoint)
    return cache


@pytest.fixture
def env(hub, pristine, tmp_path, monkeypatch):
    """This process and the jobs it starts see the fake Hub and a Hub cache of their own (a copy of
    the pristine one); netdiff's settings point into tmp_path."""
    from huggingface_hub import constants
    home = tmp_path / "hf"
    shutil.copytree(pristine, home / "hub", symlinks=True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", hub.endpoint)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                        hub.endpoint + "/{repo_id}/resolve/{revision}/{filename}")
    for k in [k for k in os.environ if k.startswith(("HF_", "HUGGING"))]:
        monkeypatch.delenv(k)
    # what a detached `netdiff models download` child reads at import
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("PYTHONPATH", str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("NETDIFF_JOBS_DIR", str(tmp_path / "jobs"))
    monkeypatch.chdir(ROOT)
    return tmp_path


def settings_of(tmp_path: Path) -> Settings:
    return Settings(models_dir=str(tmp_path / "models"), runs_dirs=(str(tmp_path / "runs"),),
                    jobs_dir=str(tmp_path / "jobs"), output_dir=str(tmp_path / "out"), poll_interval=0.05)


class Harness(App):
    """The Models screen alone, as the console frames it (header, system bar, footer)."""

    TITLE = "NetDiffusion Studio"

    CSS = """
    #models-table { width: 3fr; height: 1fr; }
    #models-details-box { width: 2fr; height: 1fr; border: round $panel; padding: 0 1; }
    """

    def __init__(self, settings: Settings, sysline: str = "no GPU | CPU 3% | RAM 1.0G/8.0G | disk 9.0G free"):
        super().__init__()
        self.settings = settings
        self.sysline = sysline

    def compose(self):
        yield Header()
        yield SysBar(provider=lambda: self.sysline, interval=0)
        yield ModelsPane(id="models-pane")
        yield Footer()

    def on_mount(self) -> None:
        from netdiff_tui.screens.catalog import find_models
        s = self.settings
        self.query_one(ModelsPane).show(find_models(s.expanded("models_dir"), s.expanded_runs()))
        self.query_one("#models-table").focus()


def harness(tmp_path: Path) -> Harness:
    app = Harness(settings_of(tmp_path))
    app.animation_level = "none"
    return app


def names(app) -> list[tuple[str, str]]:
    t = app.query_one("#models-table", DataTable)
    return [tuple(t.get_row_at(i)[:2]) for i in range(t.row_count)]


def notes(app) -> list[str]:
    return [str(n.message) for n in app._notifications]


async def select(pilot, name: str) -> None:
    """Move the table's cursor onto the row called ``name`` by keys."""
    app = pilot.app
    await wait_for(pilot, lambda: any(n == name for n, _ in names(app)))
    t = app.query_one("#models-table", DataTable)
    t.focus()
    await wait_for(pilot, lambda: t.has_focus)
    await pilot.press("home")
    for _ in range(t.row_count):
        if t.get_row_at(t.cursor_row)[0] == name:
            break
        await pilot.press("down")
    pane = app.query_one(ModelsPane)
    await wait_for(pilot, lambda: pane.selected is not None and pane.selected.name == name)


@sync
async def test_list_shows_default_and_hub_cache_repo_in_the_console(env):
    """The console (app.py) feeds the pane its local models; the pane adds the Hub cache."""
    from netdiff_tui.app import NetdiffApp
    app = NetdiffApp(settings=settings_of(env))
    app.animation_level = "none"
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: ("lab/cached", "hub") in names(app) and ("default", "default") in names(app))
        t = app.query_one("#models-table", DataTable)
        row = next(t.get_row_at(i) for i in range(t.row_count) if t.get_row_at(i)[0] == "lab/cached")
        cols = dict(zip(md.COLUMNS, row))
        assert cols["classes"] == "20" and cols["format"] == "native" and cols["status"] == "ready"
        assert cols["revision"].endswith("(main)") and cols["size"].endswith("MiB")
        await select(pilot, "lab/cached")
        details = app.query_one("#models-details")
        await wait_for(pilot, lambda: "model.safetensors" in str(details.render()))
        text = str(details.render())
        assert "use as: --model hf://lab/cached@" in text and "classes (20; training flows): amazon 218" in text


@sync
async def test_download_dialog_shows_size_then_runs_a_detached_job(env, hub):
    """End to end: the dry run's size first, then a real `netdiff models download --job-dir` process
    fetches from the fake Hub, and the pane follows it to the end and lists the new repo."""
    from engine.artifacts.jobs import read_job
    from engine.hub.download import plan_download
    expected = plan_download("lab/net")
    app = harness(env)
    async with app.run_test(size=(120, 40)) as pilot:
        pane = app.query_one(ModelsPane)
        await wait_for(pilot, lambda: ("default", "default") in names(app))
        await pilot.press("d")
        await wait_for(pilot, lambda: app.screen.query("#dl-repo"))
        await pilot.press(*"lab/net", "enter")
        plan = app.screen.query_one("#dl-plan")
        await wait_for(pilot, lambda: "to download" in str(plan.render()))
        text = str(plan.render())
        assert f"commit {expected.commit}" in text
        assert f"total {md.human_size(expected.total_bytes)} in 3 file(s)" in text
        assert not list((env / "jobs").glob("*")), "nothing starts before the size is confirmed"
        assert app.screen.query_one("#dl-start").has_focus
        await pilot.press("enter")
        await wait_for(pilot, lambda: pane.job_path is not None)
        rec = read_job(pane.job_path)
        assert rec.kind == "download" and rec.detached
        assert rec.argv == ["models", "download", "lab/net", "--revision", expected.commit]
        await wait_for(pilot, lambda: pane.job_status != "running", timeout=120)
        assert pane.job_status == "done", (pane.job_status, (pane.job_path / "log.txt").read_text())
        await wait_for(pilot, lambda: ("lab/net", "hub") in names(app))
        assert "download: done" in str(app.query_one("#models-job-label").render())
    snap = Path(os.environ["HF_HOME"]) / "hub" / "models--lab--net" / "snapshots" / expected.commit
    assert (snap / "model.safetensors").read_bytes() == (DEFAULT_MODEL / "model.safetensors").read_bytes()


@sync
async def test_download_dialog_says_what_is_wrong_in_one_line(env):
    app = harness(env)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: ("default", "default") in names(app))
        await pilot.press("d")
        await wait_for(pilot, lambda: app.screen.query("#dl-repo"))
        await pilot.press(*"lab/nothing", "enter")
        plan = app.screen.query_one("#dl-plan")
        await wait_for(pilot, lambda: plan.has_class("error"))
        assert "\n" not in str(plan.render()).strip() and "lab/nothing" in str(plan.render())
        assert app.screen.query_one("#dl-start").disabled
        await pilot.press("escape")
        await wait_for(pilot, lambda: not app.screen.query("#dl-repo"))
    assert not (env / "jobs").exists() or not list((env / "jobs").iterdir())


@sync
async def test_verify_reports_a_corrupted_blob(env):
    app = harness(env)
    async with app.run_test(size=(120, 40)) as pilot:
        pane = app.query_one(ModelsPane)
        await select(pilot, "lab/cached")
        await pilot.press("v")
        await wait_for(pilot, lambda: any("intact" in n for n in notes(app)))
        # one changed byte in the weights' blob (the cache names the blob by its sha256)
        snap = Path(pane.selected.revisions[0]["snapshot"])
        blob = (snap / "model.safetensors").resolve()
        data = bytearray(blob.read_bytes())
        data[len(data) // 2] ^= 0xFF
        blob.write_bytes(bytes(data))
        await pilot.press("v")
        await wait_for(pilot, lambda: any("damaged" in n for n in notes(app)))
        bad = next(n for n in notes(app) if "damaged" in n)
        assert "model.safetensors" in bad and "config.json" not in bad
        details = str(app.query_one("#models-details").render())
        assert "verify: DAMAGED, 1 of 3" in details and "BAD model.safetensors" in details


@sync
async def test_delete_shows_the_bytes_and_needs_confirmation(env):
    from huggingface_hub import constants
    from engine.datasets.recipes import user_dir
    repo = Path(constants.HF_HUB_CACHE) / "models--lab--cached"
    blobs = sum(p.stat().st_size for p in (repo / "blobs").iterdir())
    commit = next((repo / "snapshots").iterdir()).name
    user_dir().mkdir(parents=True)
    (user_dir() / "mine.toml").write_text(f'model = "hf://lab/cached@{commit}"\n')
    app = harness(env)
    async with app.run_test(size=(120, 40)) as pilot:
        # the shipped default is refused outright
        await select(pilot, "default")
        await pilot.press("x")
        await wait_for(pilot, lambda: any("cannot be deleted" in n for n in notes(app)))
        await select(pilot, "lab/cached")
        await pilot.press("x")
        await wait_for(pilot, lambda: app.screen.query("#del-plan"))
        plan = str(app.screen.query_one("#del-plan").render())
        assert f"({blobs} bytes)" in plan and "recipe mine.toml uses this model" in plan
        assert any("recipe mine.toml uses this model" in n for n in notes(app))
        await pilot.press("enter")          # the focus is on Keep: Enter alone deletes nothing
        await wait_for(pilot, lambda: not app.screen.query("#del-plan"))
        assert repo.is_dir() and any("nothing deleted" in n for n in notes(app))
        await pilot.press("x")
        await wait_for(pilot, lambda: app.screen.query("#del-plan"))
        await pilot.press("tab", "enter")   # to Delete, and confirm
        await wait_for(pilot, lambda: ("lab/cached", "hub") not in names(app))
        assert any("freed" in n for n in notes(app))
    assert not repo.exists()


def encoded(tmp_path: Path, label: str = "dns") -> Path:
    from netdiff_tui.cli import main
    out = tmp_path / "encoded"
    r = CliRunner().invoke(main, ["encode", str(FIXTURES / "eth.pcap"), "--label", label, "-o", str(out), "-q"])
    assert r.exit_code == 0, r.output
    return out


async def fill_finetune(pilot, data: Path, classes: str | None = None, steps: str = "5") -> None:
    app = pilot.app
    await pilot.press("f")
    await wait_for(pilot, lambda: app.screen.query("#ft-data"))
    await pilot.press(*str(data))
    await pilot.press("tab")
    if classes is not None:
        app.screen.query_one("#ft-classes").value = ""
        await pilot.press(*classes)
    await pilot.press("tab")
    app.screen.query_one("#ft-steps").value = ""
    await pilot.press(*steps, "enter")


@sync
async def test_finetune_form_builds_the_train_command_and_starts_a_job(env, monkeypatch):
    import engine.jobs
    started = []

    def fake_start(jobs_dir, kind, argv, **kw):
        started.append((kind, argv, kw))
        return engine.jobs.create_job(jobs_dir, kind, kw.get("request"), kw.get("out"), kw.get("label", ""),
                                      argv=argv, resume_args=kw.get("resume_args"))
    monkeypatch.setattr(engine.jobs, "start_detached", fake_start)
    data = encoded(env, label="newapp")
    app = harness(env)
    async with app.run_test(size=(120, 40)) as pilot:
        await select(pilot, "default")
        # a class list that drops the checkpoint's classes: said in the form, nothing starts
        await fill_finetune(pilot, data, classes="dns, newapp")
        msg = app.screen.query_one("#ft-msg")
        await wait_for(pilot, lambda: msg.has_class("error"))
        assert "missing: amazon" in str(msg.render()) and not started
        await pilot.press("escape")
        await wait_for(pilot, lambda: not app.screen.query("#ft-data"))
        await fill_finetune(pilot, data)
        await wait_for(pilot, lambda: started)
        await wait_for(pilot, lambda: any("new classes from the data: newapp" in n for n in notes(app)))
    kind, argv, kw = started[0]
    out = env / "runs" / "default-ft"
    if "--init-from" in md.train_options():
        assert argv == ["train", "--data", str(data), "--out", str(out), "--steps", "5", "--init-from", "default"]
    else:       # a netdiff train without --init-from: init_from in a config written into the run
        assert argv[-2:] == ["--config", str(out / md.FINETUNE_CONFIG)]
        assert json.loads((out / md.FINETUNE_CONFIG).read_text())["init_from"] == "default"
    assert kind == "train" and kw["resume_args"] == ("--resume",) and Path(kw["out"]) == out


@pytest.mark.slow
@sync
async def test_finetune_runs_as_a_detached_job(env):
    """End to end: the form's command really trains (3 steps from the shipped default) as its own process."""
    from engine.artifacts.jobs import read_job
    data = encoded(env)
    app = harness(env)
    async with app.run_test(size=(120, 40)) as pilot:
        pane = app.query_one(ModelsPane)
        await select(pilot, "default")
        await fill_finetune(pilot, data, steps="3")
        await wait_for(pilot, lambda: pane.job_path is not None)
        await wait_for(pilot, lambda: pane.job_status != "running", timeout=300)
        assert pane.job_status == "done", (pane.job_path / "log.txt").read_text()
    rec = read_job(pane.job_path)
    assert rec.kind == "train" and rec.argv[0] == "train"
    out = env / "runs" / "default-ft"
    cfg = json.loads((out / "model" / "config.json").read_text())
    assert cfg["classes"] == json.loads((DEFAULT_MODEL / "config.json").read_text())["classes"]


@pytest.mark.slow
@sync
async def test_cancel_the_followed_job(env):
    """c stops the job the pane follows (SIGTERM to its process group, as `netdiff jobs cancel`)."""
    from engine.artifacts.jobs import effective_status, read_job
    data = encoded(env)
    app = harness(env)
    async with app.run_test(size=(120, 40)) as pilot:
        pane = app.query_one(ModelsPane)
        assert pane.check_action("cancel_job", ()) is False      # no job: the key is not offered
        await select(pilot, "default")
        await fill_finetune(pilot, data, steps="100000")
        label = app.query_one("#models-job-label")
        await wait_for(pilot, lambda: "step " in str(label.render()), timeout=300)
        app.query_one("#models-table").focus()
        await pilot.press("c")
        await wait_for(pilot, lambda: pane.job_status != "running", timeout=300)
        assert pane.job_status == "cancelled", (pane.job_path / "log.txt").read_text()
    assert effective_status(read_job(pane.job_path))[0] == "cancelled"


def test_finetune_plan_refuses_what_train_would(env):
    from engine.model.train import TrainConfig
    from netdiff_tui.screens.catalog import find_models
    data = encoded(env)
    row = md.local_row(next(m for m in find_models(env / "models", []) if m.kind == "default"))
    own = json.loads((DEFAULT_MODEL / "config.json").read_text())
    with pytest.raises(md.InputError, match=r"no manifest\.csv\); it holds captures: encode them first"):
        md.finetune_plan(row, str(FIXTURES), "", "5", str(env / "run"))
    with pytest.raises(md.InputError, match="steps: 'many' is not a whole number"):
        md.finetune_plan(row, str(data), "", "many", str(env / "run"))
    # a time limit goes on the command as given, once it reads as a duration
    with pytest.raises(md.InputError, match="time limit: 'soon' is not a duration"):
        md.finetune_plan(row, str(data), "", "5", str(env / "run"), options={"--time-limit"}, time_limit_text="soon")
    timed = md.finetune_plan(row, str(data), "", "5", str(env / "run"), options={"--time-limit", "--init-from"},
                             time_limit_text=" 1h30m ")
    assert timed.argv[timed.argv.index("--time-limit") + 1] == "1h30m"
    # --init-from: an explicit class list keeps every old class and goes into a training config
    ft = md.finetune_plan(row, str(data), ", ".join(own["classes"] + ["extra"]), "5", str(env / "run"),
                          options={"--init-from"})
    assert ft.argv[ft.argv.index("--init-from") + 1] == "default"
    assert ft.config == {"classes": own["classes"] + ["extra"]}
    # without --init-from (an older netdiff train): init_from, the architecture and the classes in the config
    other = encoded(env / "o", label="martian")
    with pytest.raises(md.InputError, match="the data has no flows of the checkpoint's classes"):
        md.finetune_plan(row, str(other), "", "5", str(env / "run"), options=set())
    with pytest.raises(md.InputError, match="not in it: martian"):
        md.finetune_plan(row, str(data), "dns, martian", "5", str(env / "run"), options=set())
    plain = md.finetune_plan(row, str(data), ", ".join(reversed(own["classes"])), "5", str(env / "run"),
                             options=set())
    assert "--init-from" not in plain.argv and plain.argv[-2:] == ["--config", str(env / "run" / md.FINETUNE_CONFIG)]
    plain.write_config()
    cfg = TrainConfig.load(plain.config_path)       # a config netdiff train accepts
    # the checkpoint's class order (its weights index classes by position), its architecture
    assert cfg.init_from == "default" and cfg.classes == own["classes"] and cfg.steps == 5
    assert cfg.model == {k: v for k, v in own["model"].items() if k not in ("num_classes", "width")}
    # a Stable Diffusion pipeline gets a LoRA adapter; an adapter itself is no starting point
    sd = md.PaneRow("lab/sd", "hub", "hf://lab/sd@" + "a" * 40, "/x", "diffusers", [], 1,
                    revisions=[{"commit": "a" * 40, "refs": ["main"], "size": 1}])
    ft = md.finetune_plan(sd, str(data), "", "7", str(env / "sdrun"), options={"--init-from"})
    assert ft.argv == ["train", "--data", str(data), "--out", str(env / "sdrun"), "--steps", "7",
                       "--model-type", "sd", "--base", sd.ref] and ft.config is None
    with pytest.raises(md.InputError, match="not a lora one"):
        md.finetune_plan(md.PaneRow("ad", "local", "/ad", "/ad", "lora", [], 1), str(data), "", "7", str(env / "r"))


# -- snapshots (fixed size, no animation, ages masked; tests/__snapshots__/test_tui_models/*.svg) ----

def _mask(monkeypatch, tmp_path):
    monkeypatch.setattr(md, "age", lambda t: "-" if not t else "2d ago")
    real = md.display_path

    def shown(p):
        return real(str(p).replace(str(tmp_path), "/tmp/t").replace(str(ROOT), "/opt/netdiff"))
    monkeypatch.setattr(md, "display_path", shown)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
def test_snapshot_models_screen(env, monkeypatch, snap_compare, size):
    _mask(monkeypatch, env)
    app = harness(env)

    async def before(pilot):
        await select(pilot, "lab/cached")
        details = app.query_one("#models-details")
        await wait_for(pilot, lambda: "used by recipes" in str(details.render()))
        await wait_for(pilot, lambda: app.query_one(SysBar).line != "")

    assert snap_compare(app, terminal_size=size, run_before=before)


def test_snapshot_download_dialog(env, monkeypatch, snap_compare):
    _mask(monkeypatch, env)
    app = harness(env)

    async def before(pilot):
        await wait_for(pilot, lambda: ("lab/cached", "hub") in names(app))
        await settle_tables(pilot)
        await pilot.press("d")
        await wait_for(pilot, lambda: app.screen.query("#dl-repo"))
        for w in app.screen.query("Input"):
            w.cursor_blink = False
        await pilot.press(*"lab/net", "enter")
        await wait_for(pilot, lambda: "to download" in str(app.screen.query_one("#dl-plan").render()))

    assert snap_compare(app, terminal_size=(80, 24), run_before=before)


def test_snapshot_delete_dialog(env, monkeypatch, snap_compare):
    _mask(monkeypatch, env)
    app = harness(env)

    async def before(pilot):
        await select(pilot, "lab/cached")
        await settle_tables(pilot)              # the table under the dialog is drawn as it is now
        await pilot.press("x")
        await wait_for(pilot, lambda: app.screen.query("#del-plan"))

    assert snap_compare(app, terminal_size=(80, 24), run_before=before)
