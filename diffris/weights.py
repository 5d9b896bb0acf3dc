"""Fetch backbone weights from the Hugging Face Hub, only when asked (``diffris weights``).

Stable Diffusion 1.5 for DiffRIS; SigLIP so400m-patch14-384 and SAM ViT-B/ViT-L for RSRefSeg
(:func:`download_foundation`, into the folders :mod:`diffris.models.rsrefseg.lookup` searches).

Nothing else in diffris downloads. The files come through huggingface_hub's own cache (so a copy
already downloaded by diffusers or ``hf download`` is reused, an interrupted download resumes, and
``HF_HUB_OFFLINE=1`` works from that cache), and only the files DiffRIS loads are fetched: each
part's ``config.json`` and safetensors weights, and the tokenizer. Never ``.bin``/``.ckpt``
pickles, nor the EMA or full single-file checkpoints. The folder is then put together, in the
diffusers layout, where diffris looks by default (:func:`default_sd15_folder`), hard-linked to the
cache's files where the file system allows it (no second copy on disk), else copied.
"""

from __future__ import annotations

import enum
import logging
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from diffris.errors import InputError, OutputExistsError, WeightsNotFoundError
from diffris.models.rsrefseg.lookup import (
    FOUNDATIONS,
    SAFETENSORS,
    SAFETENSORS_INDEX,
    inspect_folder,
)
from diffris.paths import (
    SD15_REPO_ID,
    SD_WEIGHT_STEMS,
    WeightsLookup,
    default_sd15_folder,
    inspect_sd_folder,
)

logger = logging.getLogger(__name__)

#: Tokenizer and model-index files (small JSON and text).
_SMALL_FILES = ("model_index.json", "tokenizer/*.json", "tokenizer/*.txt")


class Variant(enum.Enum):
    """Which copy of the weights to fetch: float32 (``fp32``, ~4.2 GB) or half (``fp16``, ~2.1
    GB; diffris loads both as float32, and a trained model accepts either backbone)."""

    FP32 = "fp32"
    FP16 = "fp16"


def allow_patterns(variant: Variant = Variant.FP32) -> list[str]:
    """The repository paths fetched: configs, safetensors weights, tokenizer; nothing else."""
    infix = "" if variant is Variant.FP32 else f".{variant.value}"
    patterns = list(_SMALL_FILES)
    for sub, stem in SD_WEIGHT_STEMS.items():
        patterns += [f"{sub}/config.json", f"{sub}/{stem}{infix}.safetensors"]
    return patterns


@dataclass(frozen=True)
class Downloaded:
    """Where the weights went.

    Attributes:
        folder: the diffusers-layout folder diffris loads.
        repo_id: the Hub repository.
        commit: the commit the files come from.
        default: whether ``folder`` is where diffris looks without ``--pretrained``.
        already: the folder was already complete; nothing was fetched or written.
    """

    folder: Path
    repo_id: str
    commit: str
    default: bool
    already: bool = False


def download_sd15(
    *,
    repo_id: str = SD15_REPO_ID,
    revision: str | None = None,
    variant: Variant = Variant.FP32,
    output: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
) -> Downloaded:
    """Fetch Stable Diffusion 1.5 (VAE, UNet, CLIP text encoder, tokenizer) into a local folder.

    Args:
        repo_id: a Hub repository in the diffusers layout.
        revision: a branch, tag or commit; None for the default branch.
        variant: float32 or float16 weights.
        output: the folder to write; None for :func:`~diffris.paths.default_sd15_folder`,
            where ``segment``, ``train`` and ``info`` look without ``--pretrained``.
        overwrite: replace an existing folder (it is swapped out only once the new one is
            complete).

    Returns:
        Where the folder is and which commit it holds.

    Raises:
        OutputExistsError: ``output`` exists, is not a complete copy, and ``overwrite`` is off.
        WeightsNotFoundError: the Hub cannot be reached (or ``HF_HUB_OFFLINE=1``) and the files
            are not in the Hugging Face cache; the repository or revision does not exist; or
            it lacks the safetensors files.
    """
    folder = Path(output).expanduser() if output is not None else default_sd15_folder()
    default = output is None
    if folder.exists() and not overwrite:
        if inspect_sd_folder(folder).found:
            logger.info("%s is already a complete Stable Diffusion folder", folder)
            return Downloaded(folder, repo_id, "", default, already=True)
        raise OutputExistsError(f"{folder} exists; pass --overwrite to replace it")
    if folder.exists() and not folder.is_dir():
        raise OutputExistsError(f"{folder} is a file; choose another folder with --output")
    patterns = allow_patterns(variant)
    snapshot = _snapshot(repo_id, revision, patterns, SD15_REPO_ID)
    commit = snapshot.name
    hint = "" if variant is Variant.FP32 else f" (no {variant.value} variant? try fp32)"
    _assemble(snapshot, folder, patterns, inspect_sd_folder, f"{repo_id}", hint)
    logger.info("Stable Diffusion 1.5 from %s@%s in %s", repo_id, commit, folder)
    return Downloaded(folder, repo_id, commit, default)


