"""Recipes: schema validation (every field's bad value), presets, CLI, generation from presets."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import tomllib
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings, strategies as st

from engine.datasets import recipes as rp
from engine.errors import InputError
from engine.datasets.request import GenerationRequest

PRESETS = rp.preset_names()


@pytest.fixture(autouse=True)
def user_config(tmp_path, monkeypatch):
    """Isolate user recipes (platformdirs honours XDG_CONFIG_HOME)."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "netdiff" / "recipes"


def base() -> dict:
    return {"name": "t", "label": "zoom", "count": 5, "seed": 1,
            "traffic": {"transport": "udp", "service_ports": [8801], "client_ports": "49152-65535",
                        "packets": [2, 64], "mtu": 1500, "start": "2024-01-01T00:00:00Z", "flows_per_s": 2.0},
            "addresses": {"client": ["10.0.0.0/16"], "server": ["198.51.100.0/24"]},
            "sampling": {"steps": 10, "guidance": 1.5},
            "repair": {"disable": [], "allow_fragments": False}}


def with_(path: str, value) -> dict:
    d = base()
    *sec, key = path.split(".")
    t = d[sec[0]] if sec else d
    if value is DELETE:
        t.pop(key, None)
    else:
        t[key] = value
    return d


DELETE = object()

# (key, bad value, words the error must contain)
BAD = [
    ("name", "Has Space", "lowercase"),
    ("name", 3, "expected a string"),
    ("label", DELETE, "missing"),
    ("label", "Zoom!", "class name"),
    ("label", "zooom", "did you mean 'zoom'"),
    ("label", 7, "expected a string"),
    ("description", ["x"], "expected a string"),
    ("model", "hf://org/name", "not pinned"),
    ("model", "hf://org/name@main", "40-hex commit"),
    ("model", "hf://org/name@ABCDEF", "40-hex commit"),
    ("model", "hf:/org", "unknown scheme"),
    ("model", "s3://bucket/model", "unknown scheme"),
    ("model", 1, "expected a string"),
    ("prompt", 5, "expected a string"),
    ("count", 0, "between 1 and"),
    ("count", "10", "expected an integer"),
    ("count", True, "expected an integer"),
    ("count", 2.5, "expected an integer"),
    ("seed", -1, "between 0 and"),
    ("seed", 1.0, "expected an integer"),
    ("traffic.transport", "sctp", "not one of tcp, udp, icmp, any"),
    ("traffic.transport", "tpc", "did you mean 'tcp'"),
    ("traffic.service_ports", [70000], "out of range"),
    ("traffic.service_ports", ["3481-3478"], "backwards"),
    ("traffic.service_ports", ["http"], "not a port"),
    ("traffic.service_ports", [0], "out of range"),
    ("traffic.service_ports", [True], "boolean"),
    ("traffic.service_ports", {"a": 1}, "expected a list"),
    ("traffic.service_ports", "22", "expected a list"),           # issue #11: a string was taken for a list
    ("traffic.service_ports", 22, "expected a list"),
    ("traffic.client_ports", "1000-900", "backwards"),
    ("traffic.client_ports", "8000-9000", "contains service port 8801"),
    ("traffic.client_ports", "abc", "not a port range"),
    ("traffic.packets", [64, 2], "larger than max"),
    ("traffic.packets", [0, 10], "between 1 and 1024"),
    ("traffic.packets", [2, 5000], "between 1 and 1024"),
    ("traffic.packets", "2-10", "expected [min, max]"),
    ("traffic.packets", [1, 2, 3], "expected [min, max]"),
    ("traffic.mtu", 100, "between 576 and 9216"),
    ("traffic.mtu", 1500.0, "expected an integer"),
    ("traffic.start", "yesterday", "RFC 3339"),
    ("traffic.start", "2024-01-01T00:00:00", "RFC 3339"),
    ("traffic.start", dt.datetime(2024, 1, 1), "no time zone"),
    ("traffic.start", dt.date(2024, 1, 1), "not a full date and time"),
    ("traffic.start", "2024-13-01T00:00:00Z", "month must be in 1..12"),
    ("traffic.start", "1960-01-01T00:00:00Z", "between 1970"),
    ("traffic.start", 5, "expected an RFC 3339"),
    ("traffic.flows_per_s", 0, "must be > 0"),
    ("traffic.flows_per_s", -1.5, "must be > 0"),
    ("traffic.flows_per_s", "fast", "expected a number"),
    ("traffic.flows_per_s", float("nan"), "finite"),
    ("addresses.client", [], "at least one"),
    ("addresses.client", ["10.0.0.300/8"], "not an IPv4 network"),
    ("addresses.client", ["10.0.0.1/16"], "host bits set (did you mean \"10.0.0.0/16\"?)"),
    ("addresses.client", ["224.0.0.0/24"], "multicast"),
    ("addresses.server", ["240.0.0.0/8"], "reserved"),
    ("addresses.server", ["127.0.0.0/8"], "loopback"),
    ("addresses.server", ["169.254.1.0/24"], "link-local"),
    ("addresses.server", ["0.0.0.0/0"], "overlaps"),
    ("addresses.server", ["2001:db8::/32"], "IPv6"),
    ("addresses.server", [5], "expected CIDR strings"),
    ("addresses.server", 5, "expected a list"),
    ("addresses.server", "198.51.100.0/24", "expected a list"),
    ("sampling.steps", 0, "between 1 and 1000"),
    ("sampling.steps", "many", "expected an integer"),
    ("sampling.guidance", -1, "must be >= 0"),
    ("sampling.guidance", "high", "expected a number"),
    ("sampling.strength", 0, "must be > 0 and <= 1"),
    ("sampling.strength", 1.5, "must be > 0 and <= 1"),
    ("sampling.like_values", -1, "must be >= 0"),
    ("sampling.like", 5, "expected a string"),
    ("sampling.like_split", "split.json", "needs sampling.like"),
    ("repair.disable", [3], "expected rule names"),
    ("repair.disable", ["bad name!"], "expected rule names"),
    ("repair.disable", True, "expected a list"),
    ("repair.disable", "ipv4_ttl", "expected a list"),
    ("sampling.field_vocab", "no", "expected true or false"),
    ("repair.allow_fragments", "yes", "expected true or false"),
    ("repair.allow_fragments", 1, "expected true or false"),
]


