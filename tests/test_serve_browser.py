"""``netdiff serve`` end to end: a headless Chromium opens the page and the console draws in it.

The browser is the system's Chromium (``.ci/run`` installs Debian's ``chromium``; NETDIFF_CHROMIUM
names another binary), driven by Playwright, whose own browser downloads are not needed.

xterm.js draws the terminal on a canvas, so the page's DOM holds no console text. The test reads
xterm's own screen buffer instead: an init script catches the page's ``this.terminal = new
Terminal(...)`` (textual-serve's client keeps the terminal in a ``terminal`` property) through a
setter on ``Object.prototype``, and keeps a reference in ``window.__netdiffTerms``.
"""

from __future__ import annotations

import getpass
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEADLINE_S = 60.0           # CI runs on 2 loaded cores: the console takes a few seconds to start there

CATCH_TERMINAL = """
window.__netdiffTerms = [];
Object.defineProperty(Object.prototype, 'terminal', {
  configurable: true,
  get() { return undefined; },
  set(value) {
    Object.defineProperty(this, 'terminal', {value, writable: true, configurable: true, enumerable: true});
    if (value && value.buffer) window.__netdiffTerms.push(value);
  },
});
"""

# The rows xterm shows, as text ('' until the terminal exists).
SCREEN_TEXT = """() => {
  const t = window.__netdiffTerms && window.__netdiffTerms[0];
  if (!t) return '';
  const buf = t.buffer.active, rows = [];
  for (let y = 0; y < t.rows; y++) {
    const line = buf.getLine(buf.viewportY + y);
    rows.push(line ? line.translateToString(true) : '');
  }
  return rows.join('\\n');
}"""


def chromium_binary() -> str | None:
    """$NETDIFF_CHROMIUM, else a Chromium or Chrome on PATH."""
    if os.environ.get("NETDIFF_CHROMIUM"):
        return os.environ["NETDIFF_CHROMIUM"]
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def netdiff(*args: str) -> list[str]:
    return [sys.executable, "-m", "netdiff_tui", *args]


def isolated_env(tmp_path: Path) -> dict[str, str]:
    """The console reads and writes its settings, models and caches under tmp_path, not the user's."""
    env = dict(os.environ)
    for var in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "HF_HOME"):
        env[var] = str(tmp_path / var.lower())
    env.pop("TEXTUAL_DRIVER", None)
    return env


