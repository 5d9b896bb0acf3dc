"""``--help`` of every command and sub-command, rendered as a user sees it at 100 columns."""

import re

import pytest
import typer
from typer.testing import CliRunner

from diffris.train.config import TRAIN_DATASETS
from diffris_cli.app import app

runner = CliRunner()
WIDTH = 100
#: Typer's Python type labels, which mean nothing to a GDAL user (``<diffris home>`` is prose).
PYTHON_METAVAR = re.compile(r"<(list\[|bool>|str>|int|float|path>|Path>|dir>|file>)")
BOX = ("╭", "│", "╰")


def _command_paths(command=None, path=()):  # type: ignore[no-untyped-def]
    command = command or typer.main.get_command(app)
    yield path
    for name, sub in getattr(command, "commands", {}).items():
        yield from _command_paths(sub, (*path, name))
    if path == ("archive",):
        yield ("archive", "status")


COMMANDS = list(_command_paths())


def _help(*path: str) -> str:
    result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": str(WIDTH)})
    assert result.exit_code == 0, result.output
    return result.stdout


def test_every_command_is_walked():
    assert {"segment", "archive", "evaluate", "train", "info"} <= {p[0] for p in COMMANDS if p}
    assert ("synth", "scene") in COMMANDS and ("archive", "status") in COMMANDS


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "diffris")
def test_help_has_no_python_type_names_and_flags_take_no_metavar(path):
    text = _help(*path)
    assert not PYTHON_METAVAR.search(text), PYTHON_METAVAR.search(text)
    for line in text.splitlines():
        if re.match(r"│ [ *]{0,4}(--help|--json|--overwrite|--quiet)\b", line):
            # a flag's row goes straight from its names to its help text
            assert re.search(r"(--help|--json|--overwrite|--quiet)( +-[a-z])?\s{2,}[A-Z]", line), (
                line
            )


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "diffris")
def test_help_prose_wraps_cleanly_and_panels_are_intact(path):
    """No line of prose ends early (a hard newline of the docstring): rich fills each line,
    so the next line's first word never fits at its end; every panel line is whole."""
    lines = _help(*path).splitlines()
    first_panel = next(i for i, line in enumerate(lines) if line.startswith("╭"))
    prose = [line.rstrip() for line in lines[:first_panel]]
    for line, following in zip(prose, prose[1:], strict=False):
        if not line or not following or line.lstrip().startswith("Usage:"):
            continue
        next_word = following.split()[0]
        assert len(line) + 1 + len(next_word) > WIDTH - 2, f"broken wrap:\n{line}\n{following}"
    for line, following in zip(prose, prose[1:], strict=False):
        if line.lstrip().startswith(("diffris ", "torchrun ")):  # an example: one line, to copy
            assert not following, f"example wraps at {WIDTH} columns:\n{line}\n{following}"
    for line in lines[first_panel:]:
        if line.startswith(BOX):
            assert len(line) == WIDTH and line.endswith(("╮", "│", "╯")), line


def test_archive_status_help_is_its_own():
    text = _help("archive", "status")
    assert "Usage: diffris archive status [OPTIONS]" in text
    assert "--all" in text and "--prompts" not in text and "--workers" not in text
    assert "Usage: diffris archive status" in runner.invoke(app, ["archive", "status", "-h"]).stdout
    assert "--all" not in _help("archive")  # a status flag, no longer on the run's list


def test_train_help_lists_every_training_dataset():
    text = " ".join(_help("train").split())
    assert all(name in text for name in TRAIN_DATASETS)


def test_train_help_says_the_defaults_depend_on_the_model():
    text = " ".join(_help("train").split())
    assert "The recipe's defaults depend on the model" in text
    assert "(5e-5 | 1e-4)" in text and "(oIoU | mIoU)" in text and "(poly | warmup-cosine)" in text
    for flag in ("--loss", "--schedule", "--warmup-epochs", "--select-by", "--bce-weight"):
        assert flag in text


@pytest.mark.parametrize("command", ["segment", "archive", "evaluate"])
def test_model_help_names_every_architectures_presets(command):
    from diffris.models.names import PRESETS

    words = set(re.split(r"[\s│,;:()]+", _help(command)))
    assert "--model" in words and set(PRESETS) <= words