@pytest.mark.parametrize("key,value,words", BAD, ids=[f"{k}={v!r}" for k, v, _ in BAD])
def test_bad_value_names_file_key_and_problem(key, value, words):
    with pytest.raises(InputError) as ei:
        rp.parse_recipe(with_(key, value), "/x/my.toml")
    msg = str(ei.value)
    assert msg.startswith("/x/my.toml: key '"), msg
    assert f"key '{key}'" in msg, msg
    assert words in msg, msg
    assert "\n" not in msg


@pytest.mark.parametrize("key,value,words", [
    ("colour", 1, "unknown key"),
    ("traffic.mtuu", 1, "did you mean 'traffic.mtu'"),
    ("addresses.mtu", 1, "it belongs in [traffic]"),
    ("transport", "udp", "belongs in the [traffic] table"),
    ("traffic", 3, "expected a [traffic] table"),
])
def test_unknown_and_misplaced_keys(key, value, words):
    d = base()
    *sec, k = key.split(".")
    (d[sec[0]] if sec else d)[k] = value
    with pytest.raises(InputError) as ei:
        rp.parse_recipe(d, "r.toml")
    assert f"key '{key}'" in str(ei.value) and words in str(ei.value), str(ei.value)


def test_unknown_repair_rule_is_named():
    pytest.importorskip("engine.repair")
    if rp.known_repair_rules() is None:
        pytest.skip("engine.repair has no rule list")
    with pytest.raises(InputError, match="key 'repair.disable': no repair rule named 'tcp_chksum' "
                                         "\\(did you mean 'tcp_checksum'\\?\\)"):
        rp.parse_recipe(with_("repair.disable", ["tcp_chksum"]), "r.toml")
    assert rp.parse_recipe(with_("repair.disable", ["tcp_checksum"])).request.disabled_rules == ("tcp_checksum",)