def wait_listening(proc: subprocess.Popen, port: int) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        try:
            proc.wait(timeout=0.2)          # the pause between tries, and an early exit seen at once
        except subprocess.TimeoutExpired:
            pass
        else:
            pytest.fail(f"netdiff serve exited {proc.returncode}: {proc.stderr.read()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            continue
    pytest.fail(f"netdiff serve did not listen on port {port} within {DEADLINE_S:.0f} s")


def descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        parent = todo.pop()
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue                    # gone while we looked
            if int(fields[1]) == parent:
                child = int(stat.parent.name)
                out.append(child)
                todo.append(child)
    return out


def wait_gone(pids: list[int], timeout: float) -> list[int]:
    """Wait until every process in pids has ended; those still running at the deadline."""
    fds = {}
    for pid in pids:
        try:
            fds[os.pidfd_open(pid)] = pid       # readable once the process has ended
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    try:
        pending = set(fds)
        while pending:                      # one look at least, also with timeout 0
            ready, _, _ = select.select(list(pending), [], [], max(0.0, deadline - time.monotonic()))
            pending -= set(ready)
            if time.monotonic() >= deadline:
                break
        return sorted(fds[fd] for fd in pending)
    finally:
        for fd in fds:
            os.close(fd)


def stop_leftovers(pids: list[int]) -> list[int]:
    """Wait for pids to end; kill those still running at the deadline (a failed test leaves no
    console behind) and return them."""
    left = wait_gone(pids, DEADLINE_S)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    return left


@pytest.fixture
def served(tmp_path):
    """``netdiff serve`` on a free localhost port, in its own process group (as a shell's job)."""
    port = free_port()
    proc = subprocess.Popen(netdiff("serve", "--port", str(port)), cwd=ROOT, env=isolated_env(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        wait_listening(proc, port)
        yield proc, f"http://127.0.0.1:{port}/"
    finally:
        if proc.poll() is None:             # a test that failed half way: stop it, consoles too
            consoles = descendants(proc.pid)
            proc.terminate()
            try:
                proc.wait(timeout=DEADLINE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            stop_leftovers(consoles)


@pytest.fixture
def browser():
    exe = chromium_binary()
    if exe is None:
        pytest.skip("no Chromium found (install Debian's chromium, or set NETDIFF_CHROMIUM to a Chromium binary)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the browser test drives Chromium with playwright")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, headless=True)
        try:
            yield b
        finally:
            b.close()


def open_console(browser, url: str):
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.set_default_timeout(DEADLINE_S * 1000)
    page.add_init_script(CATCH_TERMINAL)
    # The page asks Google for a web font; a test talks to the server under test only.
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(url) else route.abort())
    page.goto(url)
    return page


def wait_screen(page, *texts: str) -> str:
    """Wait until xterm's screen shows every one of texts; the screen's text."""
    cond = f"() => {{ const s = ({SCREEN_TEXT})(); return {list(texts)!r}.every(t => s.includes(t)); }}"
    try:
        page.wait_for_function(cond, polling=250, timeout=DEADLINE_S * 1000)
    except Exception as e:
        pytest.fail(f"the console did not show {texts} within {DEADLINE_S:.0f} s ({type(e).__name__}); "
                    f"screen:\n{page.evaluate(SCREEN_TEXT)}")
    return page.evaluate(SCREEN_TEXT)


def keep_artifact(path: Path) -> None:
    dest = os.environ.get("NETDIFF_TEST_ARTIFACTS")
    if dest:
        Path(dest).mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, Path(dest) / path.name)


def test_console_draws_in_the_browser_and_takes_keys(served, browser, tmp_path):
    proc, url = served
    page = open_console(browser, url)
    # the first screen draws by itself: title, tabs, the shipped checkpoint in the Models list
    wait_screen(page, "NetDiffusion Studio", "Models", "Recipes", "Jobs", "default")
    # Textual's web driver starts the app blurred and its footer lists the keys once the page has
    # the focus, as it has after the operator's first click
    page.click(".xterm-screen")
    wait_screen(page, "palette")
    shot = tmp_path / "serve_first_screen.png"
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000         # a drawn page, not a blank one
    keep_artifact(shot)

    # Keys typed in the page reach the console: 2 opens Recipes, which lists every preset.
    page.keyboard.press("2")
    presets = sorted(p.stem for p in (ROOT / "presets").glob("*.toml"))
    wait_screen(page, "preset", *presets)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGHUP], ids=["ctrl-c", "ssh-dropped"])
def test_a_signal_stops_the_server_and_its_consoles(served, browser, sig):
    """Ctrl-C in the server's terminal, or that terminal's SSH session dropping, signals the
    terminal's whole process group: the server stops, quitting the browser tabs' consoles first."""
    proc, url = served
    page = open_console(browser, url)
    wait_screen(page, "NetDiffusion Studio", "Models")
    consoles = descendants(proc.pid)
    assert consoles, "a browser session runs its console as a child process"

    os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout=DEADLINE_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"netdiff serve still running {DEADLINE_S:.0f} s after {sig.name}")
    err, out = proc.stderr.read(), proc.stdout.read()
    assert proc.returncode == 0, err
    assert out == "", out                       # textual-serve copies a console's stderr here
    assert err.strip().splitlines()[-1] == "netdiff serve: stopped"
    assert stop_leftovers(consoles) == [], f"consoles left running after {sig.name}"


def handshake(url: str, host: str, origin: str | None) -> str:
    """The status line the server answers a websocket handshake for /ws with."""
    port = int(url.rsplit(":", 1)[1].strip("/"))
    lines = ["GET /ws?width=80&height=24 HTTP/1.1", f"Host: {host}", "Upgrade: websocket", "Connection: Upgrade",
             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13"]
    if origin is not None:
        lines.append(f"Origin: {origin}")
    with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE_S) as s:
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        return s.makefile("rb").readline().decode().strip()


