#!/usr/bin/env bash
# Build the lab-machine bundle from this checkout, archive it, and smoke-test the archive as a user
# would get it: extracted elsewhere, run with an empty PATH and PYTHONPATH, no Python needed.
#
#   packaging/build_and_smoke.sh            (PYTHON=python3; NETDIFF_PACKAGE_DIR=a new temp dir)
#   NETDIFF_PACKAGE_DIR=D NETDIFF_PACKAGE_REUSE=1 packaging/build_and_smoke.sh   (smoke-test D's last build again)
#   NETDIFF_BUNDLE_SD=1 packaging/build_and_smoke.sh    (with the Stable Diffusion route; default 0: the lab bundle)
#
# Needs: the project installed in $PYTHON (pip install -e '.[sd]' for NETDIFF_BUNDLE_SD=1),
# PyInstaller (installed with pip when missing), tar, and zstd for a .tar.zst (else gzip: .tar.gz).
# binutils' strip makes the bundle smaller when present. Writes everything under
# $NETDIFF_PACKAGE_DIR: build/, dist/netdiff/, netdiff-<version>-linux-<arch>.tar.zst, install/,
# smoke/. Exits non-zero on the first failure; prints sizes, start-up times and the glibc needed.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO="$(pwd)"
PY="${PYTHON:-python3}"
WORK="${NETDIFF_PACKAGE_DIR:-$(mktemp -d /tmp/netdiff-package.XXXXXX)}"
mkdir -p "$WORK"
WORK="$(cd "$WORK" && pwd)"
TIMEFORMAT=%R
say() { printf '== %s\n' "$*"; }
die() { printf 'build_and_smoke: FAILED: %s\n' "$*" >&2; exit 1; }
secs() { local t0=$1; "$PY" -c "import time,sys; print(f'{time.time()-float(sys.argv[1]):.2f}')" "$t0"; }
now() { "$PY" -c 'import time; print(time.time())'; }

if ! "$PY" -c 'import PyInstaller' 2>/dev/null; then
    say "PyInstaller into $("$PY" -c 'import sys; print(sys.executable)')"
    "$PY" -m pip install --quiet --disable-pip-version-check "pyinstaller>=6"
fi
"$PY" -c 'import engine, netdiff_tui' 2>/dev/null || die "the project is not importable by $PY (pip install -e '.[sd]')"
# PyInstaller bundles the interpreter's shared library; Debian's system Python has it in a separate package
"$PY" -c 'from PyInstaller.depend.bindepend import get_python_library_path as p; p()' > /dev/null 2>&1 \
    || die "$PY has no shared libpython for PyInstaller (Debian/Ubuntu: apt-get install libpython3-dev or libpython3.X)"

# the SD route is in the bundle only when asked for (build.spec reads the same variable) and installed
BUNDLE_SD="${NETDIFF_BUNDLE_SD:-0}"
case "$BUNDLE_SD" in 0|1) ;; *) die "NETDIFF_BUNDLE_SD=$BUNDLE_SD: 0 (the lab bundle) or 1 (with the SD route)";; esac
export NETDIFF_BUNDLE_SD="$BUNDLE_SD"
HAS_SD=0
if [ "$BUNDLE_SD" = 1 ]; then
    if "$PY" -c 'from engine.selftest import sd_libraries; raise SystemExit(bool(sd_libraries()))' 2>/dev/null; then
        HAS_SD=1
    else
        say "NETDIFF_BUNDLE_SD=1 but the sd extra is not installed: building without the SD route"
    fi
fi

t=$(now)
if [ "${NETDIFF_PACKAGE_REUSE:-0}" = 1 ] && [ -x "$WORK/dist/netdiff/netdiff" ]; then
    # the smoke test expects what that build holds, whatever NETDIFF_BUNDLE_SD says now
    HAS_SD=$(cat "$WORK/dist/sd-route" 2>/dev/null || echo "$HAS_SD")
    say "build: reusing $WORK/dist/netdiff (NETDIFF_PACKAGE_REUSE=1)"