def test_icmp_has_no_ports_and_tcp_needs_a_handshake():
    d = with_("traffic.transport", "icmp")
    with pytest.raises(InputError, match="key 'traffic.service_ports': ICMP has no ports"):
        rp.parse_recipe(d, "r.toml")
    d = with_("traffic.transport", "tcp")
    d["traffic"]["packets"] = [1, 2]
    with pytest.raises(InputError, match="key 'traffic.packets'.*too short for TCP"):
        rp.parse_recipe(d, "r.toml")


def test_file_errors_name_the_file(tmp_path):
    f = tmp_path / "broken.toml"
    f.write_text('label = "zoom"\ncount = \n')
    with pytest.raises(InputError, match=r"broken.toml: TOML syntax error"):
        rp.load_recipe(f)
    f.write_bytes(b"\xff\xfe")
    with pytest.raises(InputError, match="not UTF-8"):
        rp.load_recipe(f)
    with pytest.raises(InputError, match="no such recipe file"):
        rp.load_recipe(tmp_path / "nope.toml")
    with pytest.raises(InputError, match="no recipe or preset named 'zom' \\(did you mean 'zoom'\\?\\)"):
        rp.resolve("zom")


def test_maps_one_to_one_onto_the_request():
    r = rp.parse_recipe(base(), "t.toml").request
    assert r == GenerationRequest(
        label="zoom", count=5, model=None, prompt="", packets_min=2, packets_max=64, transport="udp",
        server_ports=(8801,), client_port_range=(49152, 65535), client_cidrs=("10.0.0.0/16",),
        server_cidrs=("198.51.100.0/24",), mtu=1500, start_ns=1_704_067_200 * 10**9, flows_per_s=2.0, seed=1,
        steps=10, guidance=1.5, disabled_rules=(), allow_fragments=False, extra=r.extra)
    assert r.extra["recipe"] == "t" and len(r.extra["recipe_sha256"]) == 64
    # defaults: a recipe with only a label is the request's defaults
    d = rp.parse_recipe({"label": "dns"}, "x.toml").request
    assert replace(d, extra={}) == GenerationRequest(label="dns")


def test_port_ranges_times_and_models(tmp_path):
    d = with_("traffic.service_ports", [443, "3478-3481", [5000, 5001], "3479"])
    assert rp.parse_recipe(d).request.server_ports == (443, 3478, 3479, 3480, 3481, 5000, 5001)
    d = with_("traffic.start", "2024-01-01T01:00:00.123456789+01:00")
    assert rp.parse_recipe(d).request.start_ns == 1_704_067_200 * 10**9 + 123_456_789
    native = tomllib.loads('label = "zoom"\n[traffic]\nstart = 2024-01-01T00:00:00Z\n')
    assert rp.parse_recipe(native).request.start_ns == 1_704_067_200 * 10**9
    pinned = "hf://netdiff/model@" + "a" * 40
    assert rp.parse_recipe(with_("model", pinned)).request.model == pinned
    (tmp_path / "ckpt").mkdir()
    f = tmp_path / "r.toml"
    f.write_text('label = "zoom"\nmodel = "ckpt"\n')
    assert rp.load_recipe(f).request.model == str(tmp_path / "ckpt")     # relative to the recipe
    assert rp.parse_recipe(with_("model", "default")).request.model is None


def test_guide_keys_resolve_next_to_the_recipe_and_round_trip(tmp_path):
    f = tmp_path / "r.toml"
    f.write_text('label = "zoom"\n[sampling]\nlike = "caps/zoom"\nlike_split = "split.json"\nstrength = 0.3\n')
    r = rp.load_recipe(f).request
    assert (r.like, r.like_split, r.strength, r.like_values) == (
        str(tmp_path / "caps/zoom"), str(tmp_path / "split.json"), 0.3, 1.0)
    back = rp.parse_recipe(tomllib.loads(rp.dumps(rp.request_to_recipe(r))), "x.toml").request
    assert replace(back, extra={}) == replace(r, extra={})
    facts = dict(rp.summary(rp.load_recipe(f)))
    assert facts["like"] == str(tmp_path / "caps/zoom") and facts["strength"] == "0.3"


