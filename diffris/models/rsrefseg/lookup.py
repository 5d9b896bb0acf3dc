"""Where RSRefSeg's SigLIP and SAM folders are looked for, and whether the loader accepts one.

Names and small JSON files only: no weights are read and nothing heavy is imported, so that
``diffris info`` and ``diffris weights`` can use it at once. Only safetensors weights count;
a folder with nothing but pickles (``pytorch_model.bin``, ``*.pt``, ``*.pth``, ``*.ckpt``) is
reported, never loaded.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diffris.paths import WeightsLookup, diffris_home

#: Environment variable naming a local SigLIP folder (Hugging Face layout).
SIGLIP_ENV = "DIFFRIS_SIGLIP"
#: Environment variable naming a local SAM folder; it must hold the ViT size the preset needs.
SAM_ENV = "DIFFRIS_SAM"
#: How a folder is given on the command line, for messages (``--pretrained KEY=DIR``).
OPTION = "--pretrained {key}=DIR"
#: Suffixes of pickled weight files, which diffris never loads.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
#: The weight files transformers reads in a folder, plain or sharded.
SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"


@dataclass(frozen=True)
class Foundation:
    """One frozen part RSRefSeg loads from a folder, and where it comes from.

    Attributes:
        name: its name for ``diffris weights download`` (``siglip``, ``sam-b``, ``sam-l``).
        key: its key in the ``pretrained`` mapping (``siglip`` or ``sam``).
        title: what messages call it.
        repo_id: the Hugging Face Hub repository it is fetched from.
        folder_name: its folder under diffris' home, where it is looked for last.
        env: the environment variable naming a folder.
        vit: for SAM, the image encoder's (hidden_size, num_hidden_layers); None for SigLIP.
    """

    name: str
    key: str
    title: str
    repo_id: str
    folder_name: str
    env: str
    vit: tuple[int, int] | None = None

    @property
    def default_folder(self) -> Path:
        """Where it is looked for last, and downloaded to (``<home>/<folder_name>``)."""
        return diffris_home() / self.folder_name

    @property
    def option(self) -> str:
        """The command-line form naming a folder for it."""
        return OPTION.format(key=self.key)

    @property
    def download_command(self) -> str:
        """The command that fetches it into :attr:`default_folder`."""
        return f"diffris weights download {self.name}"


SIGLIP = Foundation(
    "siglip",
    "siglip",
    "SigLIP so400m-patch14-384",
    "google/siglip-so400m-patch14-384",
    "siglip-so400m-patch14-384",
    SIGLIP_ENV,
)
SAM_B = Foundation(
    "sam-b", "sam", "SAM ViT-B", "facebook/sam-vit-base", "sam-vit-base", SAM_ENV, (768, 12)
)
SAM_L = Foundation(
    "sam-l", "sam", "SAM ViT-L", "facebook/sam-vit-large", "sam-vit-large", SAM_ENV, (1024, 24)
)
#: Download name -> part.
FOUNDATIONS: dict[str, Foundation] = {part.name: part for part in (SIGLIP, SAM_B, SAM_L)}
#: Preset -> (its SigLIP, its SAM).
PRESET_FOUNDATIONS: dict[str, tuple[Foundation, Foundation]] = {
    "rsrefseg-b": (SIGLIP, SAM_B),
    "rsrefseg-l": (SIGLIP, SAM_L),
}
#: SAM image encoders by (hidden_size, num_hidden_layers), for messages.
_SAM_SIZES = {(768, 12): "ViT-B", (1024, 24): "ViT-L", (1280, 32): "ViT-H"}


@dataclass(frozen=True)
class Candidate:
    """One place a part is looked for.

    Attributes:
        source: where the folder was named: ``--pretrained siglip=DIR``, ``$DIFFRIS_SIGLIP``
            or ``cache``.
        path: the folder.
        given: named by the user (the option or the variable); its problems are errors, while
            a missing cache folder only means "not downloaded".
    """

    source: str
    path: Path
    given: bool


def candidates(part: Foundation, pretrained: Any = None) -> list[Candidate]:
    """The folders searched for ``part``, in order: the mapping, the variable, the cache.

    Args:
        part: SigLIP or a SAM size.
        pretrained: None, or a mapping ``{"siglip": dir, "sam": dir}`` (keys may be missing).
    """
    found: list[Candidate] = []
    if pretrained and pretrained.get(part.key):
        found.append(Candidate(part.option, Path(pretrained[part.key]).expanduser(), True))
    if env := os.environ.get(part.env):
        found.append(Candidate(f"${part.env}", Path(env).expanduser(), True))
    found.append(Candidate("cache", part.default_folder, False))
    return found


def _read_config(path: Path) -> tuple[dict[str, Any] | None, str]:
    """``path/config.json`` as a dict, or None and why not."""
    config = path / "config.json"
    if not config.is_file():
        return None, "no config.json"
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None, "config.json is not readable JSON"
    if not isinstance(data, dict):
        return None, "config.json is not a JSON object"
    return data, ""


def _config_of_type(
    path: Path, model_type: str, label: str
) -> tuple[dict[str, Any] | None, list[str]]:
    """``path/config.json`` if it describes a ``model_type`` model (else None), and the problems
    found (``""`` entries for none, as :func:`_lookup` takes them)."""
    config, why = _read_config(path)
    if config is None or config.get("model_type") == model_type:
        return config, [why]
    return None, [f"config.json describes a {config.get('model_type')!r} model, not {label}"]


def pickled_files(path: Path) -> list[str]:
    """Names of the pickled weight files directly in ``path`` (never opened)."""
    return sorted(p.name for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES and p.is_file())


def weights_problem(path: Path) -> str:
    """Why transformers would read no safetensors weights in ``path`` ("" when it would)."""
    if (path / SAFETENSORS).is_file():
        return ""
    index = path / SAFETENSORS_INDEX
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            shards = sorted(set(weight_map.values()))
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError):
            return f"{SAFETENSORS_INDEX} is not a readable index"
        if bad := [s for s in shards if not str(s).endswith(".safetensors")]:
            return f"{SAFETENSORS_INDEX} names non-safetensors shards ({', '.join(bad[:3])})"
        if absent := [s for s in shards if not (path / s).is_file()]:
            return f"{SAFETENSORS_INDEX} names missing shards ({', '.join(absent[:3])})"
        return ""
    if pickles := pickled_files(path):
        return f"only pickled weights ({', '.join(pickles)}), no {SAFETENSORS}"
    return f"no {SAFETENSORS}"


def _lookup(path: Path, problems: list[str]) -> WeightsLookup:
    return WeightsLookup(path=path, missing=(), problems=tuple(p for p in problems if p))


def inspect_siglip_folder(path: Path) -> WeightsLookup:
    """What the loader would refuse in a SigLIP folder (names and ``config.json`` only).

    It needs a ``config.json`` of ``model_type`` ``siglip`` whose text and vision widths match
    (RSRefSeg takes inner products of the two), ``model.safetensors`` (or a sharded index of
    safetensors), and the tokenizer: ``spiece.model`` (as the Hub has it) or ``tokenizer.json``.
    """
    path = Path(path)
    if not path.is_dir():
        return WeightsLookup(path=path, missing=())
    config, problems = _config_of_type(path, "siglip", "SigLIP")
    if config is not None:
        text = (config.get("text_config") or {}).get("hidden_size", 768)
        vision = (config.get("vision_config") or {}).get("hidden_size", 768)
        if text != vision:
            problems.append(
                f"its text width {text} differs from its vision width {vision} "
                "(RSRefSeg needs one joint width)"
            )
    problems.append(weights_problem(path))
    if not any((path / name).is_file() for name in ("spiece.model", "tokenizer.json")):
        problems.append("no tokenizer (spiece.model or tokenizer.json)")
    return _lookup(path, problems)


def sam_size(config: dict[str, Any]) -> tuple[int, int]:
    """A SAM config's image encoder (hidden_size, num_hidden_layers); transformers' defaults
    (ViT-B) where the config leaves them out."""
    vision = config.get("vision_config") or {}
    return int(vision.get("hidden_size", 768)), int(vision.get("num_hidden_layers", 12))


def describe_sam(size: tuple[int, int]) -> str:
    """``ViT-B`` etc., or the numbers of an unnamed size."""
    return _SAM_SIZES.get(size) or f"a ViT of width {size[0]} with {size[1]} layers"


def inspect_sam_folder(path: Path, part: Foundation | None = None) -> WeightsLookup:
    """What the loader would refuse in a SAM folder (names and ``config.json`` only).

    It needs a ``config.json`` of ``model_type`` ``sam`` and ``model.safetensors`` (or a sharded
    index of safetensors).

    Args:
        path: the folder.
        part: :data:`SAM_B` or :data:`SAM_L` to also require that image-encoder size; None
            accepts any (the tiny preset's saved copies).
    """
    path = Path(path)
    if not path.is_dir():
        return WeightsLookup(path=path, missing=())
    config, problems = _config_of_type(path, "sam", "SAM")
    needed_size = part.vit if part is not None else None
    if config is not None and needed_size is not None and sam_size(config) != needed_size:
        held, needed = describe_sam(sam_size(config)), describe_sam(needed_size)
        problems.append(f"it holds SAM {held}, not the {needed} needed here")
    problems.append(weights_problem(path))
    return _lookup(path, problems)


def inspect_folder(part: Foundation, path: Path) -> WeightsLookup:
    """:func:`inspect_siglip_folder` or :func:`inspect_sam_folder` (with its size) for ``part``."""
    return inspect_siglip_folder(path) if part.vit is None else inspect_sam_folder(path, part)
