"""Loading Stable Diffusion parts with diffusers/transformers: their errors as one line, their
loading reports checked (never random values for a missing tensor), their output kept quiet."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from diffris.errors import CheckpointMismatchError, WeightsNotFoundError

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def load_errors(source: str | Path, sub: str) -> Iterator[None]:
    """Turn what diffusers/transformers raise on a broken sub-folder into one clear line.

    Shapes in the weights that contradict the config give a ``RuntimeError``; a corrupt
    safetensors header a ``SafetensorError`` or ``OSError``; a config with wrong types a
    ``TypeError``/``ValueError``/``KeyError`` from the class constructor.
    """
    from safetensors import SafetensorError

    try:
        yield
    except (OSError, RuntimeError, ValueError, TypeError, KeyError, SafetensorError) as err:
        if isinstance(err, CheckpointMismatchError | WeightsNotFoundError):
            raise
        text = str(err).strip()
        # the libraries repeat the folder's path; cut so that the message stays one short line
        first = text.splitlines()[0].replace(str(source), "the folder") if text else ""
        reason = (first[:120] + "...") if len(first) > 120 else (first or type(err).__name__)
        raise WeightsNotFoundError(
            f"could not load {sub}/ of Stable Diffusion from {source}: {reason}; check that the "
            "folder is a complete diffusers-layout copy with safetensors weights"
        ) from err


@contextlib.contextmanager
def quiet_hub_libraries() -> Iterator[None]:
    """No progress bars and no loading reports from diffusers/transformers while loading.

    They print "Loading weights" bars and missing/unexpected-tensor reports straight to stderr
    (under ``-q`` too); diffris checks the loading report itself (:func:`check_loading_info`)
    and logs what matters in its own words. Their settings are restored afterwards.
    """
    import diffusers.utils.logging as diffusers_logging
    import transformers.utils.logging as transformers_logging

    saved = []
    for library in (diffusers_logging, transformers_logging):
        saved.append((library, library.get_verbosity(), library.is_progress_bar_enabled()))
        library.set_verbosity(logging.ERROR)
        library.disable_progress_bar()
    try:
        yield
    finally:
        for library, verbosity, bars in saved:
            library.set_verbosity(verbosity)
            if bars:
                library.enable_progress_bar()


def check_loading_info(source: str | Path, sub: str, info: dict[str, Any]) -> None:
    """Refuse weights that leave tensors of the part missing or mis-shaped (diffusers and
    transformers would fill them with random values and only log it)."""
    missing = sorted(info.get("missing_keys") or ())
    mismatched = [str(item[0]) for item in info.get("mismatched_keys") or ()]
    if missing or mismatched:
        problems = [f"missing {name}" for name in missing] + [
            f"{name} of another shape" for name in mismatched
        ]
        shown = ", ".join(problems[:3]) + (
            f" and {len(problems) - 3} more" if len(problems) > 3 else ""
        )
        raise WeightsNotFoundError(
            f"the weights in {sub}/ of {source} do not cover the model its config.json "
            f"describes: {shown}; use the weights and config of one complete copy"
        )
    if unexpected := sorted(info.get("unexpected_keys") or ()):
        logger.warning(
            "%s/ of %s holds %d tensor(s) its config does not use (e.g. %s); ignored",
            sub,
            source,
            len(unexpected),
            unexpected[0],
        )
