"""Command-line options of a generation request, made from its declaration.

:func:`request_options` adds one click option per :class:`GenerationRequest` field,
with the field's help, range or choices, unit and default (``engine/datasets/request.py``).
Values arrive as text and are parsed by the declaration, so the command line, recipes
and the console's form accept and refuse the same values in the same words; a bad value
is one line naming the option (``--seed: must be between 0 and ..., got -1``), exit 2.
"""

from __future__ import annotations

import click
from click.core import ParameterSource

from engine.datasets import request as rq
from engine.errors import InputError


def request_options(only: tuple[str, ...] | None = None, show_defaults: bool = True):
    """Decorator: the request's fields (or ``only`` these) as options, in declaration order.

    ``show_defaults=False`` where an option overrides something other than the request's
    default (``balance --model``: each class's recipe).
    """
    names = [f.name for f in rq.FIELDS if only is None or f.name in only]

    def deco(fn):
        for name in reversed(names):
            fn = _option(name, show_defaults)(fn)
        return fn
    return deco


def _option(name: str, show_defaults: bool):
    k = rq.spec(name).kind
    flags = rq.cli_flags(name)
    if isinstance(k, rq.Bool):
        on, off = flags[0].split("/")
        shown = (on if rq.default(name) else off) if show_defaults else ""
        return click.option(flags[0], name, default=None, help=_help(name, shown))
    shown = rq.to_text(name, rq.default(name)) if show_defaults else ""
    metavar = "[" + "|".join(k.choices) + "]" if isinstance(k, rq.Choice) else k.metavar
    # text in, parsed by the declaration: click's own type errors would not be one line.
    # default None tells "not typed" (a recipe's value stays) from a typed default
    return click.option(*flags, name, type=str, default=None, metavar=metavar, help=_help(name, shown))


def _help(name: str, shown: str) -> str:
    return rq.help_text(name) + (f"  [default: {shown}]" if shown else "")


def given(ctx: click.Context, only: tuple[str, ...] | None = None) -> dict:
    """{field: request value} of the request options typed on the command line (defaults left out)."""
    out = {}
    try:
        for f in rq.FIELDS:
            if (only is not None and f.name not in only) or f.name not in ctx.params:
                continue
            if ctx.get_parameter_source(f.name) in (ParameterSource.DEFAULT, None):
                continue
            v = ctx.params[f.name]
            out[f.name] = rq.parse_value(f.name, v) if isinstance(v, bool) else rq.parse_text(f.name, v)
    except rq.Problem as p:
        raise InputError(None, f"{rq.cli_name(p.field)}: {p.text_for(rq.cli_name)}") from None
    return out


def request_from_command_line(ctx: click.Context, preset: str | None = None, recipe: str | None = None):
    """The request of ``--preset NAME`` / ``--recipe FILE`` (or the defaults) with the options typed on top."""
    from engine.datasets import recipes as rp
    values = given(ctx)
    if preset and recipe:
        raise InputError(None, "give --preset or --recipe, not both")
    base = None
    if preset or recipe:
        rc = rp.load_preset(preset) if preset else rp.resolve(recipe)
        base = rc.request
        if "label" in values and values["label"] != base.label:
            raise InputError(rc.path, f"key 'label': the recipe generates {base.label!r}, "
                                      f"but --label {values['label']!r} was given")
    elif "label" not in values:
        raise InputError(None, "give --label (or --preset / --recipe)")
    try:
        return rq.build(values, base)
    except rq.Problem as p:
        raise InputError(None, f"{rq.cli_name(p.field)}: {p.text_for(rq.cli_name)}") from None
