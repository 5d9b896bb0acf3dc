"""RSRefSeg's frozen foundations from local Hugging Face folders: find, load, save.

A SigLIP folder (``transformers.SiglipModel`` + its tokenizer) and a SAM folder
(``transformers.SamModel``, ViT-B for ``rsrefseg-b``, ViT-L for ``rsrefseg-l``), each in the
layout ``save_pretrained`` writes. They are named by the ``pretrained`` mapping (the CLI's
``--pretrained siglip=DIR``/``sam=DIR``), then ``$DIFFRIS_SIGLIP``/``$DIFFRIS_SAM``, then found in
diffris' cache, where ``diffris weights download siglip|sam-b|sam-l`` puts them. Nothing is
downloaded here, and only safetensors are read: a folder of pickles is refused before
transformers sees it, so nothing is ever unpickled.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from diffris.errors import CheckpointMismatchError, InputError, WeightsNotFoundError
from diffris.models.rsrefseg.components import RSRefSegComponents
from diffris.models.rsrefseg.lookup import (
    PRESET_FOUNDATIONS,
    SAM_B,
    SAM_L,
    SIGLIP,
    Foundation,
    candidates,
    inspect_folder,
    inspect_sam_folder,
    inspect_siglip_folder,
)
from diffris.paths import WeightsLookup

if TYPE_CHECKING:
    from os import PathLike

__all__ = [
    "inspect_sam_folder",
    "inspect_siglip_folder",
    "load_components",
    "resolve_folders",
    "save_components",
]

#: Keys the ``pretrained`` mapping may have.
PRETRAINED_KEYS = ("siglip", "sam")


def _fix(part: Foundation) -> str:
    return (
        f"run '{part.download_command}' to fetch {part.repo_id} (safetensors only) into "
        f"{part.default_folder}, or pass {part.option} or set {part.env} to a Hugging Face "
        f"folder of {part.title} with config.json and model.safetensors"
    )


def _unusable(part: Foundation, path: Path, source: str, lookup: WeightsLookup) -> str:
    """The one line refusing a folder the user named (or a cache folder that is broken)."""
    reason = lookup.reason()
    fix = _never(reason) + _fix(part)
    return f"{part.title} folder {path} ({source}) cannot be used: {reason}; {fix}"


def _never(reason: str) -> str:
    """The note on pickles, where the reason is one."""
    if "pickled" not in reason:
        return ""
    return (
        "diffris never unpickles weights (convert a copy you trust with "
        "save_pretrained(safe_serialization=True)), or "
    )


def _resolve_part(part: Foundation, preset: str, pretrained: Mapping[str, Any] | None) -> Path:
    searched = []
    for candidate in candidates(part, pretrained):
        lookup = inspect_folder(part, candidate.path)
        if lookup.found:
            return candidate.path
        # a folder the user named, or one that exists in the cache, decides: its problem is
        # the error (a fall-back would hide it); only an absent cache folder means "not found"
        if candidate.given or candidate.path.exists():
            raise WeightsNotFoundError(_unusable(part, candidate.path, candidate.source, lookup))
        searched.append(f"{candidate.path} (no such folder)")
    not_given = f"{part.option} not given, ${part.env} not set"
    raise WeightsNotFoundError(
        f"{part.title} weights for {preset} not found (searched: {not_given}, "
        f"{', '.join(searched)}); {_fix(part)}"
    )


def resolve_folders(pretrained: Mapping[str, Any] | None, preset: str) -> tuple[Path, Path]:
    """The SigLIP and SAM folders a preset loads, found on this machine (never downloaded).

    Each part is looked for in the ``pretrained`` mapping, then ``$DIFFRIS_SIGLIP`` /
    ``$DIFFRIS_SAM``, then diffris' cache (``<home>/siglip-so400m-patch14-384``,
    ``<home>/sam-vit-base`` or ``<home>/sam-vit-large``). The first folder named (or present)
    must be usable: a SigLIP/SAM ``config.json``, safetensors weights, for SAM the ViT size of
    the preset, for SigLIP its tokenizer.

    Args:
        pretrained: None, or ``{"siglip": dir, "sam": dir}``; either key may be missing.
        preset: ``rsrefseg-b`` (SAM ViT-B) or ``rsrefseg-l`` (SAM ViT-L).

    Returns:
        (SigLIP folder, SAM folder).

    Raises:
        InputError: an unknown preset or mapping key.
        WeightsNotFoundError: a part is not found, or its folder cannot be used; one line
            naming what was searched and the fix.
    """
    if preset not in PRESET_FOUNDATIONS:
        raise InputError(
            f"no SigLIP/SAM folders for preset {preset!r}; choose one of: "
            f"{', '.join(PRESET_FOUNDATIONS)}"
        )
    if pretrained is not None and not isinstance(pretrained, Mapping):
        raise InputError(
            f"pretrained folders for {preset} must be a mapping like "
            f"{{'siglip': DIR, 'sam': DIR}}, not {type(pretrained).__name__}"
        )
    if unknown := sorted(set(pretrained or {}) - set(PRETRAINED_KEYS)):
        raise InputError(
            f"unknown pretrained part(s) for {preset}: {', '.join(map(str, unknown))}; "
            f"valid: {', '.join(PRETRAINED_KEYS)} (e.g. --pretrained sam=DIR)"
        )
    siglip, sam = PRESET_FOUNDATIONS[preset]
    return _resolve_part(siglip, preset, pretrained), _resolve_part(sam, preset, pretrained)


def _check_folder(lookup: WeightsLookup, title: str, names: str) -> None:
    if not lookup.found:
        reason = lookup.reason()
        raise WeightsNotFoundError(
            f"{title} folder {lookup.path} cannot be used: {reason}; {_never(reason)}pass a "
            f"Hugging Face folder with config.json and model.safetensors (e.g. fetched with "
            f"'diffris weights download {names}')"
        )


@contextlib.contextmanager
def _load_errors(title: str, folder: Path) -> Iterator[None]:
    """What transformers raises on a broken folder (shapes against the config, a corrupt
    safetensors header, a config of wrong types) as one line."""
    from safetensors import SafetensorError

    try:
        yield
    except (OSError, RuntimeError, ValueError, TypeError, KeyError, SafetensorError) as err:
        if isinstance(err, WeightsNotFoundError | CheckpointMismatchError):
            raise
        text = str(err).strip()
        first = text.splitlines()[0].replace(str(folder), "the folder") if text else ""
        reason = (first[:120] + "...") if len(first) > 120 else (first or type(err).__name__)
        raise WeightsNotFoundError(
            f"could not load {title} from {folder}: {reason}; check that it is a complete "
            "Hugging Face folder (config.json, model.safetensors) of one model"
        ) from err


def _check_loading_info(title: str, folder: Path, info: dict[str, Any]) -> None:
    """Refuse weights that leave tensors missing or mis-shaped (transformers would fill them
    with random values and only log it)."""
    missing = sorted(info.get("missing_keys") or ())
    mismatched = [str(item[0]) for item in info.get("mismatched_keys") or ()]
    if problems := [f"missing {n}" for n in missing] + [
        f"{n} of another shape" for n in mismatched
    ]:
        more = f" and {len(problems) - 3} more" if len(problems) > 3 else ""
        raise WeightsNotFoundError(
            f"the weights in {folder} do not cover the {title} model its config.json describes: "
            f"{', '.join(problems[:3])}{more}; use the weights and config of one complete copy"
        )


def _frozen(model: Any) -> Any:
    from diffris.models.torch_memory import into_torch_memory

    into_torch_memory(model)
    model.requires_grad_(False)
    return model.eval()


def load_components(
    siglip_folder: str | PathLike[str], sam_folder: str | PathLike[str]
) -> RSRefSegComponents:
    """SigLIP (both towers), its tokenizer and SAM from local folders, frozen, float32.

    The folders are checked first (:func:`inspect_siglip_folder`, :func:`inspect_sam_folder`):
    one with only pickled weights is refused before anything is opened. Every tensor is then
    copied into memory PyTorch owns (the safetensors file is no longer mapped), and each model
    is in eval mode with ``requires_grad`` off. transformers' progress bars and log lines are
    kept quiet; diffris checks the loading report itself.

    Args:
        siglip_folder: a SigLIP folder in the Hugging Face layout, tokenizer included.
        sam_folder: a SAM folder in the Hugging Face layout (any size).

    Raises:
        WeightsNotFoundError: a folder lacks its config, safetensors weights or tokenizer,
            holds only pickles, or its weights do not fit its config.
        CheckpointMismatchError: the tokenizer has more tokens than the text tower.
    """
    import torch
    from transformers import AutoTokenizer, SamModel, SiglipModel

    from diffris.models.load_report import quiet_hub_libraries

    siglip_folder, sam_folder = Path(siglip_folder), Path(sam_folder)
    _check_folder(inspect_siglip_folder(siglip_folder), "SigLIP", SIGLIP.name)
    _check_folder(inspect_sam_folder(sam_folder), "SAM", f"{SAM_B.name}|{SAM_L.name}")
    options: dict[str, Any] = {
        "use_safetensors": True,
        # the low-memory path is the one that needs accelerate (and says so); this is plain
        "low_cpu_mem_usage": False,
        "local_files_only": True,
        "output_loading_info": True,
        # shapes that contradict the config come back in the loading report, which names them
        # (and is refused below), instead of an error pointing at a log line
        "ignore_mismatched_sizes": True,
        "dtype": torch.float32,
    }
    with quiet_hub_libraries():
        with _load_errors("SigLIP", siglip_folder):
            siglip, info = SiglipModel.from_pretrained(siglip_folder, **options)
        _check_loading_info("SigLIP", siglip_folder, info)
        with _load_errors("SigLIP's tokenizer", siglip_folder):
            tokenizer = _load_tokenizer(AutoTokenizer, siglip_folder)
        with _load_errors("SAM", sam_folder):
            sam, info = SamModel.from_pretrained(sam_folder, **options)
        _check_loading_info("SAM", sam_folder, info)
    vocab = int(siglip.config.text_config.vocab_size)
    if len(tokenizer) > vocab:
        raise CheckpointMismatchError(
            f"the tokenizer and the text tower of {siglip_folder} do not fit: the tokenizer has "
            f"{len(tokenizer)} tokens but config.json has vocab_size {vocab}; use the tokenizer "
            "the text tower was trained with"
        )
    return RSRefSegComponents(
        siglip=_frozen(siglip),
        tokenizer=tokenizer,
        sam=_frozen(sam),
        siglip_folder=siglip_folder,
        sam_folder=sam_folder,
    )


def _load_tokenizer(auto: Any, folder: Path) -> Any:
    """SigLIP's tokenizer; the Hub's copy is a SentencePiece model, read by ``sentencepiece``."""
    try:
        return auto.from_pretrained(folder, local_files_only=True)
    except ImportError as err:
        raise WeightsNotFoundError(
            f"reading SigLIP's tokenizer in {folder} needs a library that is missing ({err}); "
            "install it: pip install sentencepiece"
        ) from err


def save_components(
    components: RSRefSegComponents,
    siglip_folder: str | PathLike[str],
    sam_folder: str | PathLike[str],
) -> tuple[Path, Path]:
    """Write SigLIP with its tokenizer and SAM as two Hugging Face folders, safetensors only.

    What :func:`load_components` (and the presets, through :func:`resolve_folders`) read back.

    Args:
        components: the parts, e.g. built from small configs for a test.
        siglip_folder: created if needed; receives the SigLIP model and the tokenizer.
        sam_folder: created if needed; receives the SAM model.

    Returns:
        The two folders as paths.
    """
    from diffris.models.load_report import quiet_hub_libraries

    siglip_folder, sam_folder = Path(siglip_folder), Path(sam_folder)
    with quiet_hub_libraries():
        components.siglip.save_pretrained(siglip_folder, safe_serialization=True)
        components.tokenizer.save_pretrained(siglip_folder)
        components.sam.save_pretrained(sam_folder, safe_serialization=True)
    return siglip_folder, sam_folder