else
    say "build (work: $WORK)"
    rm -rf "$WORK/dist"         # build/ stays: PyInstaller and the strip cache reuse it
    nice "$PY" -m PyInstaller --noconfirm --log-level WARN --workpath "$WORK/build" --distpath "$WORK/dist" \
        build.spec > "$WORK/build.log" 2>&1 || { tail -30 "$WORK/build.log"; die "pyinstaller (log: $WORK/build.log)"; }
    echo "$HAS_SD" > "$WORK/dist/sd-route"      # beside the bundle, not in the archive
fi
BUILD_S=$(secs "$t")
if [ "$HAS_SD" = 1 ]; then SD_ROUTE="in the bundle"; else SD_ROUTE="left out (NETDIFF_BUNDLE_SD=1 to include it)"; fi
echo "SD route: $SD_ROUTE"
VERSION=$("$PY" -c 'from importlib.metadata import version; print(version("netdiffusion"))')
# zstd -9 with a 128 MiB window (the most a plain `zstd -d` or `tar --zstd` accepts): 15 % smaller
# than gzip -6 in half its time on 2 cores; -19 saves little more and takes minutes
if command -v zstd > /dev/null; then
    EXT=tar.zst; PACK=(zstd -q -9 --long=27 -T0); UNPACK=(zstd -q -d)
else
    EXT=tar.gz; PACK=(gzip -9); UNPACK=(gzip -d)
fi
ARCHIVE="$WORK/netdiff-$VERSION-linux-$(uname -m).$EXT"

say "archive $ARCHIVE"
t=$(now)
rm -f "$ARCHIVE"
tar -C "$WORK/dist" -cf - netdiff | nice "${PACK[@]}" > "$ARCHIVE.part"
mv "$ARCHIVE.part" "$ARCHIVE"
ARCHIVE_S=$(secs "$t")

say "install into another directory"
rm -rf "$WORK/install" "$WORK/smoke"
mkdir -p "$WORK/install" "$WORK/smoke/home"
"${UNPACK[@]}" < "$ARCHIVE" | tar -C "$WORK/install" -xf -
ND="$WORK/install/netdiff/netdiff"
SMOKE="$WORK/smoke"
# what a lab machine gives the binary: no PATH, no PYTHONPATH, no Python; state under a scratch home
bundle() {
    (cd "$SMOKE" && exec env -i HOME="$SMOKE/home" PATH= PYTHONPATH= LANG=C.UTF-8 TMPDIR="$SMOKE" \
        XDG_CONFIG_HOME="$SMOKE/home/.config" XDG_DATA_HOME="$SMOKE/home/.local/share" \
        NETDIFF_JOBS_DIR="$SMOKE/jobs" "$ND" "$@")
}
python_install() {        # this checkout's code, from the same directory, as `pip install -e .` would run it
    (cd "$SMOKE" && env PYTHONPATH="$REPO" HOME="$SMOKE/home" XDG_CONFIG_HOME="$SMOKE/home/.config" \
        XDG_DATA_HOME="$SMOKE/home/.local/share" NETDIFF_JOBS_DIR="$SMOKE/jobs" "$PY" -m netdiff_tui "$@")
}

say "--version (cold, then warm)"
t=$(now)
V=$(bundle --version) || die "--version"
COLD_S=$(secs "$t")
[ "$V" = "netdiff, version $VERSION" ] || die "--version printed '$V'"
WARM=()
for _ in 1 2 3; do t=$(now); bundle --version > /dev/null; WARM+=("$(secs "$t")"); done
echo "$V: cold ${COLD_S} s, warm ${WARM[*]} s"

say "selftest"
t=$(now)
bundle selftest | tee "$SMOKE/selftest.txt" || die "selftest"
SELFTEST_S=$(secs "$t")
if [ "$HAS_SD" = 1 ]; then
    grep -q '^pass  sd pipeline' "$SMOKE/selftest.txt" || die "selftest did not run the SD check"
else
    grep -q '^skip  sd pipeline .*built without the SD route' "$SMOKE/selftest.txt" \
        || die "selftest's SD check is not a skip saying the bundle has no SD route"
