"""`netdiff check` on captures judges checksums over the real payloads, as Wireshark does."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from conftest import FIXTURES, data_dir

CASES = [FIXTURES / "eth.pcap", FIXTURES / "sll2.pcap"]
for rel in ("zoom/sarinco__zoom_linux_chat_trial.pcap", "zoom/noiselab__zoom_call_7s_20210604.pcap",
            "dns/chrissanders__dns_recursive_client.pcap", "ssh/ndpi__ssh.pcap"):
    CASES.append(data_dir() / "real" / rel)


def tshark_bad(path, proto: str) -> int:
    r = subprocess.run(["tshark", "-r", str(path), "-o", f"{proto}.check_checksum:TRUE",
                        "-Y", f"{proto}.checksum.status == 0 && !icmp"], capture_output=True, text=True)
    return len(r.stdout.strip().splitlines())


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.name)
def test_checksum_findings_match_tshark(path):
    if not shutil.which("tshark"):
        pytest.skip("tshark not installed (.ci/run installs it)")
    if not path.exists():
        pytest.skip(f"{path} not found (set NETDIFF_DATA to the folder holding real/)")
    r = subprocess.run([sys.executable, "-m", "netdiff_tui", "check", "--json", str(path)],
                       capture_output=True, text=True)
    assert r.returncode in (0, 1), r.stderr
    rules = {x["name"]: x["before"]["packets"] for x in json.loads(r.stdout)["rules"]}
    assert rules["tcp_checksum"] == tshark_bad(path, "tcp")
    assert rules["udp_checksum"] == tshark_bad(path, "udp")
