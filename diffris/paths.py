"""Where diffris looks for things on disk: its cache and Stable Diffusion weights.

Nothing is ever downloaded implicitly; these functions only look.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

#: Environment variable naming a local Stable Diffusion 1.5 folder in the diffusers layout.
SD15_ENV = "DIFFRIS_SD15"
#: Environment variable overriding diffris' own cache folder.
HOME_ENV = "DIFFRIS_HOME"
#: Sub-folders a diffusers-layout Stable Diffusion folder must have for DiffRIS.
SD_SUBFOLDERS = ("unet", "vae", "text_encoder", "tokenizer")


def diffris_home() -> Path:
    """The cache folder for trained models and downloaded weights (``$DIFFRIS_HOME``)."""
    if env := os.environ.get(HOME_ENV):
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "diffris"


def checkpoint_cache() -> Path:
    """Where named trained models are cached (``<home>/models``)."""
    return diffris_home() / "models"


def sd15_candidates(explicit: str | os.PathLike[str] | None = None) -> list[Path]:
    """The folders searched for Stable Diffusion 1.5 weights, in order.

    Args:
        explicit: a folder given on the command line (``--pretrained``); searched first.
    """
    candidates: list[Path] = []
    if explicit:
        candidates.append(Path(explicit).expanduser())
    if env := os.environ.get(SD15_ENV):
        candidates.append(Path(env).expanduser())
    candidates.append(diffris_home() / "stable-diffusion-v1-5")
    return candidates


@dataclass(frozen=True)
class WeightsLookup:
    """The outcome of looking for a diffusers-layout folder."""

    path: Path
    missing: tuple[str, ...]

    @property
    def found(self) -> bool:
        return self.path.is_dir() and not self.missing


def inspect_sd_folder(path: Path) -> WeightsLookup:
    """Which of the required diffusers sub-folders ``path`` lacks."""
    missing = tuple(name for name in SD_SUBFOLDERS if not (path / name).is_dir())
    return WeightsLookup(path=path, missing=missing)


def find_sd15(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The first complete Stable Diffusion folder among :func:`sd15_candidates`, else None."""
    for candidate in sd15_candidates(explicit):
        if inspect_sd_folder(candidate).found:
            return candidate
    return None
