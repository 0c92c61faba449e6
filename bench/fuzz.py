"""Fuzz the capture reader with seeded mutations of real captures.

Run (results recorded in bench/fuzz.md):

    NETDIFF_DATA=/work/shared/data python3 bench/fuzz.py -n 100000 --jobs 2 --md bench/fuzz.md

Seeds are small slices (the first packets) of every real capture under
``$NETDIFF_DATA/real`` and every good fixture in ``tests/fixtures``, plus a
pcapng twin of each classic seed written here in either byte order, with a
varying timestamp resolution and some simple packet blocks (so the pcapng
paths get as many mutants as the classic ones). Mutant ``i`` is a pure
function of ``(--seed, i)``: ``--replay I`` rebuilds and runs one mutant and
prints its traceback, if any.

Each mutant is read by the reader (batches, with payload sums, and whole
records); every ``--deep``-th one also goes through flows, encoding and the
compliance check. Only :class:`engine.errors.InputError` may escape; any
other exception is a finding: counted as ``crash: <type>`` and its mutant
written to ``--crash-dir`` for replay.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import struct
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.codec import capture as cap  # noqa: E402
from engine.errors import InputError  # noqa: E402

SEED_PACKETS = 24         # packets kept of each seed capture: small mutants, many of them
EXTREMES32 = (0, 1, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF)

# -- seeds -----------------------------------------------------------------------------------


def data_dir() -> Path:
    return Path(os.environ.get("NETDIFF_DATA", ROOT.parent / "shared" / "data"))


def seed_files() -> list[Path]:
    good = json.loads((ROOT / "tests" / "fixtures" / "fixtures.json").read_text())["good"]
    files = [ROOT / "tests" / "fixtures" / g["file"] for g in good]
    real = data_dir() / "real"
    if real.is_dir():
        files += sorted(p for p in real.rglob("*") if p.suffix in (".pcap", ".pcapng"))
    return files


def _pcapng(records, endian: str, tsresol: int, simple: bool) -> bytes:
    """Records -> a pcapng in ``endian`` with one interface per link type at ``tsresol``;
    ``simple`` writes simple packet blocks for the first interface's packets."""
    e = endian

    def block(btype, body):
        n = 12 + len(body)
        return struct.pack(e + "II", btype, n) + body + struct.pack(e + "I", n)

    def opt(code, val):
        return struct.pack(e + "HH", code, len(val)) + val + b"\0" * (-len(val) % 4)

    out = [block(0x0A0D0D0A, struct.pack(e + "IHHq", 0x1A2B3C4D, 1, 0, -1) + opt(0, b""))]
    ifaces: dict[int, int] = {}
    for r in records:
        if r.linktype not in ifaces:
            ifaces[r.linktype] = len(ifaces)
            out.append(block(1, struct.pack(e + "HHI", r.linktype, 0, 262144)
                             + opt(9, bytes([tsresol])) + opt(0, b"")))
        iid = ifaces[r.linktype]
        pad = b"\0" * (-r.caplen % 4)
        if simple and iid == 0 and r.caplen == r.wirelen:
            out.append(block(3, struct.pack(e + "I", r.wirelen) + r.data + pad))
            continue
        units = r.ts_ns * (1 << (tsresol & 0x7F)) // 10**9 if tsresol & 0x80 else \
            r.ts_ns * 10**tsresol // 10**9
        out.append(block(6, struct.pack(e + "IIIII", iid, units >> 32, units & 0xFFFFFFFF, r.caplen, r.wirelen)
                         + r.data + pad + opt(1, b"fuzz seed") + opt(0, b"")))
    return b"".join(out)


def _memdir() -> str | None:
    """Where the many small files go: a tmpfs when the system has one (opening files on an
    overlay file system costs more than reading a mutant)."""
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