rq = st.builds(
    GenerationRequest,
    label=st.sampled_from(rp.KNOWN_CLASSES), count=st.integers(1, 10**6),
    packets_min=st.integers(3, 100), packets_max=st.integers(100, 1024),
    transport=st.sampled_from(["tcp", "udp", "any"]),
    server_ports=st.lists(st.integers(1, 20000), max_size=5).map(lambda x: tuple(sorted(set(x)))),
    client_port_range=st.tuples(st.integers(49152, 60000), st.integers(60000, 65535)),
    mtu=st.integers(576, 9216), start_ns=st.integers(0, 2**32 * 10**9 - 1),
    flows_per_s=st.floats(0.001, 1000), seed=st.integers(0, 2**63 - 1),
    steps=st.none() | st.integers(1, 1000), guidance=st.none() | st.floats(0, 50),
    allow_fragments=st.booleans(), disabled_rules=st.just(()),
)


@settings(max_examples=60, deadline=None)
@given(rq)
def test_request_recipe_round_trip(req):
    text = rp.dumps(rp.request_to_recipe(req, "rt"))
    back = rp.parse_recipe(tomllib.loads(text), "rt.toml").request
    assert replace(back, extra={}) == replace(req, extra={})


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_validates_and_is_grounded(name):
    rc = rp.load_preset(name)
    q = rc.request
    assert q.label in rp.KNOWN_CLASSES
    text = (rp.presets_dir() / f"{name}.toml").read_text()
    assert "measure_presets.py" in text                 # numbers are reproducible
    assert any(w in text for w in ("RFC", "Zoom Support", "Microsoft Learn", "Google Workspace", "Open Connect"))
    assert q.transport in ("tcp", "udp") and q.server_ports


def test_preset_facts():
    facts = {"zoom": ("udp", {8801}), "microsoft_teams": ("udp", {3478, 3479, 3480, 3481}),
             "google_meet": ("udp", {3478, *range(19302, 19310)}), "netflix": ("tcp", {443}),
             "youtube": ("udp", {443}), "dns": ("udp", {53}), "ssh": ("tcp", {22}), "quic": ("udp", {443}),
             "https_web": ("tcp", {443}), "twitch": ("tcp", {443}), "facebook": ("tcp", {443}),
             "amazon": ("tcp", {443})}
    assert set(facts) == set(PRESETS)
    for n, (t, ports) in facts.items():
        q = rp.load_preset(n).request
        assert (q.transport, set(q.server_ports)) == (t, ports), n
    assert rp.load_preset("https_web").request.label == "tls_https"


