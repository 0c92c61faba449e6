"""The generation request is declared once (engine/datasets/request.py): every field is explained and
bounded, and recipes, the command line, the console's form and the engine expose and check the same fields
with the same words. No model and no real data are needed."""

from __future__ import annotations

import asyncio
import tomllib

import pytest
from click.testing import CliRunner

from engine.datasets import recipes as rp
from engine.datasets import request as rq
from engine.datasets.request import GenerationRequest
from engine.errors import InputError

NAMES = {f.name for f in rq.FIELDS}

# Front ends that do not show a field, and why. Empty: every field is in every front end.
NOT_ON_COMMAND_LINE: dict[str, str] = {}
NOT_IN_RECIPES: dict[str, str] = {}
NOT_IN_FORM: dict[str, str] = {}


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))


@pytest.mark.parametrize("name", sorted(NAMES))
def test_every_field_is_explained_and_bounded(name):
    s = rq.spec(name)
    assert len(s.help) > 10 and s.help.endswith("."), (name, s.help)
    assert s.recipe and s.form in ("main", "more"), name
    k = s.kind
    assert k.describe(), name
    if k.bounded:     # a range, a pattern or a list of choices, said in the help
        assert (k.choices or isinstance(k, (rq.Int, rq.Num, rq.Ports, rq.PortRange, rq.Cidrs, rq.Time))
                or isinstance(k, rq.Text) and k.pattern is not None), name
        assert isinstance(k, rq.Bool) or k.describe() in rq.help_text(name), name
    else:             # explicitly free: text, a path or a model reference
        assert isinstance(k, (rq.Text, rq.PathRef, rq.ModelRef)) and not getattr(k, "pattern", None), name
    # the default is a legal value, and survives its recipe and text forms
    d = rq.default(name)
    if d is not None:
        assert rq.parse_value(name, rq.to_raw(name, d)) == d, name
        assert rq.parse_text(name, rq.to_text(name, d)) == d, name


def _command_line_fields() -> set[str]:
    from netdiff_tui.cli import main
    params = main.commands["generate"].params
    by_name = {p.name: p for p in params}
    for n in NAMES & set(by_name):      # the option's help is the declaration's
        assert by_name[n].help.startswith(rq.help_text(n)), n
    return NAMES & set(by_name)


def _recipe_fields() -> set[str]:
    keys = {f"{s}.{k}" if s else k for s, ks in rp.SCHEMA.items() for k in ks}
    return {n for n in NAMES if rq.spec(n).recipe in keys}


def _form_fields() -> set[str]:
    from netdiff_tui.app import NetdiffApp
    from netdiff_tui.screens.generate import widget_id
    from netdiff_tui.settings import Settings

    async def run():
        app = NetdiffApp(settings=Settings(output_dir="out"), initial_tab="generate")
        async with app.run_test(size=(120, 36)):
            return {n for n in NAMES if app.query("#" + widget_id(n))}
    return asyncio.run(run())


def test_command_line_recipes_and_form_expose_the_same_fields():
    assert _command_line_fields() == NAMES - set(NOT_ON_COMMAND_LINE)
    assert _recipe_fields() == NAMES - set(NOT_IN_RECIPES)
    pytest.importorskip("textual")
    assert _form_fields() == NAMES - set(NOT_IN_FORM)