fi

say "generate --preset zoom -n 5, then check"
t=$(now)
bundle generate --preset zoom -n 5 -o "$SMOKE/zoom" || die "generate"
GEN_S=$(secs "$t")
n=$(find "$SMOKE/zoom/zoom" -name '*.pcap' | wc -l)
[ "$n" -eq 5 ] || die "generate wrote $n pcaps, not 5"
bundle check "$SMOKE/zoom" > "$SMOKE/check.txt" || { cat "$SMOKE/check.txt"; die "check of the generated flows"; }
tail -1 "$SMOKE/check.txt"

say "generate on two sampling processes (the frozen program starts its workers through itself)"
bundle generate --label dns -n 40 --steps 4 --processes 2 -o "$SMOKE/pool" -q || die "generate --processes 2"
grep -q '"processes": 2' "$SMOKE/pool/generate.json" || die "generate --processes 2 did not use two processes"
n=$(find "$SMOKE/pool/dns" -name '*.pcap' | wc -l)
[ "$n" -eq 40 ] || die "generate --processes 2 wrote $n pcaps, not 40"

say "evaluate (scikit-learn, scipy and matplotlib in the bundle)"
mkdir -p "$SMOKE/real/zoom"
cp tests/fixtures/eth.pcap "$SMOKE/real/zoom/"
t=$(now)
bundle evaluate --real "$SMOKE/real" --synthetic "$SMOKE/zoom" -o "$SMOKE/eval" --classes zoom > "$SMOKE/eval.txt" \
    || { cat "$SMOKE/eval.txt"; die "evaluate"; }
