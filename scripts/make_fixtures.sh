#!/usr/bin/env bash
# scripts/make_fixtures.sh - record small packet-capture test fixtures from real
# loopback traffic and convert them with real tools into tests/fixtures/.
#
# Usage:
#   sudo scripts/make_fixtures.sh                # record new traffic, then derive everything
#   sudo scripts/make_fixtures.sh --derive-only  # keep the four recorded captures
#                                                # (eth.pcap, sll.pcap, sll2.pcap, mixed_nonip.pcap)
#                                                # and rebuild every derived file + fixtures.json
#
# Needs root (tcpdump on lo / any), tcpdump, tshark, capinfos, editcap, mergecap,
# tcprewrite (tcpreplay), curl, ping (iputils-ping), python3.  Optional: arping
# (Thomas Habets' "arping" package; the iputils one refuses the NOARP lo device)
# for ARP frames in mixed_nonip.pcap.
#
# Only 127.0.0.0/8 and ::1 are ever used.  Recording is real traffic, so packet
# counts / ports / timestamps differ between recordings; every derived file is a
# deterministic function of the recorded ones, and fixtures.json is always
# re-measured with tshark from the files on disk, so a re-run stays consistent.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$REPO/tests/fixtures"
MODE="${1:-record}"
case "$MODE" in
  record|--record) MODE=record ;;
  --derive-only) MODE=derive ;;
  -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
  *) echo "usage: $0 [--derive-only]" >&2; exit 2 ;;
esac

# Fixed loopback ports (chosen to be unusual; checked free before recording).
HTTP_PORT=18080      # python3 -m http.server on 127.0.0.1 and ::1
UDP_PORT=15353       # python UDP echo on 127.0.0.1 and ::1
CLOSED_PORT=15354    # nothing listens: provokes one ICMP port-unreachable (inner IP/UDP)

RECORDED=(eth.pcap sll.pcap sll2.pcap mixed_nonip.pcap)
DERIVED=(eth_vlan.pcap eth_nsec.pcap eth_bigendian.pcap raw101.pcap raw228.pcap raw229.pcap
         null.pcap multi_if.pcapng bad_empty.pcap bad_text.pcap bad_truncated.pcap
         bad_corrupt.pcap bad_truncated_header.pcap fixtures.json)

log() { printf '[make_fixtures] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

for t in tcpdump tshark capinfos editcap mergecap tcprewrite python3; do
  command -v "$t" >/dev/null || die "missing tool: $t"
done
if [ "$MODE" = record ]; then
  [ "$(id -u)" = 0 ] || die "recording needs root (tcpdump on lo/any)"
  for t in curl ping; do command -v "$t" >/dev/null || die "missing tool: $t (apt-get install curl iputils-ping)"; done
fi

export LC_ALL=C TZ=UTC
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY no_proxy NO_PROXY || true
# tshark prints "Running as user root ..." on stderr; keep it quiet where we parse.
TSHARK() { tshark "$@" 2>/dev/null; }

WORK="$(mktemp -d /tmp/netdiff-fixtures.XXXXXX)"
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]:-}"; do
    [ -n "$p" ] && kill "$p" 2>/dev/null || true
  done
  for p in "${PIDS[@]:-}"; do
    [ -n "$p" ] && wait "$p" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

mkdir -p "$OUT"

# --------------------------------------------------------------------------
# 1. Record real loopback traffic
# --------------------------------------------------------------------------
port_free() {  # $1=tcp|udp $2=host $3=port
  python3 - "$@" <<'PY'
import socket, sys
kind, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
fam = socket.AF_INET6 if ":" in host else socket.AF_INET
s = socket.socket(fam, socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM)
if kind == "tcp":  # like http.server: TIME_WAIT leftovers of an earlier run are fine
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind((host, port))
except OSError:
    sys.exit(1)
finally:
    s.close()
PY
}

start_tcpdump() {  # $1=name, rest=tcpdump args (output goes to $WORK/$1.pcap)
  local name="$1"; shift
  tcpdump -Z root -U -n -w "$WORK/$name.pcap" "$@" 2>"$WORK/$name.tcpdump.log" &
  PIDS+=($!)
  eval "PID_$name=$!"
}

wait_listening() {  # $1=name
  local i
  for i in $(seq 1 100); do
    grep -q "listening on" "$WORK/$1.tcpdump.log" 2>/dev/null && return 0
    sleep 0.1
  done
  cat "$WORK/$1.tcpdump.log" >&2
  die "tcpdump $1 did not start"
}