def test_defaults_are_the_same_everywhere(monkeypatch, tmp_path):
    import netdiff_tui.cmd_model as cm
    from netdiff_tui.screens.generate import build_request
    seen = []
    monkeypatch.setattr(cm, "run_generate", lambda req, out, **kw: seen.append(req))
    r = CliRunner().invoke(cm.main, ["generate", "--label", "dns", "-o", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    want = GenerationRequest(label="dns")
    assert seen == [want]
    from dataclasses import replace
    assert replace(rp.parse_recipe({"label": "dns"}, "d.toml").request, extra={}) == want
    assert build_request(None, {"label": "dns"}) == want
    # a recipe written from a request parses back to it, every field included
    back = rp.parse_recipe(tomllib.loads(rp.dumps(rp.request_to_recipe(want, "d"))), "d.toml").request
    assert replace(back, extra={}) == want


# (field, typed text, recipe value, words of the problem): each front end refuses it in the same words
BAD = [
    ("seed", "-1", -1, "must be between 0 and 9223372036854775807, got -1"),     # issue #11: the CLI took -1
    ("count", "0", 0, "must be between 1 and 1000000, got 0"),
    ("strength", "0", 0.0, "must be > 0 and <= 1, got 0"),
    ("mtu", "100", 100, "must be between 576 and 9216, got 100"),
    ("transport", "tpc", "tpc", "'tpc' is not one of tcp, udp, icmp, any (did you mean 'tcp'?)"),
    ("server_ports", "70000", [70000], "port 70000 is out of range (ports are 1-65535)"),
    ("client_cidrs", "224.0.0.0/24", ["224.0.0.0/24"], "'224.0.0.0/24' overlaps multicast (224.0.0.0/4)"),
    ("start_ns", "yesterday", "yesterday", "'yesterday' is not an RFC 3339 time"),
]


def _cli_error(tmp_path, option: str, text: str) -> str:
    from netdiff_tui.cli import main
    r = CliRunner().invoke(main, ["generate", "--label", "dns", "-o", str(tmp_path / "o"), option, text])
    assert r.exit_code == 2, r.output
    return r.output.strip()


@pytest.mark.parametrize("name,text,raw,words", BAD, ids=[b[0] for b in BAD])
def test_one_rule_and_one_wording_in_every_front_end(name, text, raw, words, tmp_path):
    from netdiff_tui.screens.generate import build_request
    key = rq.spec(name).recipe
    d = {"label": "dns"}
    sec, _, k = key.rpartition(".")
    (d.setdefault(sec, {}) if sec else d)[k] = raw
    with pytest.raises(InputError) as recipe:
        rp.parse_recipe(d, "r.toml")
    cli = _cli_error(tmp_path, rq.cli_name(name), text)
    with pytest.raises(InputError) as form:
        build_request(None, {"label": "dns", name: text})
    assert f"r.toml: key '{key}': {words}" in str(recipe.value)
    assert f"netdiff: error: {rq.cli_name(name)}: {words}" in cli
    assert str(form.value).startswith(f"{rq.form_label(name)}: {words}")
    # the problem after the field's name is word for word the same
    tails = {str(recipe.value).split(f"key '{key}': ", 1)[1], cli.split(f"{rq.cli_name(name)}: ", 1)[1],
             str(form.value).split(": ", 1)[1]}
    assert len(tails) == 1, tails


def test_rules_across_fields_name_the_fields_in_each_vocabulary(tmp_path):
    from netdiff_tui.screens.generate import build_request
    with pytest.raises(InputError, match=r"key 'sampling.like_split': needs sampling.like "):
        rp.parse_recipe({"label": "dns", "sampling": {"like_split": "s.json"}}, "r.toml")
    split = tmp_path / "s.json"
    split.write_text("{}")
    assert "--like-split: needs --like " in _cli_error(tmp_path, "--like-split", str(split))
    with pytest.raises(InputError, match=r"^like split: needs like "):
        build_request(None, {"label": "dns", "like_split": str(split)})


def test_engine_checks_a_request_built_in_python(tmp_path):
    from engine.datasets.generate import generate
    for req, words in ((GenerationRequest(label="dns", seed=-1), "seed: must be between 0 and"),
                       (GenerationRequest(label="dns", server_ports=(22,), client_port_range=(1, 1000)),
                        "client_port_range: range 1-1000 contains service port 22"),
                       (GenerationRequest(label="dns", like_values=-1.0), "like_values: must be >= 0"),
                       (GenerationRequest(label="dns", server_ports=("22",)), r"server_ports: expected \(22,\), got \('22',\)")):
        with pytest.raises(InputError, match=words):
            generate(req, tmp_path / "o")            # refused before a model is loaded or a file written
        assert not (tmp_path / "o").exists()


def test_docs_list_every_recipe_key():
    from conftest import ROOT
    text = (ROOT / "docs" / "recipes.md").read_text()
    missing = sorted({rq.spec(n).recipe for n in NAMES if f"| `{rq.spec(n).recipe}`" not in text
                      and f", `{rq.spec(n).recipe}`" not in text})
    assert not missing, f"docs/recipes.md's schema table lacks {missing}"