def foundation_patterns(name: str) -> list[str]:
    """The repository paths fetched for an RSRefSeg part: its config and safetensors weights
    (plain or sharded), SigLIP's tokenizer files; never ``pytorch_model.bin`` or other pickles.
    """
    part = FOUNDATIONS[name]
    patterns = ["config.json", SAFETENSORS, SAFETENSORS_INDEX, "model-*-of-*.safetensors"]
    if part.vit is None:
        patterns += ["spiece.model", "tokenizer.json", "tokenizer_config.json"]
        patterns += ["special_tokens_map.json"]
    return patterns


def download_foundation(
    name: str,
    *,
    repo_id: str | None = None,
    revision: str | None = None,
    output: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
) -> Downloaded:
    """Fetch SigLIP (``siglip``) or SAM (``sam-b``, ``sam-l``) into a local folder for RSRefSeg.

    Args:
        name: ``siglip``, ``sam-b`` or ``sam-l``.
        repo_id: a Hub repository in the transformers layout; None for the part's own
            (``google/siglip-so400m-patch14-384``, ``facebook/sam-vit-base``,
            ``facebook/sam-vit-large``).
        revision: a branch, tag or commit; None for the default branch.
        output: the folder to write; None for the cache folder ``resolve_folders`` searches
            (``<home>/siglip-so400m-patch14-384``, ``<home>/sam-vit-base``, ...).
        overwrite: replace an existing folder (swapped out only once the new one is complete).

    Returns:
        Where the folder is and which commit it holds.

    Raises:
        InputError: an unknown name.
        OutputExistsError: ``output`` exists, is not a usable copy, and ``overwrite`` is off.
        WeightsNotFoundError: the Hub is not reachable and the files are not cached; the
            repository does not exist; or it lacks what diffris loads (for SAM: of that size).
    """
    if name not in FOUNDATIONS:
        raise InputError(f"unknown RSRefSeg part {name!r}; choose one of: {', '.join(FOUNDATIONS)}")
    part = FOUNDATIONS[name]
    repo_id = repo_id or part.repo_id
    folder = Path(output).expanduser() if output is not None else part.default_folder
    default = output is None

    def inspect(path: Path) -> WeightsLookup:
        return inspect_folder(part, path)

    if folder.exists() and not overwrite:
        if inspect(folder).found:
            logger.info("%s is already a usable %s folder", folder, part.title)
            return Downloaded(folder, repo_id, "", default, already=True)
        raise OutputExistsError(f"{folder} exists; pass --overwrite to replace it")
    if folder.exists() and not folder.is_dir():
        raise OutputExistsError(f"{folder} is a file; choose another folder with --output")
    patterns = foundation_patterns(name)
    snapshot = _snapshot(repo_id, revision, patterns, part.repo_id)
    _assemble(snapshot, folder, patterns, inspect, repo_id, "")
    logger.info("%s from %s@%s in %s", part.title, repo_id, snapshot.name, folder)
    return Downloaded(folder, repo_id, snapshot.name, default)


def _snapshot(repo_id: str, revision: str | None, patterns: list[str], default_repo: str) -> Path:
    """The cached snapshot folder of ``repo_id`` with the ``patterns`` files (fetched if needed)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = f"{repo_id}" + (f"@{revision}" if revision else "")
    try:
        return Path(snapshot_download(repo_id, revision=revision, allow_patterns=patterns))
    except LocalEntryNotFoundError as err:
        raise WeightsNotFoundError(
            f"cannot fetch {where}: the Hugging Face Hub is not reachable (or HF_HUB_OFFLINE=1) "
            "and the files are not in the Hugging Face cache; connect to the network and run "
            "it again, or pass --pretrained DIR with a local copy"
        ) from err
    except (RepositoryNotFoundError, GatedRepoError, RevisionNotFoundError) as err:
        what = "revision" if isinstance(err, RevisionNotFoundError) else "repository"
        raise WeightsNotFoundError(
            f"cannot fetch {where}: the {what} was not found on the Hugging Face Hub (or needs "
            f"a login: hf auth login); check --repo-id/--revision (default {default_repo})"
        ) from err
    except (HfHubHTTPError, OSError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise WeightsNotFoundError(f"cannot fetch {where}: {reason}") from err


def _assemble(
    snapshot: Path,
    folder: Path,
    patterns: list[str],
    inspect: Callable[[Path], WeightsLookup],
    repo_id: str,
    hint: str,
) -> None:
    """Build ``folder`` from the snapshot's files matching ``patterns``, check it with
    ``inspect`` (``hint`` follows a refusal), then rename it in place."""
    from huggingface_hub.utils import filter_repo_objects

    names = [p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*") if p.is_file()]
    wanted = list(filter_repo_objects(names, allow_patterns=patterns))
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = folder.parent / f".{folder.name}.partial-{uuid.uuid4().hex[:8]}"
    try:
        for name in wanted:
            target = staging / name
            target.parent.mkdir(parents=True, exist_ok=True)
            source = (snapshot / name).resolve()  # the cache's blob, not its symlink
            try:
                os.link(source, target)
            except OSError:
                shutil.copyfile(source, target)
        lookup = inspect(staging)
        if not lookup.found:
            raise WeightsNotFoundError(
                f"{repo_id} does not hold what diffris loads: {lookup.reason()}{hint}"
            )
        if folder.exists():
            old = folder.parent / f".{folder.name}.old-{uuid.uuid4().hex[:8]}"
            folder.rename(old)
            staging.rename(folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            staging.rename(folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
