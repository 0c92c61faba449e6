"""The oldest glibc a bundle can run on: the highest GLIBC_x.y version its ELF files require.

Usage: python packaging/glibc_floor.py BUNDLE_DIR
Prints ``GLIBC_x.y  file1 file2 ...`` (the files that need that version, at most five).

Reads each file's version-needs table (.gnu.version_r), which is what the dynamic loader checks
against the target's libc; a plain search for "GLIBC_" strings would also find text in data
sections. Pure Python so the script needs no binutils on the build machine.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

SHT_GNU_VERNEED = 0x6FFFFFFE


def needed_versions(path: Path) -> set[str]:
    """Version names (GLIBC_2.17, GLIBCXX_3.4, ...) a 64-bit little-endian ELF file requires; empty for others."""
    with open(path, "rb") as f:
        head = f.read(64)
        if len(head) < 64 or head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
            return set()
        shoff, = struct.unpack_from("<Q", head, 40)
        shentsize, shnum = struct.unpack_from("<HH", head, 58)
        if not shoff or not shnum:
            return set()
        f.seek(shoff)
        table = f.read(shentsize * shnum)
        sections = [struct.unpack_from("<IIQQQQIIQQ", table, i * shentsize) for i in range(shnum)]
        out = set()
        for _name, kind, _flags, _addr, offset, size, link, info, _align, _entsize in sections:
            if kind != SHT_GNU_VERNEED or link >= len(sections):
                continue
            strtab = sections[link]
            f.seek(strtab[4])
            strings = f.read(strtab[5])
            f.seek(offset)
            data = f.read(size)
            pos = 0
            for _ in range(info):                       # info: how many Verneed entries
                _ver, cnt, _file, aux, nxt = struct.unpack_from("<HHIII", data, pos)
                apos = pos + aux
                for _ in range(cnt):
                    _hash, _flags2, _other, name, anext = struct.unpack_from("<IHHII", data, apos)
                    out.add(strings[name:strings.index(b"\0", name)].decode("ascii", "replace"))
                    apos += anext
                pos += nxt
                if not nxt:
                    break
        return out


def _key(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split("_", 1)[1].split(".") if x.isdigit())


def main(bundle: str) -> int:
    root = Path(bundle)
    need: dict[str, list[str]] = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.is_symlink():
            for v in needed_versions(p):
                if v.startswith("GLIBC_") and v[6:7].isdigit():
                    need.setdefault(v, []).append(str(p.relative_to(root)))
    if not need:
        print(f"glibc_floor: no ELF file under {root} requires a GLIBC_ version", file=sys.stderr)
        return 1
    top = max(need, key=_key)
    print(top, " ".join(need[top][:5]))
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__.strip().splitlines()[2])
    sys.exit(main(sys.argv[1]))