record() {
  log "recording loopback traffic (work dir $WORK)"
  port_free tcp 127.0.0.1 $HTTP_PORT && port_free tcp ::1 $HTTP_PORT || die "tcp port $HTTP_PORT busy"
  port_free udp 127.0.0.1 $UDP_PORT && port_free udp ::1 $UDP_PORT || die "udp port $UDP_PORT busy"
  port_free udp 127.0.0.1 $CLOSED_PORT || die "udp port $CLOSED_PORT busy (must be closed)"

  mkdir -p "$WORK/www"
  printf 'hello from the NetDiffusion Studio test fixtures\n' >"$WORK/www/hello.txt"

  # Servers (started before the captures so readiness probes are not recorded).
  python3 -m http.server --bind 127.0.0.1 --directory "$WORK/www" $HTTP_PORT >"$WORK/http4.log" 2>&1 &
  PIDS+=($!)
  python3 -m http.server --bind ::1 --directory "$WORK/www" $HTTP_PORT >"$WORK/http6.log" 2>&1 &
  PIDS+=($!)
  python3 -c '
import select, socket, sys
port = int(sys.argv[1])
s4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s4.bind(("127.0.0.1", port))
s6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); s6.bind(("::1", port))
while True:
    for s in select.select([s4, s6], [], [])[0]:
        data, addr = s.recvfrom(65535)
        s.sendto(data, addr)
' $UDP_PORT >"$WORK/udp.log" 2>&1 &
  PIDS+=($!)

  local i ok=0
  for i in $(seq 1 50); do
    if curl -s --noproxy '*' -o /dev/null "http://127.0.0.1:$HTTP_PORT/hello.txt" &&
       curl -s --noproxy '*' -o /dev/null "http://[::1]:$HTTP_PORT/hello.txt"; then ok=1; break; fi
    sleep 0.1
  done
  [ $ok = 1 ] || die "http.server did not come up"
  sleep 1   # let the probe connections finish (TIME_WAIT is silent)

  # Capture filters.  All traffic is 127.0.0.1 <-> 127.0.0.1 or ::1 <-> ::1.
  local V4="ip and src host 127.0.0.1 and dst host 127.0.0.1 and (tcp port $HTTP_PORT or udp port $UDP_PORT or udp port $CLOSED_PORT or icmp)"
  local MIXED="arp or (ip and src host 127.0.0.1 and dst host 127.0.0.1 and (icmp or udp port $UDP_PORT or udp port $CLOSED_PORT)) or (ip6 and src host ::1 and dst host ::1 and (icmp6 or udp port $UDP_PORT or tcp port $HTTP_PORT))"
  start_tcpdump eth   -i lo -y EN10MB "$V4"
  start_tcpdump sll   -i any -y LINUX_SLL "$V4"
  start_tcpdump sll2  -i any -y LINUX_SLL2 "$V4"
  start_tcpdump mixed -i lo -y EN10MB "$MIXED"
  for n in eth sll sll2 mixed; do wait_listening $n; done
  sleep 0.5

  # IPv4 TCP: 3 HTTP GETs (handshake, request, response, FIN teardown each).
  for i in 1 2 3; do
    curl -s --noproxy '*' -o /dev/null "http://127.0.0.1:$HTTP_PORT/hello.txt"
    sleep 0.2
  done
  # IPv4 UDP: 5 datagrams echoed back; 1 datagram to a closed port -> ICMP port unreachable.
  python3 -c '
import socket, sys
port, closed = int(sys.argv[1]), int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)
for i in range(5):
    s.sendto(b"netdiff fixture udp %d" % i, ("127.0.0.1", port)); s.recvfrom(2048)
c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
c.sendto(b"nobody listens here", ("127.0.0.1", closed))
' $UDP_PORT $CLOSED_PORT
  sleep 0.2
  # IPv4 ICMP echo.
  ping -n -q -c 3 -i 0.2 127.0.0.1 >/dev/null
  # IPv6 (goes only into mixed_nonip.pcap; raw229.pcap is derived from it).
  ping -6 -n -q -c 3 -i 0.2 ::1 >/dev/null
  curl -s --noproxy '*' -o /dev/null "http://[::1]:$HTTP_PORT/hello.txt"
  python3 -c '
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); s.settimeout(2)
for i in range(3):
    s.sendto(b"netdiff fixture udp6 %d" % i, ("::1", int(sys.argv[1]))); s.recvfrom(2048)