def test_presets_match_their_measurement(real_dir):
    """scripts/measure_presets.py --check on small presets (the rest: run it by hand, ~3 s)."""
    r = subprocess.run([os.sys.executable, "scripts/measure_presets.py", "--check", "--data", str(real_dir),
                        "dns", "ssh", "netflix", "twitch"], cwd=Path(__file__).parent.parent,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


# -- CLI -------------------------------------------------------------------------------

def cli(*args, env=None):
    from netdiff_tui.cli import main
    return CliRunner().invoke(main, list(args), env=env)


def test_cli_new_list_show_validate(user_config):
    r = cli("recipes", "new", "myzoom", "--from", "zoom")
    assert r.exit_code == 0, r.output
    f = user_config / "myzoom.toml"
    text = f.read_text()
    assert 'name = "myzoom"' in text and "Zoom Support" in text          # comments kept
    r = cli("recipes", "list")
    assert r.exit_code == 0 and "myzoom" in r.output and "user" in r.output and "https_web" in r.output
    r = cli("recipes", "show", "myzoom")
    assert r.exit_code == 0 and "8801" in r.output
    r = cli("recipes", "validate", "myzoom", "zoom", str(f))
    assert r.exit_code == 0 and r.output.count("ok:") == 3
    assert cli("recipes", "new", "myzoom").exit_code == 2                 # exists
    r = cli("recipes", "new", "plain", "--label", "dns")
    assert r.exit_code == 0
    assert rp.resolve("plain").request.label == "dns"
    r = cli("recipes", "validate", "--all", "-q")
    assert r.exit_code == 0, r.output
    f.write_text(text.replace("mtu = 1500", "mtu = 70000"))
    r = cli("recipes", "validate", "myzoom")
    assert r.exit_code == 2 and "key 'traffic.mtu': must be between 576 and 9216, got 70000" in r.output
    r = cli("recipes", "list")
    assert "INVALID" in r.output


def test_cli_edit_validates_after_the_editor(user_config, tmp_path):
    ed = tmp_path / "ed.sh"
    ed.write_text('#!/bin/sh\nsed -i "s/^count = .*/count = 7/" "$1"\n')
    ed.chmod(0o755)
    r = cli("recipes", "edit", "ssh", env={"EDITOR": str(ed), "VISUAL": str(ed)})
    assert r.exit_code == 0, r.output
    assert rp.resolve("ssh").request.count == 7 and rp.resolve("ssh").source == "user"   # copied, shadows preset
    assert rp.load_preset("ssh").request.count == 20                                   # preset untouched
    ed.write_text('#!/bin/sh\nsed -i "s/^count = .*/count = -7/" "$1"\n')
    r = cli("recipes", "edit", "ssh", env={"EDITOR": str(ed), "VISUAL": str(ed)})
    assert r.exit_code == 2 and "key 'count': must be between 1 and" in r.output


# -- generation from every preset ----------------------------------------------------------

def _test_model() -> str | None:
    """The default checkpoint, or $NETDIFF_TEST_MODEL (a checkpoint directory) when set."""
    if os.environ.get("NETDIFF_TEST_MODEL"):
        return os.environ["NETDIFF_TEST_MODEL"]
    d = Path(rp.__file__).parents[1] / "default_model"
    return "default" if d.is_dir() and any(d.glob("*.safetensors")) else None


def _tshark_errors(f: Path) -> int:
    # application dissectors off, as in tests/tshark_judge.py: payloads are zero bytes by design, and
    # e.g. the SSH dissector calls a zero-filled 4-byte segment a malformed SSH packet
    import tshark_judge
    env = dict(os.environ, WIRESHARK_CONFIG_DIR=tshark_judge._config_dir())
    r = subprocess.run(["tshark", "-o", "ip.check_checksum:TRUE", "-o", "tcp.check_checksum:TRUE",
                        "-o", "udp.check_checksum:TRUE", "-r", str(f), "-Y",
                        '_ws.expert.severity >= "Error" || _ws.malformed', "-T", "fields", "-e", "frame.number"],
                       capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0, r.stderr
    return len([x for x in r.stdout.split() if x.strip()])


@pytest.mark.slow
@pytest.mark.skipif(_test_model() is None, reason="default checkpoint engine/default_model absent "
                                                   "(or set NETDIFF_TEST_MODEL to a checkpoint)")
@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
@pytest.mark.parametrize("name", PRESETS)
def test_preset_generates_compliant_flows_on_its_ports(name, tmp_path):
    import csv
    from engine.datasets.generate import generate
    from engine.codec.packets import TCP, UDP
    from engine.codec.pipeline import encode_capture
    from netdiff_tui.cli import main
    proto = {"tcp": TCP, "udp": UDP}
    q = rp.load_preset(name).request
    m = _test_model()
    q = replace(q, count=3, steps=4, packets_max=min(q.packets_max, 48), packets_min=min(q.packets_min, 48),
                model=None if m == "default" else m)
    out = tmp_path / name
    generate(q, out)
    rows = list(csv.DictReader(open(out / "manifest.csv")))
    assert len(rows) == 3
    for r in rows:
        f = out / r["file"]
        assert _tshark_errors(f) == 0, f"{name}: tshark errors in {f}"
        if "check" in main.commands:
            res = CliRunner().invoke(main, ["check", str(f)])
            assert res.exit_code == 0, f"{name}: netdiff check {f}: {res.output}"
        for b in encode_capture(f, __import__("engine.codec.flows", fromlist=["FlowConfig"]).FlowConfig(min_packets=1)):
            for mt in b.metas:
                assert mt.proto == proto[q.transport], (name, mt)
                assert mt.resp_port in q.server_ports, (name, mt.resp_port)
                assert q.client_port_range[0] <= mt.init_port <= q.client_port_range[1], (name, mt.init_port)
