"""One checkpoint reference (engine.hub.refs): parsing, the pinned-commit rule of recipes,
and one-line errors for every bad reference."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.hub.refs import RefError, parse_ref

C = "0123456789abcdef0123456789abcdef01234567"


@pytest.mark.parametrize("text, kind, repo, rev", [
    ("default", "default", None, None),
    ("", "default", None, None),
    ("hf://org/name", "hub", "org/name", None),
    (f"hf://org/name@{C}", "hub", "org/name", C),
    ("hf://org/na.me-2@main", "hub", "org/na.me-2", "main"),
    ("hf://org/name@refs/pr/1", "hub", "org/name", "refs/pr/1"),
    ("org/name@v1.0", "hub", "org/name", "v1.0"),
    ("./org/name", "local", None, None),
    ("/abs/dir", "local", None, None),
    ("~/models/x", "local", None, None),
    ("justadir", "local", None, None),
])
def test_parse_forms(text, kind, repo, rev):
    r = parse_ref(text)
    assert (r.kind, r.repo_id, r.revision) == (kind, repo, rev)
    if kind == "hub":
        assert r.uri == f"hf://{repo}" + (f"@{rev}" if rev else "")
        assert r.pinned == (rev == C)


def test_existing_directory_wins_over_repo_id(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "org" / "name").mkdir(parents=True)
    assert parse_ref("org/name").kind == "local"
    assert parse_ref("hf://org/name").kind == "hub"
    assert parse_ref("other/name").kind == "hub"
    assert parse_ref("name", base=tmp_path / "org").kind == "local"


@pytest.mark.parametrize("text, words", [
    ("hf://org", "not a Hub repository id"),
    ("hf://org/na--me", "not a Hub repository id"),
    ("hf://org/name@", "not a branch, tag or commit"),
    ("hf://org/name@a..b", "not a branch, tag or commit"),
    ("s3://bucket/model", "unknown scheme"),
])
def test_bad_references(text, words):
    with pytest.raises(RefError, match=words) as e:
        parse_ref(text)
    assert "\n" not in str(e.value) and isinstance(e.value, ValueError)


def test_recipes_require_a_pinned_commit():
    for text, words in (("hf://org/name", "is not pinned"), ("hf://org/name@main", "is not a 40-hex commit"),
                        ("org/name@v1", "is not a 40-hex commit")):
        with pytest.raises(RefError, match=words):
            parse_ref(text, require_pinned=True)
    assert parse_ref(f"hf://org/name@{C}", require_pinned=True).pinned


def test_recipe_with_unpinned_model_is_one_line(tmp_path):
    from netdiff_tui.cli import main
    f = tmp_path / "r.toml"
    f.write_text('label = "dns"\nmodel = "hf://org/name@main"\n')
    r = CliRunner().invoke(main, ["recipes", "validate", str(f)])
    errs = [ln for ln in r.output.splitlines() if "error" in ln]
    assert r.exit_code == 2 and len(errs) == 1 and "Traceback" not in r.output, r.output
    assert "r.toml" in errs[0] and "model" in errs[0] and "40-hex commit" in errs[0]


def test_pickles_need_a_flag():
    from engine.hub.download import _patterns
    with pytest.raises(RefError, match="--allow-pickle"):
        _patterns(["*.bin"], allow_pickles=False)
    pats, ignore = _patterns(None, allow_pickles=False)
    assert "*.safetensors" in pats and "*.bin" in ignore and "*.ckpt" in ignore and "*.pkl" in ignore
    assert _patterns(["*.bin"], allow_pickles=True) == (["*.bin"], None)


def test_missing_local_directory_hints_the_hub_form(tmp_path, monkeypatch):
    from engine.errors import InputError
    from engine.hub.refs import resolve_ref
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match="no such checkpoint directory"):
        resolve_ref("./nothere")
    assert resolve_ref("default") == Path(__file__).resolve().parent.parent / "engine" / "default_model"