' $UDP_PORT
  # ARP on lo (only Habets' arping transmits on the NOARP loopback device).
  if command -v arping >/dev/null && arping --help 2>&1 | grep -q Habets; then
    arping -q -c 2 -W 0.2 -i lo -S 127.0.0.1 127.0.0.2 >/dev/null 2>&1 || true   # no reply expected
  else
    log "WARNING: Habets arping not found; mixed_nonip.pcap will have IPv6 but no ARP"
  fi

  sleep 1
  for n in eth sll sll2 mixed; do
    local p; eval "p=\$PID_$n"
    kill -INT "$p"; wait "$p" || true
  done

  cp "$WORK/eth.pcap"   "$OUT/eth.pcap"
  cp "$WORK/sll.pcap"   "$OUT/sll.pcap"
  cp "$WORK/sll2.pcap"  "$OUT/sll2.pcap"
  cp "$WORK/mixed.pcap" "$OUT/mixed_nonip.pcap"
  chmod 644 "${RECORDED[@]/#/$OUT/}"
}

if [ "$MODE" = record ]; then
  record
else
  for f in "${RECORDED[@]}"; do [ -s "$OUT/$f" ] || die "--derive-only needs $OUT/$f"; done
  log "derive-only: reusing recorded captures"
fi

# --------------------------------------------------------------------------
# 2. Derive one file per format (real tools wherever one exists)
# --------------------------------------------------------------------------
cd "$OUT"
rm -f "${DERIVED[@]}"

# eth.pcap must be classic pcap, microsecond, little endian (tcpdump writes host
# byte order, so this holds on x86/arm64 hosts).
[ "$(od -An -tx1 -N4 eth.pcap | tr -d ' ')" = "d4c3b2a1" ] ||
  die "eth.pcap is not a little-endian microsecond pcap (big-endian host?)"

# 802.1Q tag 100 on every frame.
tcprewrite --enet-vlan=add --enet-vlan-tag=100 --enet-vlan-cfi=0 --enet-vlan-pri=0 \
  -i eth.pcap -o eth_vlan.pcap >/dev/null

# Nanosecond-resolution classic pcap (magic a1b23c4d).
editcap -F nsecpcap eth.pcap eth_nsec.pcap

# Raw IP: chop the 14-byte Ethernet header, adjust the wire length too (-L),
# relabel the encapsulation.  -F pcap: editcap would default to pcapng.
editcap -F pcap -C 14 -L -T rawip  eth.pcap raw101.pcap   # LINKTYPE_RAW  (101)
editcap -F pcap -C 14 -L -T rawip4 eth.pcap raw228.pcap   # LINKTYPE_IPV4 (228)
# LINKTYPE_IPV6 (229): the ::1 packets of mixed_nonip.pcap.
TSHARK -r mixed_nonip.pcap -Y ipv6 -F pcap -w "$WORK/v6_eth.pcap"
editcap -F pcap -C 14 -L -T rawip6 "$WORK/v6_eth.pcap" raw229.pcap

# BSD null/loopback (linktype 0): tcprewrite's "user" DLT plugin replaces the
# Ethernet header with a 4-byte host-order (little-endian) AF_INET=2 header.
tcprewrite --dlt=user --user-dlt=0 --user-dlink=02,00,00,00 -i eth.pcap -o null.pcap >/dev/null

# pcapng with two interfaces of different link types (Ethernet + Linux SLL).
mergecap -F pcapng -w multi_if.pcapng eth.pcap sll.pcap

# Big-endian classic pcap.  No common tool writes big-endian pcap (they all write
# host byte order), so this short Python step byte-swaps the 24-byte global
# header and every 16-byte record header of eth.pcap; packet bytes are untouched.
python3 - eth.pcap eth_bigendian.pcap <<'PY'
import struct, sys
src = open(sys.argv[1], "rb").read()
out = bytearray(struct.pack(">IHHiIII", *struct.unpack("<IHHiIII", src[:24])))
off = 24
while off < len(src):
    ts_s, ts_us, incl, orig = struct.unpack("<IIII", src[off:off + 16])
    out += struct.pack(">IIII", ts_s, ts_us, incl, orig)
    out += src[off + 16:off + 16 + incl]
    off += 16 + incl
assert off == len(src)
open(sys.argv[2], "wb").write(out)
PY

