"""SIGTERM/SIGHUP stop a command even when the signal lands where Python drops exceptions.

Python runs a signal handler in whatever bytecode the main thread is executing; if that is a
``__del__`` (CI caught one in a regex object's finaliser), the handler's exception is printed
as "Exception ignored" and the run went on to finish with status 0. The stop is recorded, so
the next safe point, or the command's return, still stops it.
"""

from __future__ import annotations

import gc
import os
import signal

import click
import pytest
from click.testing import CliRunner

from engine import progress

# the dropped exception is the point of these tests; pytest reports it as unraisable
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


@pytest.fixture
def handlers():
    saved = {s: signal.getsignal(s) for s in progress.STOP_SIGNALS}
    progress._pending_stop = None
    yield
    progress._pending_stop = None
    for s, h in saved.items():
        signal.signal(s, h)


class _SignalsInFinaliser:
    def __init__(self, sig):
        self.sig = sig

    def __del__(self):
        os.kill(os.getpid(), self.sig)      # the handler runs here, inside __del__


def _signal_lost_in_finaliser(sig):
    _SignalsInFinaliser(sig)
    gc.collect()


@pytest.mark.parametrize("sig", progress.STOP_SIGNALS)
def test_a_stop_raised_inside_a_finaliser_is_raised_again_at_the_next_safe_point(handlers, sig):
    progress.stop_on_signals()
    _signal_lost_in_finaliser(sig)          # "Exception ignored in ...": the raise is gone
    assert progress.pending_stop() == sig
    with pytest.raises(progress.StopRequested) as e:
        progress.check_stop()
    assert e.value.signum == sig


@pytest.mark.parametrize("sig", progress.STOP_SIGNALS)
def test_a_command_whose_stop_was_lost_still_exits_with_the_signal_status(handlers, sig):
    from netdiff_tui.cli import friendly

    @click.command()
    @friendly
    def cmd():
        _signal_lost_in_finaliser(sig)      # no safe point after it: the command returns

    r = CliRunner().invoke(cmd, [])
    assert r.exit_code == 128 + sig, r.output
    assert f"stopped by {signal.Signals(sig).name}" in r.output


def test_the_progress_sink_is_a_safe_point(handlers):
    from netdiff_tui.cli import Progress
    progress.stop_on_signals()
    _signal_lost_in_finaliser(signal.SIGTERM)
    with Progress(False) as prog, pytest.raises(progress.StopRequested):
        prog(progress.TaskStarted("sample", 10, "flows"))


def test_no_stop_no_raise(handlers):
    progress.stop_on_signals()
    progress.check_stop()
    assert progress.pending_stop() is None


@pytest.mark.parametrize("sig", progress.STOP_SIGNALS)
def test_a_stop_inside_a_commit_waits_for_its_end(handlers, sig):
    progress.stop_on_signals()
    done = []
    with pytest.raises(progress.StopRequested) as e:
        with progress.stop_deferred():
            os.kill(os.getpid(), sig)       # delivered here, between bytecodes of this block
            with progress.stop_deferred():  # nested: still the outer block's end
                done.append("inner")
            done.append("outer")
    assert done == ["inner", "outer"] and e.value.signum == sig
    assert progress._deferred == 0
