"""The Export tab balances too: with "top up" filled, the one chosen real <class>/*.pcap folder is
topped up (`netdiff balance --target N [--filter P]`) as a detached job instead of exported."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("textual")

from test_tui import make_app, notifications, settings, sync, wait_for  # noqa: E402,F401

from engine.errors import InputError  # noqa: E402
from netdiff_tui.screens.catalog import DatasetInfo  # noqa: E402
from netdiff_tui.screens.export import build_argv, build_balance_argv  # noqa: E402


def _real(tmp_path: Path) -> DatasetInfo:
    return DatasetInfo(tmp_path / "real", "captures", {"dns": -1, "ssh": -1})


def test_balance_argv(tmp_path):
    real, out = _real(tmp_path), tmp_path / "bal"
    argv = build_balance_argv([real], out, "100", "0.4", "0.2", "1", True, "dns")
    assert argv == ["balance", "--real", str(real.path.absolute()), "--target", "100", "-o", str(out),
                    "--class", "dns", "--split", "0.2", "--seed", "1", "--pcapng", "--filter", "0.4"]
    assert build_balance_argv([real], out, " MAX ")[:5] == ["balance", "--real", str(real.path.absolute()),
                                                           "--target", "max"]
    assert build_balance_argv([real], out, "100", recipes=True)[-1] == "--recipes"
    assert "--recipes" not in build_balance_argv([real], out, "100")
    gen = DatasetInfo(tmp_path / "gen", "generated", {"dns": 4})
    for kw, msg in ((dict(inputs=[gen]), "exactly that one"), (dict(inputs=[real, gen]), "exactly that one"),
                    (dict(target="lots"), "top up"), (dict(target="0"), "top up"),
                    (dict(min_prob="1"), "filter"), (dict(min_prob="x"), "filter"),
                    (dict(split="2"), "split"), (dict(max_per_class="5"), "max/cls")):
        args = {"inputs": [real], "out": out, "target": "100", **kw}
        with pytest.raises(InputError, match=msg):
            build_balance_argv(**args)
    # the export's own options are as before
    assert build_argv([real.path], out, "0.2", "3", False, "dns zoom", "7") == [
        "export", str(real.path), "-o", str(out), "--class", "dns", "--class", "zoom", "--max-per-class", "7",
        "--split", "0.2", "--seed", "3"]


@sync
async def test_export_tab_starts_a_balance_job(settings, tmp_path):
    app = make_app(settings, initial_tab="export")
    started = []
    app.start_job = lambda kind, argv, out=None, label="", request=None, switch=True: started.append((kind, argv, out))
    real = _real(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        pane = app.query_one("#export-pane")
        await wait_for(pilot, lambda: pane.is_mounted)
        pane.add(real)
        app.query_one("#export-target").value = "50"
        app.query_one("#export-filter").value = "0.4"
        app.query_one("#export-out").value = str(tmp_path / "bal")
        app.query_one("#export-table").focus()
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: started)
        kind, argv, out = started[0]
        assert kind == "balance" and out == (tmp_path / "bal").absolute()
        assert argv[:5] == ["balance", "--real", str(real.path.absolute()), "--target", "50"]
        assert argv[-2:] == ["--filter", "0.4"]
        assert "starting balance" in str(pane.query_one("#export-status").render())
        # a filter without a target is a balance too, and says what it lacks
        app.query_one("#export-target").value = ""
        app.query_one("#export-table").focus()
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: any("top up" in n for n in notifications(app)))
        assert len(started) == 1
        # "top up by recipes": each class by its recipe
        app.query_one("#export-target").value = "50"
        app.query_one("#export-recipes").value = True
        app.query_one("#export-table").focus()
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: len(started) == 2)
        assert started[1][1][-1] == "--recipes"


def test_balance_job_result_lines(tmp_path):
    from netdiff_tui.screens.catalog import result_lines
    res = {"flows": 130, "generated": {"dns": 9, "facebook": 0}, "target": 100,
           "vetted": {"dns": {"drawn": 64, "kept": 9, "min_prob": 0.4}, "facebook": {"drawn": 94, "kept": 0,
                                                                                   "min_prob": 0.4}}}
    lines = result_lines("balance", res, None)
    assert "synthetic: 9 flows in 2 classes, kept of 158 drawn (class probability >= 0.4)" in lines
    assert "target 100" in lines[-1]
    res.pop("vetted")
    assert "synthetic: 9 flows in 2 classes" in result_lines("balance", res, None)
    assert not any("synthetic:" in x for x in result_lines("export", res, None))