# ---- bad inputs ----
: >bad_empty.pcap
cat >bad_text.pcap <<'EOF'
This is a plain text file with a .pcap name, not a packet capture.
NetDiffusion Studio must reject it with a clear "not a capture" error
instead of crashing or returning zero packets.
EOF
head -c 10 eth.pcap >bad_truncated_header.pcap

mapfile -t CAPLENS < <(TSHARK -r eth.pcap -T fields -e frame.cap_len)
[ "${#CAPLENS[@]}" -ge 8 ] || die "eth.pcap has too few packets"
rec_offset() {  # byte offset of record header number $1 (1-based) in eth.pcap
  local n="$1" off=24 i
  for ((i = 0; i < n - 1; i++)); do off=$((off + 16 + CAPLENS[i])); done
  echo "$off"
}
# Truncated: 5 complete records, then cut in the middle of record 6's packet data.
TRUNC_AFTER=5
T_OFF=$(rec_offset $((TRUNC_AFTER + 1)))
T_CUT=$((T_OFF + 16 + CAPLENS[TRUNC_AFTER] / 2))
head -c "$T_CUT" eth.pcap >bad_truncated.pcap
# Corrupt: record 5's incl_len (caplen) overwritten with 0xffffffff.  (Not record
# 1-3: Wireshark's pcap reader probes the first records to guess pcap variants and
# then misreports the damage; from record 4 on tshark and tcpdump agree.)
CORRUPT_REC=5
C_OFF=$(rec_offset $CORRUPT_REC)
cp eth.pcap bad_corrupt.pcap
printf '\377\377\377\377' | dd of=bad_corrupt.pcap bs=1 seek=$((C_OFF + 8)) conv=notrunc status=none

