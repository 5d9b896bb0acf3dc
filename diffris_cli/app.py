"""The ``diffris`` command: a Typer app whose commands each live in their own module.

Command modules import only Typer and the option definitions at the top; the library (torch,
rasterio, dask, ...) is imported inside each command, so ``--help``, ``--version`` and a bad
flag answer at once (``benchmarks/cli_startup.py`` measures it).
"""

from __future__ import annotations

import functools
import os
from typing import Annotated

import typer

from diffris import __version__
from diffris_cli import archive, evaluate, info, segment, synth, train, weights
from diffris_cli.errors import debug_enabled
from diffris_cli.helptext import DiffrisCommand, DiffrisGroup
from diffris_cli.logs import configure_logging
from diffris_cli.options import QUIET_HELP

app = typer.Typer(
    name="diffris",
    help="Referring segmentation of large georeferenced scenes from natural-language "
    "descriptions, with the DiffRIS and RSRefSeg models.",
    no_args_is_help=True,
    cls=DiffrisGroup,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    add_completion=False,
)


def _restore_env(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"diffris {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    ctx: typer.Context,
    verbose: Annotated[
        int,
        typer.Option("--verbose", "-v", count=True, show_default=False, help="More log detail."),
    ] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help=QUIET_HELP)] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks (also DIFFRIS_DEBUG=1).")
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_show_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Options shared by every command."""
    if debug:
        # An environment variable, not a global: worker processes inherit it too. It is put
        # back when the command ends, so a caller running several commands in one process
        # (tests, notebooks) does not carry --debug into the next one.
        previous = os.environ.get("DIFFRIS_DEBUG")
        os.environ["DIFFRIS_DEBUG"] = "1"
        ctx.call_on_close(functools.partial(_restore_env, "DIFFRIS_DEBUG", previous))
    configure_logging(verbose, quiet, debug=debug or debug_enabled())


app.command(name="segment", cls=DiffrisCommand)(segment.segment)
app.command(name="archive", cls=archive.ArchiveCommand)(archive.archive)
# extra arguments reach the command, which names the fix for the old `--json PATH`
app.command(name="evaluate", cls=DiffrisCommand, context_settings={"allow_extra_args": True})(
    evaluate.evaluate_command
)
app.command(name="train", cls=DiffrisCommand)(train.train)
app.add_typer(synth.app, name="synth")
app.command(name="info", cls=DiffrisCommand)(info.info)
app.add_typer(weights.app, name="weights")


def main() -> None:
    """Console-script entry point."""
    app()
