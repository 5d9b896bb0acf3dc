"""Python warnings into the log: the expected ones at debug level, every other one visible.

Libraries diffris calls warn about things diffris already handles and says itself, in its own
words; those raw lines (with a file path and a source line) only confuse. Each expected warning is
listed below with why; it is logged at DEBUG (seen with ``-v``/``--debug``). Any other warning
stays a WARNING line of the log, so that a new problem is never hidden (also under ``-q``).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

#: The logger :func:`logging.captureWarnings` sends warnings to.
WARNINGS_LOGGER = "py.warnings"


@dataclass(frozen=True)
class ExpectedWarning:
    """A warning diffris expects: its category's name and a pattern of its message.

    Attributes:
        category: the class name (matched by name, so that no library is imported for it).
        message: a regular expression searched in the message; "" matches any.
        why: what makes it expected (where diffris says it itself, or why it is harmless).
    """

    category: str
    message: str
    why: str


EXPECTED_WARNINGS = (
    ExpectedWarning(
        "NotGeoreferencedWarning",
        "",
        "rasterio, for a scene or output without geotransform: diffris logs its own line "
        "('X has no CRS; outputs will share its pixel grid') and writes such outputs on purpose",
    ),
    ExpectedWarning(
        "ComplexWarning",
        "[Cc]asting complex values to real",
        "numpy, reading a complex (e.g. SAR CInt16) scene: diffris logs once that it reads the "
        "real part, instead of numpy's line per window",
    ),
    ExpectedWarning(
        "FutureWarning",
        r"`resume_download`|`torch_dtype`|clean_up_tokenization_spaces",
        "transformers/huggingface_hub deprecation notices about arguments diffris does not pass",
    ),
    ExpectedWarning(
        "UserWarning",
        r"TypedStorage is deprecated",
        "torch, while safetensors/transformers load weights: internal, not actionable",
    ),
)

#: "path:lineno: Category: message" (the first line of :func:`warnings.formatwarning`).
_FORMATTED = re.compile(r"(?P<where>.*?:\d+): (?P<category>\w+): (?P<message>.*)")


class ExpectedWarningsToDebug(logging.Filter):
    """Make each captured warning one log line; those of :data:`EXPECTED_WARNINGS` DEBUG ones.

    Args:
        level: the level the CLI logs at; above DEBUG, expected warnings are dropped.
    """

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        first = record.getMessage().strip().splitlines()[0] if record.getMessage().strip() else ""
        match = _FORMATTED.match(first)
        if match is None:
            return True
        category, message = match["category"], match["message"]
        record.msg, record.args = f"{category}: {message} ({match['where']})", ()
        if not is_expected(category, message):
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return self.level <= logging.DEBUG


def is_expected(category: str, message: str) -> bool:
    """Whether a warning of class ``category`` (its name) saying ``message`` is expected."""
    return any(
        expected.category == category and re.search(expected.message, message)
        for expected in EXPECTED_WARNINGS
    )


def route_warnings(handlers: list[logging.Handler], level: int) -> None:
    """Send Python warnings through ``handlers``; expected ones only when ``level`` is DEBUG."""
    # Off, then on: re-installs the hook if something (pytest, catch_warnings) replaced it.
    logging.captureWarnings(False)
    logging.captureWarnings(True)
    captured = logging.getLogger(WARNINGS_LOGGER)
    captured.handlers = list(handlers)
    captured.filters = [ExpectedWarningsToDebug(level)]
    captured.setLevel(logging.DEBUG)
    captured.propagate = False