chmod 644 ./*.pcap ./*.pcapng

# --------------------------------------------------------------------------
# 3. Measure everything with tshark and write fixtures.json
# --------------------------------------------------------------------------
export TRUNC_AFTER T_OFF T_CUT CORRUPT_REC C_OFF
python3 - <<'PY'
import json, os, struct, subprocess

GOOD = [
    ("eth.pcap", "tcpdump -i lo -y EN10MB (recorded)", "Ethernet, classic pcap, microsecond, little endian"),
    ("eth_vlan.pcap", "tcprewrite --enet-vlan=add --enet-vlan-tag=100 eth.pcap", "802.1Q VLAN 100 on every frame"),
    ("eth_nsec.pcap", "editcap -F nsecpcap eth.pcap", "nanosecond classic pcap (magic a1b23c4d)"),
    ("eth_bigendian.pcap", "python byte-swap of eth.pcap headers", "big-endian classic pcap"),
    ("raw101.pcap", "editcap -F pcap -C 14 -L -T rawip eth.pcap", "LINKTYPE_RAW, IPv4 packets without L2"),
    ("raw228.pcap", "editcap -F pcap -C 14 -L -T rawip4 eth.pcap", "LINKTYPE_IPV4"),
    ("raw229.pcap", "tshark -Y ipv6 mixed_nonip.pcap | editcap -C 14 -L -T rawip6", "LINKTYPE_IPV6 only: all packets are non-IPv4 (skipped)"),
    ("sll.pcap", "tcpdump -i any -y LINUX_SLL (recorded)", "Linux cooked capture v1"),
    ("sll2.pcap", "tcpdump -i any -y LINUX_SLL2 (recorded)", "Linux cooked capture v2"),
    ("null.pcap", "tcprewrite --dlt=user --user-dlt=0 --user-dlink=02,00,00,00 eth.pcap", "BSD null/loopback, 4-byte little-endian AF_INET=2"),
    ("multi_if.pcapng", "mergecap -F pcapng eth.pcap sll.pcap", "pcapng, two interfaces (Ethernet + SLL)"),
    ("mixed_nonip.pcap", "tcpdump -i lo -y EN10MB (recorded): IPv4 ICMP/UDP + IPv6 + ARP", "non-IPv4 packets mixed with IPv4"),
]

def tshark(*args):
    return subprocess.run(["tshark", *args], capture_output=True, text=True)

def header_info(path):
    b = open(path, "rb").read()
    magic = b[:4]
    pcap_magics = {
        b"\xd4\xc3\xb2\xa1": ("<", "little", "us"), b"\xa1\xb2\xc3\xd4": (">", "big", "us"),
        b"\x4d\x3c\xb2\xa1": ("<", "little", "ns"), b"\xa1\xb2\x3c\x4d": (">", "big", "ns"),
    }
    if magic in pcap_magics:
        e, order, res = pcap_magics[magic]
        vmaj, vmin, _tz, _sig, snaplen, lt = struct.unpack(e + "HHiIII", b[4:24])
        return {"format": "pcap", "byte_order": order, "ts_resolution": res,
                "version": f"{vmaj}.{vmin}", "snaplen": snaplen,
                "linktype": lt & 0x0FFFFFFF, "linktype_field_raw": lt}
    if magic == b"\x0a\x0d\x0d\x0a":  # pcapng: walk blocks, collect interface descriptions
        e = "<" if b[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
        order = "little" if e == "<" else "big"
        off, ifaces = 0, []
        while off + 12 <= len(b):
            btype, blen = struct.unpack(e + "II", b[off:off + 8])
            if btype == 1:  # IDB
                lt, _res, snaplen = struct.unpack(e + "HHI", b[off + 8:off + 16])
                tsresol, o = 6, off + 16
                while o + 4 <= off + blen - 4:
                    code, olen = struct.unpack(e + "HH", b[o:o + 4])
                    if code == 0:
                        break
                    if code == 9:
                        v = b[o + 4]
                        tsresol = -(v & 0x7F) if v & 0x80 else v  # negative = power of two
                    o += 4 + ((olen + 3) & ~3)
                ifaces.append({"id": len(ifaces), "linktype": lt, "snaplen": snaplen,
                               "if_tsresol": tsresol})
            off += blen
        return {"format": "pcapng", "byte_order": order, "interfaces": ifaces,
                "linktype": [i["linktype"] for i in ifaces]}
    raise SystemExit(f"{path}: unknown magic {magic.hex()}")

def count(path):
    r = tshark("-r", path, "-T", "fields", "-E", "occurrence=f", "-E", "separator=\t",
               "-e", "frame.interface_id", "-e", "ip.proto", "-e", "frame.cap_len",
               "-e", "frame.time_epoch")
    if r.returncode != 0:
        raise SystemExit(f"tshark failed on {path}: {r.stderr}")
    rows = [l.split("\t") for l in r.stdout.splitlines()]
    c = {"packets": len(rows), "ipv4": 0, "tcp": 0, "udp": 0, "icmp": 0, "other": 0,
         "captured_bytes": 0}
    per_if = {}
    for iface, proto, caplen, ts in rows:
        c["captured_bytes"] += int(caplen)
        if iface:
            per_if[int(iface)] = per_if.get(int(iface), 0) + 1
        if proto:
            c["ipv4"] += 1
        key = {"6": "tcp", "17": "udp", "1": "icmp"}.get(proto, "other")
        c[key] += 1
    c["first_time_epoch"] = rows[0][3] if rows else None
    c["last_time_epoch"] = rows[-1][3] if rows else None
    # Cross-checks: outer-layer display filters must agree with the field counts.
    for key, flt in (("tcp", "ip.proto#1 == 6"), ("udp", "ip.proto#1 == 17"),
                     ("icmp", "ip.proto#1 == 1"), ("ipv4", "ip")):
        n = len(tshark("-r", path, "-Y", flt).stdout.splitlines())
        assert n == c[key], (path, key, n, c[key])
    assert c["tcp"] + c["udp"] + c["icmp"] + c["other"] == c["packets"]
    capinfos = subprocess.run(["capinfos", "-M", "-c", "-T", "-r", path],
                              capture_output=True, text=True, check=True).stdout.split()
    assert int(capinfos[-1]) == c["packets"], (path, capinfos)
    return c, per_if

good = []
for name, made, tests in GOOD:
    entry = {"file": name, **header_info(name)}
    c, per_if = count(name)
    entry.update(c)
    if entry["format"] == "pcapng":
        for i in entry["interfaces"]:
            i["packets"] = per_if.get(i["id"], 0)
    entry["made_with"] = made
    entry["tests"] = tests
    good.append(entry)

# Sanity: same traffic, same counts.
by = {g["file"]: g for g in good}
base = by["eth.pcap"]
for f in ("eth_vlan.pcap", "eth_nsec.pcap", "eth_bigendian.pcap", "raw101.pcap", "raw228.pcap",
          "null.pcap", "sll.pcap", "sll2.pcap"):
    for k in ("packets", "tcp", "udp", "icmp", "other"):
        assert by[f][k] == base[k], (f, k, by[f][k], base[k])
for f in ("eth_nsec.pcap", "eth_bigendian.pcap", "raw101.pcap", "eth_vlan.pcap", "null.pcap"):
    assert by[f]["first_time_epoch"][:17] == base["first_time_epoch"][:17], f
assert by["raw229.pcap"]["ipv4"] == 0 and by["raw229.pcap"]["other"] == by["raw229.pcap"]["packets"]
assert by["mixed_nonip.pcap"]["other"] > 0 and by["mixed_nonip.pcap"]["ipv4"] > 0
assert len(set(by["multi_if.pcapng"]["linktype"])) >= 2
assert by["multi_if.pcapng"]["packets"] == base["packets"] + by["sll.pcap"]["packets"]

def read_error(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    err = " ".join(l.strip() for l in r.stderr.splitlines()
                   if l.strip() and "Running as user" not in l and not l.startswith("reading from file"))
    return len(r.stdout.splitlines()), err.replace(os.getcwd() + "/", "")

e = os.environ
snaplen = by["eth.pcap"]["snaplen"]
bad_specs = [
    ("bad_empty.pcap", "empty", "empty", 0, ": > bad_empty.pcap",
     "0-byte file"),
    ("bad_text.pcap", "not_a_capture", "not a capture", 0, "cat > bad_text.pcap (plain text)",
     "text file with a .pcap name"),
    ("bad_truncated_header.pcap", "truncated_header", "truncated global header (10 of 24 bytes)", 0,
     "head -c 10 eth.pcap", "file ends inside the 24-byte pcap global header"),
    ("bad_truncated.pcap", "truncated", f"truncated after {e['TRUNC_AFTER']} packets", int(e["TRUNC_AFTER"]),
     f"head -c {e['T_CUT']} eth.pcap",
     f"record {int(e['TRUNC_AFTER']) + 1} (header at byte {e['T_OFF']}) is cut in the middle of its packet data"),
    ("bad_corrupt.pcap", "corrupt", f"corrupt record {e['CORRUPT_REC']}: caplen 4294967295 exceeds snaplen {snaplen}",
     int(e["CORRUPT_REC"]) - 1,
     f"cp eth.pcap; dd 0xffffffff over bytes {int(e['C_OFF']) + 8}..{int(e['C_OFF']) + 11}",
     f"record {e['CORRUPT_REC']} (header at byte {e['C_OFF']}) has incl_len 0xffffffff"),
]
bad = []
for name, kind, problem, n_ok, made, detail in bad_specs:
    n_tshark, t_err = read_error(["tshark", "-r", name, "-T", "fields", "-e", "frame.number"])
    n_tcpdump, d_err = read_error(["tcpdump", "-n", "-r", name])
    # Both real readers must stop after the same number of good packets and tcpdump
    # (libpcap) must complain.  tshark reads a 0-byte file as an empty capture without
    # an error, so its message may be empty for bad_empty.pcap only.
    assert n_tshark == n_ok and n_tcpdump == n_ok, (name, n_tshark, n_tcpdump, n_ok, t_err, d_err)
    assert d_err and (t_err or kind == "empty"), (name, t_err, d_err)
    bad.append({"file": name, "kind": kind, "problem": problem, "packets_before_error": n_ok,
                "size": os.path.getsize(name), "detail": detail, "made_with": made,
                "tshark_says": t_err or "(no error: reads as a capture with 0 packets)",
                "tcpdump_says": d_err})

ver = subprocess.run(["tshark", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
doc = {
    "generated_by": "scripts/make_fixtures.sh",
    "measured_with": ver,
    "counting": ("packets = all records; ipv4 = packets whose outermost network layer is IPv4; "
                 "tcp/udp/icmp = IPv4 packets by the OUTER ip.proto (6/17/1): an ICMP port-unreachable "
                 "that quotes an inner IP/UDP header counts as icmp; other = everything else "
                 "(IPv6, ARP, IPv4 with other protocols). tcp+udp+icmp+other == packets. "
                 "linktype is read from the file header (pcap: u32 at offset 20, file byte order; "
                 "pcapng: one per interface description block)."),
    "good": good,
    "bad": bad,
}
with open("fixtures.json", "w") as f:
    json.dump(doc, f, indent=2)
    f.write("\n")
PY

log "done:"
ls -l "$OUT" >&2
du -sh "$OUT" >&2