EVAL_S=$(secs "$t")
ls "$SMOKE/eval"/*.png > /dev/null 2>&1 || die "evaluate wrote no plot"
tail -1 "$SMOKE/eval.txt"

say "bad input: the same one line and exit status as the Python install"
printf 'not a capture, just notes\n' > "$SMOKE/notes.pcap"
printf 'name = "bad"\nlabel = "zoom"\ncount = "many"\n' > "$SMOKE/bad.toml"
bad_cases=(
    "inspect no-such-file.pcap"
    "check notes.pcap"
    "recipes validate bad.toml"
    "generate --recipe bad.toml -o out-bad"
    "generate --label zoom -n 0 -o out-zero"
)
for c in "${bad_cases[@]}"; do
    # shellcheck disable=SC2086  # each case is a word list on purpose
    set +e
    want=$(python_install $c 2>&1 >/dev/null); want_rc=$?
    got=$(bundle $c 2>&1 >/dev/null); got_rc=$?
    set -e
    [ "$got_rc" -ne 0 ] || die "netdiff $c: exit 0"
    [ "$(printf '%s\n' "$got" | wc -l)" -eq 1 ] || die "netdiff $c: not one line: $got"
    [ "$got" = "$want" ] && [ "$got_rc" = "$want_rc" ] \
        || die "netdiff $c: bundle says '$got' ($got_rc), Python install '$want' ($want_rc)"
    echo "exit $got_rc: $got"
done

if [ "$HAS_SD" = 0 ]; then
    say "SD commands in a bundle without the SD route: one line, exit status 2"
    # generate checks the libraries before it reads more of a run than its model type
    mkdir -p "$SMOKE/sd-run" "$SMOKE/sd-base"
    printf '{"model_type": "sd-lora"}\n' > "$SMOKE/sd-run/config.json"
    sd_cases=(
        "generate --model sd-run --label zoom -n 1 -o out-sd"
        "train --model-type sd --base sd-base --data zoom --out sd-train"
    )
    for c in "${sd_cases[@]}"; do
        set +e
        # shellcheck disable=SC2086  # each case is a word list on purpose
        got=$(bundle $c 2>&1 >/dev/null); got_rc=$?
        set -e
        [ "$got_rc" -eq 2 ] || die "netdiff $c: exit $got_rc, not 2: $got"
        [ "$(printf '%s\n' "$got" | wc -l)" -eq 1 ] || die "netdiff $c: not one line: $got"
        case "$got" in *"built without the Stable Diffusion route"*NETDIFF_BUNDLE_SD=1*) ;;
            *) die "netdiff $c: '$got' does not say the bundle has no SD route and how to get it";; esac
        [ ! -e "$SMOKE/out-sd" ] && [ ! -e "$SMOKE/sd-train" ] || die "netdiff $c: left an output directory"
        echo "exit 2: $got"
    done
fi

say "console: first screen"
FIRST_S=$("$PY" packaging/first_screen.py "$ND" HOME="$SMOKE/home" PATH= LANG=C.UTF-8 \
    XDG_CONFIG_HOME="$SMOKE/home/.config" XDG_DATA_HOME="$SMOKE/home/.local/share" NETDIFF_JOBS_DIR="$SMOKE/jobs") \
    || die "console first screen"

say "serve: the console's page over HTTP (textual-serve)"
PORT=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
bundle serve --port "$PORT" > "$SMOKE/serve.txt" 2>&1 &
SERVE_PID=$!
if "$PY" - "$PORT" "$SERVE_PID" <<'PYEOF'
import os, sys, time, urllib.request
port, pid, deadline = sys.argv[1], int(sys.argv[2]), time.monotonic() + 60


def ended() -> bool:                    # gone, or a zombie the shell has not reaped yet
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


while time.monotonic() < deadline:
    if ended():
        sys.exit(3)                     # the server ended: absent or broken, serve.txt says which
    try:
        page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read().decode()
    except OSError:
        time.sleep(0.2)
        continue
    sys.exit(0 if "NetDiffusion Studio" in page else 4)
sys.exit(5)
PYEOF
then
    kill -TERM "$SERVE_PID"; wait "$SERVE_PID" || true
    echo "serve: the page answers on 127.0.0.1:$PORT; stopped on SIGTERM"
else
    rc=$?; kill -TERM "$SERVE_PID" 2>/dev/null || true; wait "$SERVE_PID" 2>/dev/null || true
    if grep -q "needs the textual-serve package" "$SMOKE/serve.txt"; then
        echo "serve: absent from this bundle (textual-serve was not installed at build time): $(cat "$SMOKE/serve.txt")"
    else
        cat "$SMOKE/serve.txt"; die "serve (status $rc: 3 ended, 4 not the console's page, 5 no answer in 60 s)"
    fi
fi

say "glibc the bundle needs (GLIBC_ symbol versions of its own libraries)"
FLOOR=$("$PY" packaging/glibc_floor.py "$WORK/install/netdiff") || die "glibc floor"
GLIBC=${FLOOR%% *}
echo "$GLIBC, needed by: ${FLOOR#* }"

say "size: ten largest parts"
# awk, not head: head's early exit would be a SIGPIPE failure under pipefail
(cd "$WORK/install/netdiff" && { du -sb netdiff; du -sb _internal/* ; } | sort -rn \
    | awk 'NR <= 10 {printf "%8.1f MB  %s\n", $1/1e6, $2}')

DISK=$(du -sb "$WORK/install/netdiff" | cut -f1)
ARC=$(stat -c %s "$ARCHIVE")
say "summary"
mb() { "$PY" -c "import sys; b=int(sys.argv[1]); print(f'{b/1e6:.1f} MB ({b/2**20:.1f} MiB)')" "$1"; }
echo "SD route           $SD_ROUTE"
echo "bundle on disk     $(mb "$DISK")"
echo "archive (.$EXT) $(mb "$ARC")  $ARCHIVE"
echo "build ${BUILD_S} s, archive ${ARCHIVE_S} s"
echo "--version          cold ${COLD_S} s, warm ${WARM[*]} s"
echo "console            first screen ${FIRST_S} s"
echo "selftest           ${SELFTEST_S} s (wall, process start included)"
echo "generate -n 5      ${GEN_S} s"
echo "evaluate           ${EVAL_S} s"
echo "glibc              >= ${GLIBC#GLIBC_}"
echo "build_and_smoke: OK"
