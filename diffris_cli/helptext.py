"""How ``--help`` reads: GDAL/rio-style metavars and prose that wraps at any terminal width.

Typer >= 0.29 prints Python type names as metavars (``<list[Path]>``, ``<str>``, and ``<bool>``
even on flags, which take no value) and keeps every hard newline of a docstring, so a paragraph
wrapped at 95 columns in the source breaks twice per line on an 80-column terminal. The command
and group classes here fix both for every command, present and future: a flag shows no metavar,
a value shows ``TEXT``, ``INTEGER``, ``FLOAT``, ``PATH`` (or the option's own ``metavar``), an
argument shows its upper-case name, and prose paragraphs are joined into one line each so rich
wraps them. Indented paragraphs (examples) and Click's ``\\b`` paragraphs are kept as written.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

from typer import Context
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

#: Typer's type labels (inside ``<...>``) -> the metavars GDAL and rio users know.
_TYPE_METAVARS = {
    "str": "TEXT",
    "int": "INTEGER",
    "int range": "INTEGER",
    "float": "FLOAT",
    "float range": "FLOAT",
    "path": "PATH",
    "dir": "DIR",
    "file": "FILE",
    "Path": "PATH",
}


def reflow(text: str | None) -> str | None:
    """Help text whose prose paragraphs are single lines (rich wraps them to the terminal).

    A paragraph that starts with whitespace (an example command) or with Click's ``\\b``
    marker keeps its line breaks.
    """
    if not text:
        return text
    paragraphs = inspect.cleandoc(text).split("\n\n")
    joined = [
        p if p.startswith((" ", "\t", "\b")) else " ".join(line.strip() for line in p.splitlines())
        for p in paragraphs
    ]
    return "\n\n".join(joined)


def _value_metavar(label: str) -> str:
    label = label.strip("<>")
    repeated = re.fullmatch(r"list\[(.+)\]", label)
    if repeated:
        label = repeated.group(1)
    return _TYPE_METAVARS.get(label, label.upper())


class _Option(TyperOption):
    """A Typer option with a GDAL-style metavar: none on a flag, ``TEXT``/``INTEGER``/``PATH``..."""

    def display_type_rich(self, ctx: Context) -> str | None:
        if self.is_flag or self.count:
            return None
        if self.metavar is not None:
            return self.metavar
        return _value_metavar(self.display_type(ctx))


class _Argument(TyperArgument):
    """A Typer argument shown as its upper-case name (``SCENES...``), without a type label."""

    @property
    def display_name_raw(self) -> str:
        return self.metavar if self.metavar is not None else (self.name or "").upper()

    def display_type_rich(self, ctx: Context) -> str | None:
        return None

    def _rich_display_name(self) -> str:
        return self.display_name_raw + ("..." if self.nargs != 1 else "")

    def _usage_display_name(self) -> str:
        name = self.display_name_raw if self.required else f"[{self.display_name_raw}]"
        return name + ("..." if self.nargs != 1 else "")


def _tidy(params: list[Any]) -> list[Any]:
    for param in params:
        if type(param) is TyperOption:
            param.__class__ = _Option
        elif type(param) is TyperArgument:
            param.__class__ = _Argument
    return params


class DiffrisCommand(TyperCommand):
    """A command whose help has GDAL-style metavars and prose that wraps cleanly."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.help = reflow(self.help)
        _tidy(self.params)

    def get_params(self, ctx: Context) -> list[Any]:
        return _tidy(super().get_params(ctx))  # also the --help option Click adds late


class DiffrisGroup(TyperGroup):
    """A command group with the same help conventions as :class:`DiffrisCommand`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.help = reflow(self.help)
        _tidy(self.params)

    def get_params(self, ctx: Context) -> list[Any]:
        return _tidy(super().get_params(ctx))
