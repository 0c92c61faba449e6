"""``netdiff serve``: the console in a browser, through textual-serve.

textual-serve is a small web server: each browser tab that opens the page gets its own copy of
``netdiff tui``, run as a child process that draws into the page over a websocket (textual-serve
sets ``TEXTUAL_DRIVER`` to Textual's web driver in the child's environment). The child is this
same program (:func:`engine.jobs.netdiff_command`: this Python's ``-m netdiff_tui``, or the frozen
binary), so the browser shows exactly the terminal console, with the same settings, jobs and models.
"""

from __future__ import annotations

import asyncio
import errno
import importlib.util
import ipaddress
import logging
import os
import shlex
import signal
import socket
import sys

import click

from engine.jobs import netdiff_command

from .cli import fail, main

TITLE = "NetDiffusion Studio"


def tui_command(settings_file: str | None = None) -> str:
    """The shell command textual-serve runs for each browser session."""
    argv = netdiff_command() + ["tui"]
    if settings_file is not None:
        # the child may start in another directory than the one the path was given in
        argv += ["--settings", os.path.abspath(settings_file)]
    return shlex.join(argv)


def host_port(host: str, port: int) -> str:
    """``host:port``, with an IPv6 literal in brackets as URLs write it."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _addresses(host: str, port: int) -> list[tuple]:
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        fail(f"--host {host!r}: {e.strerror}")
    return [(family, addr) for family, _, _, _, addr in infos]


def is_loopback(host: str, port: int) -> bool:
    """True when every address the host names is a loopback one (only this machine can connect)."""
    addrs = _addresses(host, port)
    return bool(addrs) and all(ipaddress.ip_address(a[0].split("%")[0]).is_loopback for _, a in addrs)


def check_free(host: str, port: int) -> None:
    """Bind every address the server will bind, and let go: a port in use is one clear line now,
    not an aiohttp traceback after the banner."""
    for family, addr in _addresses(host, port):
        s = socket.socket(family, socket.SOCK_STREAM)
        try:
            # as aiohttp does: a port left in TIME_WAIT by a previous run is free
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s.bind(addr)
        except OSError as e:
            fail(bind_error(host, port, e))
        finally:
            s.close()


def bind_error(host: str, port: int, e: OSError) -> str:
    """The one line for a failed bind."""
    where = host_port(host, port)
    if e.errno == errno.EADDRINUSE:
        return f"{where} is already in use (another netdiff serve?); choose another --port"
    if e.errno == errno.EACCES:
        return f"{where}: permission denied (ports below 1024 need root); choose another --port"
    if e.errno == errno.EADDRNOTAVAIL:
        return f"{where}: this machine has no such address; check --host"
    return f"{where}: {e.strerror or e}"


def _hostname(netloc: str) -> str:
    """The host part of ``host[:port]`` or ``[v6]:port``, lower case."""
    if netloc.startswith("["):
        return netloc[1:].split("]", 1)[0].lower()
    return netloc.rsplit(":", 1)[0].lower() if netloc.count(":") == 1 else netloc.lower()


def _is_loopback_name(name: str) -> bool:
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def refuse_websocket(request, *, local_only: bool, public_url: str | None) -> str | None:
    """Why a console websocket must not open, or None.

    The console has no password, and browsers let any web page open a websocket to any address,
    localhost included: a page the operator visits could otherwise drive the console through an
    ssh -L tunnel. So a browser's handshake must come from this server's own page (its Origin is
    the address the browser used, or --public-url); and a server bound to loopback answers only to
    loopback names, which a page whose domain was re-pointed at 127.0.0.1 (DNS rebinding) is not.
    Handshakes with no Origin come from programs, not pages, and are let through.
    """
    from urllib.parse import urlsplit
    host_header = (request.host or "").lower()
    proxied = urlsplit(public_url).netloc.lower() if public_url else None    # a reverse proxy's name
    if local_only and host_header != proxied and not _is_loopback_name(_hostname(host_header)):
        return f"Host {host_header!r} is not a loopback name (the server listens on loopback only)"
    origin = request.headers.get("Origin")
    if origin is None:
        return None
    if urlsplit(origin).netloc.lower() not in {host_header, proxied}:
        return f"Origin {origin!r} is not this server's page"
    return None


def die_with(server_pid: int):
    """For the console's child, before it runs: a SIGTERM when the server ends, however it ends.
    A console outliving a SIGKILLed (OOM-killed) server would run on unseen: Textual's web driver
    does not quit when its input pipe closes. Linux only (prctl); None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes
    prctl = ctypes.CDLL(None, use_errno=True).prctl      # looked up here, not in the forked child
    pr_set_pdeathsig = 1

    def in_child() -> None:
        prctl(pr_set_pdeathsig, signal.SIGTERM)
        if os.getppid() != server_pid:                   # the server died before the line above
            os.kill(os.getpid(), signal.SIGTERM)
    return in_child