def test_only_the_servers_own_page_opens_a_console(served):
    """Any web page may open a websocket to localhost: the console's must come from its own page."""
    proc, url = served
    port = url.rsplit(":", 1)[1].strip("/")
    # another site's page, through the operator's browser and ssh -L tunnel
    assert handshake(url, f"localhost:{port}", "https://evil.example").endswith("403 Forbidden")
    # DNS rebinding: evil.example re-pointed at 127.0.0.1, its page now same-origin by name
    assert handshake(url, f"evil.example:{port}", f"http://evil.example:{port}").endswith("403 Forbidden")
    # the page itself, reached through a tunnel on another local port
    assert handshake(url, "localhost:9000", "http://localhost:9000").endswith("101 Switching Protocols")
    assert handshake(url, f"127.0.0.1:{port}", None).endswith("101 Switching Protocols")


def test_port_in_use_is_one_line(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = subprocess.run(netdiff("serve", "--port", str(port)), cwd=ROOT, env=isolated_env(tmp_path),
                           capture_output=True, text=True, timeout=DEADLINE_S)
    assert r.returncode == 2
    assert r.stderr == (f"netdiff: error: 127.0.0.1:{port} is already in use (another netdiff serve?); "
                        f"choose another --port\n")


def test_a_reachable_host_needs_public(tmp_path):
    port = free_port()
    r = subprocess.run(netdiff("serve", "--host", "0.0.0.0", "--port", str(port)), cwd=ROOT,
                       env=isolated_env(tmp_path), capture_output=True, text=True, timeout=DEADLINE_S)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "--public" in r.stderr and f"ssh -L {port}:127.0.0.1:{port}" in r.stderr


def test_public_serves_every_address_with_a_warning(tmp_path):
    port = free_port()
    proc = subprocess.Popen(netdiff("serve", "--host", "0.0.0.0", "--public", "--port", str(port)), cwd=ROOT,
                            env=isolated_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_listening(proc, port)
    finally:
        proc.terminate()                    # SIGTERM stops it as Ctrl-C does
        _, err = proc.communicate(timeout=DEADLINE_S)
    assert proc.returncode == 0, err
    assert err.splitlines() == [
        f"netdiff: warning: serving on 0.0.0.0:{port}: anyone who can reach this port gets the console "
        f"(start jobs, read and delete files as {getpass.getuser()})",
        f"netdiff serve: the console at http://{socket.gethostname()}:{port} (Ctrl-C stops)",
        "netdiff serve: stopped"]


def test_the_console_command_is_this_netdiff():
    from netdiff_tui.cmd_serve import tui_command
    assert tui_command() == f"{sys.executable} -m netdiff_tui tui"
    assert tui_command("s.toml").endswith(f"tui --settings {Path('s.toml').resolve()}")


def test_consoles_end_with_a_killed_server(served, browser):
    """A server killed outright (SIGKILL, the OOM killer) cannot quit its consoles: they end by
    themselves instead of running on unseen."""
    proc, url = served
    page = open_console(browser, url)
    wait_screen(page, "NetDiffusion Studio", "Models")
    consoles = descendants(proc.pid)
    assert consoles
    proc.kill()
    proc.wait()
    assert stop_leftovers(consoles) == [], "consoles left running after the server was killed"


def test_each_tab_has_its_console_and_closing_it_ends_that_one(served, browser):
    proc, url = served
    first = open_console(browser, url)
    wait_screen(first, "NetDiffusion Studio", "Models")
    [first_console] = descendants(proc.pid)
    second = open_console(browser, url)
    wait_screen(second, "NetDiffusion Studio", "Models")
    [second_console] = set(descendants(proc.pid)) - {first_console}

    first.close()
    assert wait_gone([first_console], DEADLINE_S) == [], "the closed tab's console still runs"
    assert wait_gone([second_console], 0) == [second_console], "the open tab's console ended too"
    second.click(".xterm-screen")
    second.keyboard.press("2")
    wait_screen(second, "preset", "https_web")      # the open tab still answers keys