def _slice(path: Path, k: int) -> bytes:
    """The file's header and blocks up to its ``k``-th packet, bytes as they are."""
    data = path.read_bytes()
    if data[:4] in cap.PCAP_MAGICS:
        e = cap.PCAP_MAGICS[data[:4]][0]
        off = 24
        for _ in range(k):
            if off + 16 > len(data):
                break
            off += 16 + struct.unpack_from(e + "I", data, off + 8)[0]
        return data[:off]
    e = "<" if data[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
    off = npk = 0
    while off + 12 <= len(data) and npk < k:
        btype, blen = struct.unpack_from(e + "II", data, off)
        npk += btype in (2, 3, 6)
        off += blen
    return data[:off]


def make_seeds() -> list[bytes]:
    """Sliced seed captures, each classic one followed by its pcapng twin."""
    seeds = []
    rnd = random.Random(1)
    tmp = tempfile.NamedTemporaryFile(suffix=".pcap", delete=False, dir=_memdir())
    tmp.close()
    try:
        for p in seed_files():
            s = _slice(p, SEED_PACKETS)
            seeds.append(s)
            if s[:4] in cap.PCAP_MAGICS:
                Path(tmp.name).write_bytes(s)
                recs = list(cap.CaptureReader(tmp.name).records())
                if recs:
                    seeds.append(_pcapng(recs, rnd.choice("<>"), rnd.choice((6, 9, 0x80 | 30, 3)),
                                         rnd.random() < 0.3))
    finally:
        os.unlink(tmp.name)
    return seeds


# -- where the fields are ------------------------------------------------------------------


def field_map(data: bytes) -> list[tuple[str, int, int, str]]:
    """``(kind, offset, size, endian)`` of every header field in a (valid) seed."""
    out = []
    if data[:4] in cap.PCAP_MAGICS:
        e = cap.PCAP_MAGICS[data[:4]][0]
        out += [("version", 4, 2, e), ("version", 6, 2, e), ("snaplen", 16, 4, e), ("linktype", 20, 4, e)]
        off = 24
        while off + 16 <= len(data):
            caplen = struct.unpack_from(e + "I", data, off + 8)[0]
            out += [("timestamp", off, 4, e), ("timestamp", off + 4, 4, e),
                    ("length", off + 8, 4, e), ("length", off + 12, 4, e), ("frame", off + 16, caplen, e)]
            off += 16 + caplen
        return out
    e = "<"
    off = 0
    while off + 12 <= len(data):
        if data[off:off + 4] == b"\x0a\x0d\x0d\x0a":
            e = "<" if data[off + 8:off + 12] == b"\x4d\x3c\x2b\x1a" else ">"
            out += [("section", off + 8, 4, e), ("section", off + 12, 2, e), ("section", off + 14, 2, e)]
        btype, blen = struct.unpack_from(e + "II", data, off)
        out += [("block_length", off + 4, 4, e), ("block_length", off + blen - 4, 4, e), ("block_type", off, 4, e)]
        if btype == 1:
            out += [("linktype", off + 8, 2, e), ("snaplen", off + 12, 4, e)]
            o = off + 16
            while o + 4 <= off + blen - 4:
                code, olen = struct.unpack_from(e + "HH", data, o)
                out.append(("option", o + 2, 2, e))
                if code == 9:
                    out.append(("tsresol", o + 4, 1, e))
                if code == 0:
                    break
                o += 4 + olen + (-olen % 4)
        elif btype == 6:
            out += [("interface", off + 8, 4, e), ("timestamp", off + 12, 4, e), ("timestamp", off + 16, 4, e),
                    ("length", off + 20, 4, e), ("length", off + 24, 4, e),
                    ("frame", off + 28, struct.unpack_from(e + "I", data, off + 20)[0], e)]
        elif btype == 3:
            out += [("length", off + 8, 4, e), ("frame", off + 12, blen - 16, e)]
        off += blen
    return out


# -- mutations ---------------------------------------------------------------------------------


def _put(b: bytearray, off: int, size: int, e: str, v: int) -> None:
    if off + size <= len(b):
        b[off:off + size] = (v % (1 << 8 * size)).to_bytes(size, "little" if e == "<" else "big")


def _get(b, off, size, e) -> int:
    return int.from_bytes(b[off:off + size], "little" if e == "<" else "big")


def _fields(fm, kinds):
    return [f for f in fm if f[0] in kinds]


def _extreme(r: random.Random, cur: int, size: int) -> int:
    if size == 1:
        return r.randrange(256)
    if size == 2:
        return r.choice((0, 1, 0x7FFF, 0x8000, 0xFFFF, cur + 1, cur - 1))
    return r.choice(EXTREMES32 + (cur + 1, cur - 1, cur + 4, cur - 4, cur * 2, cur + r.randrange(1, 4)))


def m_bitflip(b, fm, r):
    for _ in range(r.randint(1, 8)):
        i = r.randrange(len(b))
        b[i] ^= 1 << r.randrange(8)


def m_bytes(b, fm, r):
    for _ in range(r.randint(1, 4)):
        b[r.randrange(len(b))] = r.choice((0, 0xFF, 0x80, 0x7F, r.randrange(256)))


def m_truncate(b, fm, r):
    del b[r.randrange(len(b)):]


def _set_kind(kinds):
    def m(b, fm, r):
        fs = _fields(fm, kinds) or fm
        for kind, off, size, e in r.sample(fs, min(len(fs), r.randint(1, 2))):
            _put(b, off, size, e, _extreme(r, _get(b, off, size, e), size))
    m.__name__ = "m_" + "_".join(kinds)
    return m


def m_block_length(b, fm, r):
    """pcapng block lengths: too small, too large, unaligned or leading != trailing."""
    fs = _fields(fm, ("block_length",))
    if not fs:
        return _set_kind(("length",))(b, fm, r)
    kind, off, size, e = r.choice(fs)
    cur = _get(b, off, size, e)
    _put(b, off, size, e, r.choice((0, 4, 8, 11, 12, 16, cur + 1, cur + 2, cur + 3, cur - 4, cur + 4,
                                     cur * 2, 1 << 26, (1 << 26) + 4, 0xFFFFFFFC, 0xFFFFFFFF)))


def m_interface(b, fm, r):
    fs = _fields(fm, ("interface",))
    if not fs:
        return _set_kind(("linktype",))(b, fm, r)
    kind, off, size, e = r.choice(fs)
    _put(b, off, size, e, r.choice((1, 2, 3, 0xFFFF, 0x10000, 0x7FFFFFFF, 0xFFFFFFFF)))


def m_splice(b, fm, r):
    """Duplicate, drop or insert a run of bytes (records shift against their lengths)."""
    i, j = sorted(r.randrange(len(b) + 1) for _ in range(2))
    op = r.randrange(3)
    if op == 0:
        b[j:j] = b[i:j]
    elif op == 1:
        del b[i:j]
    else:
        b[i:i] = bytes(r.randrange(256) for _ in range(r.randint(1, 16)))


def m_payload(b, fm, r):
    """Bytes inside frames: link, IPv4 and transport headers (the packet parser's input)."""
    frames = _fields(fm, ("frame",))
    if not frames:
        return m_bytes(b, fm, r)
    kind, base, size, e = r.choice(frames)
    for _ in range(r.randint(1, 6)):
        i = base + r.randrange(max(1, min(size, 64)))
        if i < len(b):
            b[i] = r.choice((0, 0xFF, 0x40, 0x45, 0x4F, 0x60, r.randrange(256)))


MUTATIONS = {
    "bit flips": m_bitflip,
    "random bytes": m_bytes,
    "truncation": m_truncate,
    "length fields extreme": _set_kind(("length",)),
    "timestamp fields extreme": _set_kind(("timestamp",)),
    "pcapng block lengths": m_block_length,
    "section header / version garbage": _set_kind(("section", "version")),
    "interface id out of range": m_interface,
    "snaplen extreme": _set_kind(("snaplen",)),
    "link type": _set_kind(("linktype",)),
    "tsresol / options": _set_kind(("tsresol", "option")),
    "splice": m_splice,
    "frame header bytes": m_payload,
}
KINDS = list(MUTATIONS)


def mutant(seeds, fmaps, seed: int, i: int) -> tuple[str, bytes]:
    """Mutant ``i``: (its mutation kind, its bytes); a pure function of ``(seed, i)``."""
    r = random.Random(seed * 1_000_003 + i)
    k = r.randrange(len(seeds))
    kind = KINDS[i % len(KINDS)]
    b = bytearray(seeds[k])
    MUTATIONS[kind](b, fmaps[k], r)
    if r.random() < 0.15:       # a second, different mutation now and then
        MUTATIONS[r.choice(KINDS)](b, fmaps[k], r)
    return kind, bytes(b)


# -- running ---------------------------------------------------------------------------------


def run_one(path: str, deep: bool) -> str:
    """Read one capture every way a command does; returns the outcome (raises on a finding)."""
    from engine.codec.flows import FlowConfig
    from engine.codec.pipeline import CaptureStats, encode_capture
    try:
        for _ in cap.CaptureReader(path, batch_packets=16, payload_sums=True):
            pass
        for _ in cap.CaptureReader(path).records():
            pass
        if deep:
            from engine.repair import RepairOptions, check_flows, repair_flows
            st = CaptureStats(path)
            mats, metas, psums = [], [], []
            for fb in encode_capture(path, FlowConfig(min_packets=1), stats=st, payload_sums=True):
                mats += [fb.flow(j) for j in range(len(fb))]
                metas += fb.metas
                psums += [fb.psum[fb.offsets[j]:fb.offsets[j + 1]] for j in range(len(fb))]
            check_flows(mats, metas, RepairOptions(), payload_sums=psums)
            if mats:
                repair_flows(mats, metas, RepairOptions())
    except InputError as e:
        return "error: " + _error_kind(e.problem)
    return "read"


def _error_kind(problem: str) -> str:
    p = problem.split(":")[0]
    for k in ("corrupt record", "corrupt pcapng packet block", "corrupt pcapng block",
              "corrupt pcapng section header", "corrupt pcapng interface block", "corrupt pcap file header"):
        if p.startswith(k):
            return k
    return p.split(" (")[0]


_STATE: dict = {}


def _init(seed: int, tmpdir: str, crash_dir: str | None, deep_every: int):
    seeds = make_seeds()
    _STATE.update(seeds=seeds, fmaps=[field_map(s) for s in seeds], seed=seed, deep=deep_every,
                  path=os.path.join(tmpdir, f"m{os.getpid()}.pcap"), crash_dir=crash_dir)


def _work(rng: tuple[int, int]) -> tuple[Counter, Counter, list]:
    st = _STATE
    kinds, outcomes, crashes = Counter(), Counter(), []
    for i in range(*rng):
        kind, data = mutant(st["seeds"], st["fmaps"], st["seed"], i)
        with open(st["path"], "wb") as f:
            f.write(data)
        try:
            out = run_one(st["path"], st["deep"] > 0 and i % st["deep"] == 0)
        except Exception as e:  # noqa: BLE001 -- a finding, recorded with its mutant
            out = f"crash: {type(e).__name__}"
            crashes.append((i, kind, repr(e)[:200]))
            if st["crash_dir"]:
                Path(st["crash_dir"]).mkdir(parents=True, exist_ok=True)
                Path(st["crash_dir"], f"mutant-{st['seed']}-{i}.pcap").write_bytes(data)
        kinds[kind] += 1
        outcomes[(kind, out)] += 1
    return kinds, outcomes, crashes


def fuzz(n: int, seed: int = 0, jobs: int = 1, deep_every: int = 10, crash_dir: str | None = None,
         start: int = 0) -> dict:
    """Run mutants ``start .. start+n-1``; returns counts by kind and outcome, crashes and time."""
    t0 = time.perf_counter()
    step = 500
    ranges = [(a, min(a + step, start + n)) for a in range(start, start + n, step)]
    kinds, outcomes, crashes = Counter(), Counter(), []
    with tempfile.TemporaryDirectory(prefix="netdiff-fuzz-", dir=_memdir()) as tmp:
        if jobs > 1:
            import multiprocessing as mp
            with mp.get_context("fork").Pool(jobs, _init, (seed, tmp, crash_dir, deep_every)) as pool:
                parts = pool.imap_unordered(_work, ranges)
                for j, (k, o, c) in enumerate(parts, 1):
                    kinds += k
                    outcomes += o
                    crashes += c
                    _progress(j, len(ranges), t0)
        else:
            _init(seed, tmp, crash_dir, deep_every)
            for j, rg in enumerate(ranges, 1):
                k, o, c = _work(rg)
                kinds += k
                outcomes += o
                crashes += c
                _progress(j, len(ranges), t0)
        nseeds = len(_STATE.get("seeds") or make_seeds())
    return {"mutants": n, "seed": seed, "start": start, "jobs": jobs, "seeds": nseeds,
            "deep_every": deep_every, "seconds": round(time.perf_counter() - t0, 1),
            "kinds": dict(kinds), "outcomes": {f"{k}\t{o}": v for (k, o), v in sorted(outcomes.items())},
            "crashes": sorted(crashes)}


def _progress(done: int, total: int, t0: float) -> None:
    if done % 20 == 0 or done == total:
        print(f"fuzz: {done}/{total} chunks, {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)


def markdown(res: dict, cmd: str) -> str:
    oc: dict[str, Counter] = {}
    for key, v in res["outcomes"].items():
        k, o = key.split("\t")
        oc.setdefault(k, Counter())[o] += v
    totals = Counter()
    for c in oc.values():
        totals += c
    crashes = sum(v for o, v in totals.items() if o.startswith("crash"))
    lines = [
        "# Capture reader fuzzing", "",
        "Reproduce:", "", "```sh", cmd, "```", "",
        f"{res['mutants']} mutants (seed {res['seed']}) of {res['seeds']} seed captures (the first "
        f"{SEED_PACKETS} packets of every real capture and good fixture, plus a pcapng twin of each classic one), "
        f"{res['jobs']} processes, {res['seconds']} s wall time. Every mutant is read as batches (with payload "
        f"sums) and as whole records; every {res['deep_every']}th also goes through flows, encoding, the "
        f"compliance check and repair.", "",
        f"**Uncaught exceptions: {crashes}** (only the one-line `InputError` may escape).", "",
        "## Outcomes", "", "| outcome | mutants |", "|---|---:|",
    ]
    lines += [f"| {o} | {v} |" for o, v in sorted(totals.items(), key=lambda x: -x[1])]
    lines += ["", "## Per mutation kind", "", "| mutation | mutants | read | one-line error | crash |",
              "|---|---:|---:|---:|---:|"]
    for k in KINDS:
        c = oc.get(k, Counter())
        lines.append(f"| {k} | {res['kinds'].get(k, 0)} | {c.get('read', 0)} | "
                     f"{sum(v for o, v in c.items() if o.startswith('error'))} | "
                     f"{sum(v for o, v in c.items() if o.startswith('crash'))} |")
    if res["crashes"]:
        lines += ["", "## Crashes (replay with `--replay I`)", ""]
        lines += [f"- {i} ({k}): {e}" for i, k, e in res["crashes"][:50]]
    return "\n".join(lines) + "\n"


def replay(seed: int, i: int) -> None:
    seeds = make_seeds()
    kind, data = mutant(seeds, [field_map(s) for s in seeds], seed, i)
    with tempfile.NamedTemporaryFile(suffix=".pcap", delete=False) as f:
        f.write(data)
    print(f"mutant {i} ({kind}) written to {f.name}")
    try:
        print(run_one(f.name, True))
    except Exception:  # noqa: BLE001
        traceback.print_exc()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=100_000, help="mutants to run")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--deep", type=int, default=10, help="every Nth mutant also goes through encode/check/repair")
    ap.add_argument("--crash-dir", default=None, help="write crashing mutants here")
    ap.add_argument("--md", default=None, help="write the markdown report here")
    ap.add_argument("--replay", type=int, default=None, help="rebuild and run one mutant, with its traceback")
    a = ap.parse_args(argv)
    if a.replay is not None:
        replay(a.seed, a.replay)
        return 0
    res = fuzz(a.n, a.seed, a.jobs, a.deep, a.crash_dir)
    if a.md:
        cmd = f"NETDIFF_DATA=/work/shared/data python3 bench/fuzz.py -n {a.n} --seed {a.seed} --jobs {a.jobs} " \
              f"--deep {a.deep} --md {a.md}"
        md = Path(a.md)
        # hand-written notes below the generated tables survive a rerun
        notes = md.read_text().partition("\n## Notes")[2] if md.exists() else ""
        md.write_text(markdown(res, cmd) + ("\n## Notes" + notes if notes else ""))
    print(json.dumps({k: v for k, v in res.items() if k != "outcomes"}, indent=1))
    return 1 if res["crashes"] else 0


if __name__ == "__main__":
    sys.exit(main())
