"""Time from starting ``netdiff tui`` in a terminal to its first drawn screen, then quit it.

Usage: python packaging/first_screen.py NETDIFF_BINARY [ENV=VALUE ...]
Runs the binary in a pseudo-terminal (80x24 is too small to show every tab name; 120x36 is what
the tests use) with only the given environment, waits until the screen shows the app's title
and its first tab, presses Ctrl+Q and prints the seconds to the first screen. Exit 1 when the
screen does not appear within 60 s or the console does not quit.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import sys
import termios
import time

MARKERS = (b"NetDiffusion Studio", b"Models")
DEADLINE_S = 60.0


def main(argv: list[str]) -> int:
    binary, env = argv[0], dict(a.split("=", 1) for a in argv[1:])
    env.setdefault("TERM", "xterm-256color")
    t0 = time.perf_counter()
    pid, fd = pty.fork()
    if pid == 0:
        os.execve(binary, [binary, "tui"], env)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 36, 120, 0, 0))
    seen, first = b"", None
    plain = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]")
    while time.perf_counter() - t0 < DEADLINE_S:
        r, _, _ = select.select([fd], [], [], 0.05)
        if r:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
            text = plain.sub(b"", seen)
            if first is None and all(m in text for m in MARKERS):
                first = time.perf_counter() - t0
                os.write(fd, b"\x11")          # Ctrl+Q: quit
        if first is not None:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
    else:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        print(f"first_screen: no first screen in {DEADLINE_S:.0f} s" if first is None else
              "first_screen: the console did not quit on Ctrl+Q", file=sys.stderr)
        return 1
    if first is None:
        print(f"first_screen: the console ended before drawing: {plain.sub(b'', seen)[-300:]!r}", file=sys.stderr)
        return 1
    print(f"{first:.2f}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__.strip().splitlines()[2])
    sys.exit(main(sys.argv[1:]))
