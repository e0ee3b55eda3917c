"""MkDocs hook: the parts of the docs that come from the code and the result files, made at every build.

- `<!-- options: COMMAND -->`: that command's options, read from its own argparse parser (so the reference
  cannot drift from `--help`); COMMAND is a key of `COMMANDS`.
- `<!-- table: NAME -->`: a benchmark table rendered by `benchmarks/tables.py` from
  `benchmarks/results/NAME.json` (`A+B` joins demo_seeds files).
- `{{params MODEL PRESET}}`: the parameter count of a registered model built with a preset (`default` for
  the model's full config), counted from the built Keras model.

Anything that cannot be made fails the build (a missing result file, a command that builds no parser).
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import io
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _checkout_first() -> None:
    """The checkout's packages (benchmarks/ is not installed), first; checked at every event, because MkDocs
    loads this file with its own import machinery and what is on sys.path then need not be there later."""
    if sys.path[:1] != [ROOT]:
        sys.path.insert(0, ROOT)

#: command shown in the docs -> (module:function, argv that reaches its parser)
COMMANDS = {
    "seq2exp-build": ("seq2exp.cli.commands:build_main", ["--help"]),
    "seq2exp-train": ("seq2exp.cli.commands:train_main", ["--help"]),
    "seq2exp-evaluate": ("seq2exp.cli.commands:evaluate_main", ["--help"]),
    "seq2exp-predict": ("seq2exp.cli.commands:predict_main", ["--help"]),
    "seq2exp-report dream": ("seq2exp.cli.commands:report_main", ["dream", "--help"]),
    "python -m crmnet.convert": ("crmnet.convert:main", ["--help"]),
    "python -m legnet_tf.convert": ("legnet_tf.convert:main", ["--help"]),
    "python -m benchmarks.step_time": ("benchmarks.step_time:main", ["--help"]),
    "python -m benchmarks.demo_seeds": ("benchmarks.demo_seeds:main", ["--help"]),
}

OPTIONS = re.compile(r"<!--\s*options:\s*(.+?)\s*-->")
TABLE = re.compile(r"<!--\s*table:\s*(\S+)\s*-->")
PARAMS = re.compile(r"\{\{\s*params\s+(\w+)\s+(\w+)\s*\}\}")


class _Captured(Exception):
    def __init__(self, parser: argparse.ArgumentParser):
        super().__init__(parser.prog)
        self.parser = parser


@contextlib.contextmanager
def _capturing_parsers():
    """While active, the first parse_args of any parser hands the parser over instead of parsing."""
    saved = argparse.ArgumentParser.parse_args, argparse.ArgumentParser.parse_known_args

    def capture(self, *args, **kwargs):
        raise _Captured(self)

    argparse.ArgumentParser.parse_args = argparse.ArgumentParser.parse_known_args = capture
    try:
        yield
    finally:
        argparse.ArgumentParser.parse_args, argparse.ArgumentParser.parse_known_args = saved


@functools.cache
def command_parser(command: str) -> argparse.ArgumentParser:
    if command not in COMMANDS:
        raise ValueError(f"options: unknown command {command!r} (known: {', '.join(COMMANDS)})")
    target, argv = COMMANDS[command]
    module, func = target.split(":")
    main = getattr(importlib.import_module(module), func)
    with _capturing_parsers(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            main(argv)
        except _Captured as got:
            return got.parser
        except SystemExit:
            pass
    raise ValueError(f"options: {target}({argv}) returned without building a parser")


def _md(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _flag(action: argparse.Action) -> str:
    if not action.option_strings:
        return f"`{action.metavar or action.dest}`" + (" ..." if action.nargs in ("+", "*") else "")
    return ", ".join(f"`{s}`" for s in action.option_strings)


def _value(action: argparse.Action) -> str:
    if not action.option_strings or action.nargs == 0:
        return ""
    if action.choices is not None and action.metavar is None:
        return ", ".join(f"`{c}`" for c in action.choices)
    meta = action.metavar or action.dest.upper()
    return f"`{meta}`" + (" ..." if action.nargs in ("+", "*") else "")


def _default(action: argparse.Action) -> str:
    d = action.default
    if action.nargs == 0 or d is None or d is argparse.SUPPRESS or d == [] or not action.option_strings:
        return ""
    return f"`{d}`"


def options_markdown(command: str) -> str:
    """Usage, description and one table per argument group, from the command's parser."""
    p = command_parser(command)
    formatter = p._get_formatter()
    out = ["```text", p.format_usage().strip(), "```", ""]
    if p.description:
        out += [p.description.strip(), ""]
    for group in p._action_groups:
        actions = [a for a in group._group_actions if a.help is not argparse.SUPPRESS
                   and not isinstance(a, argparse._HelpAction)]
        if not actions:
            continue
        out += [f"**{group.title}**", "", "| option | value | what it does |", "|---|---|---|"]
        for a in actions:
            help_text = formatter._expand_help(a) if a.help else ""
            if "default" not in help_text and _default(a):  # what --help leaves unsaid, the parser still knows
                help_text = f"{help_text} (default: {_default(a)})".strip()
            out.append(f"| {_flag(a)} | {_value(a)} | {_md(help_text)} |")
        out.append("")
    return "\n".join(out)


@functools.cache
def parameter_count(model: str, preset: str) -> str:
    from seq2exp.engine.registry import get_model_spec

    spec = get_model_spec(model)
    if preset == "default":
        config = spec.default_config()
    elif preset in spec.presets:
        config = spec.presets[preset]()
    else:
        raise ValueError(f"params: model {model} has no preset {preset!r} (has {', '.join(spec.presets)})")
    return f"{spec.build(config).count_params():,}"


def on_page_markdown(markdown: str, page, config, files) -> str:
    _checkout_first()
    from benchmarks.tables import render

    where = page.file.src_path
    try:
        markdown = OPTIONS.sub(lambda m: options_markdown(m.group(1)), markdown)
        markdown = TABLE.sub(lambda m: render(m.group(1)), markdown)
        markdown = PARAMS.sub(lambda m: parameter_count(m.group(1), m.group(2)), markdown)
    except Exception as err:  # the build must stop, naming the page and what failed
        from mkdocs.exceptions import PluginError

        raise PluginError(f"docs/{where}: {type(err).__name__}: {err}") from err
    return markdown
