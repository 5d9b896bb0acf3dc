"""One warning when a demo-grade model is run on a real scene: its masks mean nothing there.

A model is demo-grade when its frozen backbone is random: the ``tiny`` or ``rsrefseg-tiny``
preset itself, the bundled demo models, anything trained on them. Such a model only ever saw synthetic
scenes (``diffris synth scene``, which tags its output ``generator=diffris synthetic scene``);
on real imagery it still writes plausible-looking masks, so a run says so, once.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from diffris.models.interface import BackboneIdentity

logger = logging.getLogger(__name__)

#: Fingerprint of the ``tiny`` preset's frozen weights (a test keeps it in step with the
#: preset). It also names a tiny backbone saved as a folder and loaded through ``sd15``.
TINY_FINGERPRINT = "eda26e6cc637a316"
#: The same weights' fingerprint in scheme 1, which configs of older diffris record.
LEGACY_TINY_FINGERPRINT = "da32076d3587a11b"
#: Fingerprint of the ``rsrefseg-tiny`` preset's random SigLIP and SAM (kept in step by a test).
#: It also names those weights saved as Hugging Face folders and loaded through ``rsrefseg-b``.
RSREFSEG_TINY_FINGERPRINT = "82c8fc5f2ee09fca"
#: Every random backbone's fingerprint: a model built on one of these is demo-grade.
DEMO_FINGERPRINTS = (TINY_FINGERPRINT, LEGACY_TINY_FINGERPRINT, RSREFSEG_TINY_FINGERPRINT)


def is_demo_grade(backbone: BackboneIdentity) -> bool:
    """Whether a model with this backbone is a demo: built on random (``tiny``,
    ``rsrefseg-tiny``) frozen weights, by preset name or by the weights' fingerprint."""
    from diffris.models.names import DEMO_PRESETS

    return backbone.preset in DEMO_PRESETS or backbone.fingerprint in DEMO_FINGERPRINTS


def is_synthetic_scene(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` was written by ``diffris synth scene`` (by its GDAL metadata tag).

    A scene that cannot be opened counts as synthetic here: the run reports that error itself.
    """
    import rasterio

    from diffris.data.synthetic.georef import SYNTHETIC_GENERATOR

    try:
        with warnings.catch_warnings():  # a scene without georeferencing is logged elsewhere
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            with rasterio.open(path) as scene:
                return scene.tags().get("generator") == SYNTHETIC_GENERATOR
    except (rasterio.errors.RasterioError, OSError):
        return True


def warn_if_demo_on_real_scenes(
    backbone: BackboneIdentity, scenes: Sequence[str | os.PathLike[str]]
) -> bool:
    """Log one warning if a demo-grade model is about to segment scenes that are not synthetic.

    Args:
        backbone: the model's ``config.backbone``.
        scenes: every scene of the run (a run warns once, however many are real).

    Returns:
        Whether it warned.
    """
    if not is_demo_grade(backbone):
        return False
    real = [str(scene) for scene in scenes if not is_synthetic_scene(scene)]
    if not real:
        return False
    which = real[0] if len(real) == 1 else f"{real[0]} and {len(real) - 1} other scene(s)"
    logger.warning(
        "%s is not a synthetic scene, and this is a demo model (the random %r backbone, "
        "trained on synthetic scenes at most): its masks there are meaningless; for real imagery "
        "use a model trained on a benchmark with real foundations (Stable Diffusion 1.5 for "
        "DiffRIS, SigLIP and SAM for RSRefSeg; see README, 'Honest about what ships')",
        which,
        backbone.preset,
    )
    return True