def make_server(command: str, host: str, port: int, public_url: str | None, local_only: bool = True):
    """A textual-serve Server running ``command`` per browser tab, with netdiff's start line, and
    consoles that stop with the server."""
    import textual_serve.server as ts
    from textual_serve.app_service import AppService

    consoles: set[AppService] = set()

    class ConsoleService(AppService):
        """One browser tab's console, started without a shell and in a session of its own: Ctrl-C
        in the server's terminal reaches the server only, which then quits every console itself
        (textual-serve's own start puts them in the terminal's process group, where the signal
        killed them under the server and the event loop closed with them still unreaped)."""

        async def _open_app_process(self, width: int = 80, height: int = 24):
            self._process = process = await asyncio.create_subprocess_exec(
                *shlex.split(self.command), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, env=self._build_environment(width=width, height=height),
                start_new_session=True, preexec_fn=die_with(os.getpid()))
            self._stdin = process.stdin
            consoles.add(self)
            return process

        async def stop(self) -> None:
            await super().stop()
            await self.reap()

        async def reap(self, grace_s: float = 10.0) -> None:
            """Wait for the console to end after its quit, killing it after grace_s."""
            process = self._process
            if process is None:
                return
            try:
                await asyncio.wait_for(process.wait(), grace_s)
            except asyncio.TimeoutError:
                process.kill()          # a console stuck past its quit
                await process.wait()
            consoles.discard(self)

    # The one seam textual-serve has for how a console starts: Server.handle_websocket makes its
    # AppService by this module-level name.
    ts.AppService = ConsoleService

    class ConsoleServer(ts.Server):
        async def handle_websocket(self, request):
            refused = refuse_websocket(request, local_only=local_only, public_url=public_url)
            if refused:
                logging.getLogger("netdiff.serve").warning("refused a console websocket: %s", refused)
                from aiohttp import web
                raise web.HTTPForbidden(text=f"netdiff serve: {refused}\n")
            return await super().handle_websocket(request)

        async def handle_index(self, request):
            if public_url is None:
                # The page's websocket address comes from the address the browser used, so an
                # ssh -L tunnel on any local port just works (textual-serve would write host:port).
                self.public_url = f"{request.scheme}://{request.host}"
            return await super().handle_index(request)

        async def on_startup(self, app) -> None:
            # the server's terminal closing (SSH dropped) stops it as Ctrl-C does, consoles included
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.request_exit)
            # one line instead of textual-serve's banner
            shown = host if host not in ("", "0.0.0.0", "::") else socket.gethostname()   # every address
            url = public_url or f"http://{host_port(shown, port)}"
            click.echo(f"netdiff serve: the console at {url} (Ctrl-C stops)", err=True)

        async def on_shutdown(self, app) -> None:
            # Websockets stay open through aiohttp's shutdown: quit the consoles here, while the
            # loop still runs to reap them.
            live = list(consoles)
            for console in live:
                await console.send_meta({"type": "quit"})
            await asyncio.gather(*(console.reap() for console in live))

        def initialize_logging(self) -> None:
            # textual-serve logs every session at INFO; the operator wants the line above and errors
            logging.basicConfig(level=logging.WARNING, format="netdiff serve: %(message)s")

    return ConsoleServer(command, host=host, port=port, title=TITLE,
                         public_url=public_url.rstrip("/") if public_url else None)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Keep the default and reach it through ssh -L; "
                   "an address other machines can reach needs --public.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--public", is_flag=True,
              help="Allow a --host other machines can reach. The console has no password: whoever "
                   "reaches the port can start jobs and read or delete files as this user.")
@click.option("--public-url", default=None, metavar="URL",
              help="Address the browser uses (behind a reverse proxy); default: the address in the browser's bar.")
@click.option("--settings", "settings_file", type=click.Path(), default=None,
              help="Settings TOML for the console (default: the user config dir's settings.toml).")
def serve(host, port, public, public_url, settings_file):
    """The console in a web browser (textual-serve); one console per browser tab."""
    if importlib.util.find_spec("textual_serve") is None:     # one line here, not in the event loop
        fail("netdiff serve needs the textual-serve package: pip install textual-serve")
    if settings_file is not None:
        from .settings import SettingsError, load_settings
        try:
            load_settings(settings_file)        # refused here, once, not in every browser tab
        except SettingsError as e:
            fail(str(e))
    if public_url is not None and not public_url.startswith(("http://", "https://")):
        fail(f"--public-url {public_url!r}: must start with http:// or https://")
    reachable = not is_loopback(host, port)
    if reachable and not public:
        fail(f"--host {host}: other machines could reach the console, which has no password; "
             f"keep --host 127.0.0.1 and use ssh -L {port}:127.0.0.1:{port}, or add --public")
    check_free(host, port)
    if reachable:
        click.echo(f"netdiff: warning: serving on {host_port(host, port)}: anyone who can reach this port "
                   f"gets the console (start jobs, read and delete files as {_user()})", err=True)
    server = make_server(tui_command(settings_file), host, port, public_url, local_only=not reachable)
    try:
        server.serve()                          # returns after Ctrl-C / SIGTERM, once sessions are closed
    except OSError as e:                        # lost the port between the check and the bind
        fail(bind_error(host, port, e))
    click.echo("netdiff serve: stopped", err=True)


def _user() -> str:
    try:
        import getpass
        return getpass.getuser()
    except Exception:           # no user name (container without passwd entry): say so plainly
        return "this user"
