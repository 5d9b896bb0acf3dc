"""Where diffris looks for things on disk: its cache and Stable Diffusion weights.

Nothing is ever downloaded implicitly; these functions only look. ``diffris weights download
sd15`` (:mod:`diffris.weights`) fetches the weights into :func:`default_sd15_folder`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

#: Environment variable naming a local Stable Diffusion 1.5 folder in the diffusers layout.
SD15_ENV = "DIFFRIS_SD15"
#: Environment variable overriding diffris' own cache folder.
HOME_ENV = "DIFFRIS_HOME"
#: The Hub repository of Stable Diffusion 1.5 in the diffusers layout (the original
#: ``runwayml/stable-diffusion-v1-5`` was taken down in 2024; this is its maintained mirror).
SD15_REPO_ID = "stable-diffusion-v1-5/stable-diffusion-v1-5"
#: The command that fetches it, for messages.
SD15_DOWNLOAD_COMMAND = "diffris weights download sd15"
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


def default_sd15_folder() -> Path:
    """Where diffris looks for Stable Diffusion 1.5 last, and downloads it to
    (``<home>/stable-diffusion-v1-5``)."""
    return diffris_home() / "stable-diffusion-v1-5"


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
    candidates.append(default_sd15_folder())
    return candidates


#: Weight file stem of each sub-folder with weights; only ``<stem>[.<variant>].safetensors``
#: (or a sharded ``.safetensors.index.json``) is ever loaded, never ``.bin``/``.ckpt`` pickles.
SD_WEIGHT_STEMS = {
    "unet": "diffusion_pytorch_model",
    "vae": "diffusion_pytorch_model",
    "text_encoder": "model",
}
#: Files the CLIP tokenizer is read from: the vocabulary and merges (as in SD-1.5's repository),
#: or the one ``tokenizer.json`` that transformers >= 5 writes.
TOKENIZER_FILES = (("vocab.json", "merges.txt"), ("tokenizer.json",))


@dataclass(frozen=True)
class WeightsLookup:
    """The outcome of looking for a diffusers-layout folder.

    Attributes:
        path: the folder looked at.
        missing: required sub-folders it lacks (``unet``, ``vae``, ...).
        problems: what the loader would refuse in the sub-folders it has, one phrase each,
            e.g. ``unet/ has only pickled weights (diffusion_pytorch_model.bin)``.
    """

    path: Path
    missing: tuple[str, ...]
    problems: tuple[str, ...] = ()

    @property
    def found(self) -> bool:
        """Whether the folder is complete and holds weights the loader accepts."""
        return self.path.is_dir() and not self.missing and not self.problems

    def reason(self) -> str:
        """Why the folder is not usable, in a few words ("" when it is)."""
        if not self.path.is_dir():
            return "no such folder"
        if self.missing:
            return "missing " + ", ".join(f"{name}/" for name in self.missing)
        return "; ".join(self.problems)


def safetensors_variant(directory: Path, stem: str) -> str | None:
    """Which ``stem`` weights ``directory`` holds as safetensors, as the loader reads them.

    Returns:
        ``""`` for ``<stem>.safetensors`` (or its sharded ``.safetensors.index.json``), the
        variant (e.g. ``"fp16"``) for ``<stem>.<variant>.safetensors`` or a variant's index, and
        None when there are none (pickles are never loaded).
    """
    for suffix in (".safetensors", ".safetensors.index.json"):
        if (directory / f"{stem}{suffix}").is_file():
            return ""
    # A sharded variant has an index (its shards are named "<stem>.<variant>-0000N-of-...").
    for suffix in (".safetensors.index.json", ".safetensors"):
        for path in sorted(directory.glob(f"{stem}.*{suffix}")):
            variant = path.name[len(stem) + 1 : -len(suffix)]
            if path.is_file() and variant and "-of-" not in variant:
                return variant
    return None


def has_safetensors(directory: Path, stem: str) -> bool:
    """Whether ``directory`` holds ``stem`` weights the loader reads (see
    :func:`safetensors_variant`)."""
    return safetensors_variant(directory, stem) is not None


def _problems(path: Path) -> tuple[str, ...]:
    """What the loader would refuse in ``path``'s sub-folders (those that exist)."""
    problems = []
    for sub, stem in SD_WEIGHT_STEMS.items():
        directory = path / sub
        if not directory.is_dir():
            continue
        if not (directory / "config.json").is_file():
            problems.append(f"{sub}/ has no config.json")
        if not has_safetensors(directory, stem):
            pickles = sorted(
                p.name for p in directory.iterdir() if p.suffix in (".bin", ".ckpt", ".pt", ".pth")
            )
            problems.append(
                f"{sub}/ has only pickled weights ({', '.join(pickles)}), no safetensors"
                if pickles
                else f"{sub}/ has no {stem}.safetensors"
            )
    tokenizer = path / "tokenizer"
    readable = any(all((tokenizer / n).is_file() for n in names) for names in TOKENIZER_FILES)
    if tokenizer.is_dir() and not readable:
        problems.append("tokenizer/ has neither vocab.json + merges.txt nor tokenizer.json")
    return tuple(problems)


def inspect_sd_folder(path: Path) -> WeightsLookup:
    """Which required diffusers sub-folders ``path`` lacks, and what the loader would refuse.

    Looks at names only (no weights are read): each of ``unet/``, ``vae/``, ``text_encoder/``
    needs a ``config.json`` and safetensors weights, ``tokenizer/`` its vocabulary and merges.
    """
    missing = tuple(name for name in SD_SUBFOLDERS if not (path / name).is_dir())
    problems = _problems(path) if path.is_dir() else ()
    return WeightsLookup(path=path, missing=missing, problems=problems)


def find_sd15(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The first complete Stable Diffusion folder among :func:`sd15_candidates`, else None."""
    for candidate in sd15_candidates(explicit):
        if inspect_sd_folder(candidate).found:
            return candidate
    return None
