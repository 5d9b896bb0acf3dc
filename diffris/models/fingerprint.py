"""The identity of frozen backbone weights: a hash of every tensor, cached by weight file.

A trained model records the fingerprint of the backbone it was trained on and only loads onto
the same one (:func:`diffris.models.checkpoint.load_trained`). Scheme 2 (this diffris) hashes the
name, shape and values of **every** parameter and buffer; scheme 1 (diffris up to 0.x's first
releases) hashed names and shapes of all but the values of only three tensors per module, so a
UNet with every attention weight scaled, or a merged LoRA, passed it. Values are rounded to
float16 before hashing, so a float32 copy and a float16 (``fp16`` variant) copy of the same
weights share an identity; a change of a weight by more than float16's resolution changes it.

Hashing all of Stable Diffusion 1.5 (≈ 1.07 B values) takes seconds, so a loaded folder's
per-module digests are cached in ``<diffris home>/fingerprints.json``, keyed by every file of the
sub-folder (real path, size, mtime, ctime, inode) and the library versions; any change to a file
is a miss. In-memory weights (the ``tiny`` preset) are always hashed directly.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from diffris.errors import CheckpointMismatchError
from diffris.paths import diffris_home

logger = logging.getLogger(__name__)

#: The fingerprint scheme this diffris writes (1: three tensors per module; 2: every tensor).
FINGERPRINT_SCHEME = 2
#: The scheme a config without a ``fingerprint_scheme`` field was written with.
LEGACY_SCHEME = 1
#: Name of the digest cache inside :func:`diffris.paths.diffris_home`.
CACHE_NAME = "fingerprints.json"
#: The cache keeps at most this many entries (the most recent); it stays a small file.
MAX_CACHE_ENTRIES = 64


def fingerprint(digests: Sequence[str], extra: Sequence[str] = ()) -> str:
    """Scheme-2 fingerprint of a backbone from its modules' digests (:func:`module_digest`).

    Args:
        digests: one per frozen module, in a fixed order (VAE, UNet, text model).
        extra: further strings to fold in (e.g. the tokenizer's vocabulary size).

    Returns:
        16 hex digits of a SHA-256.
    """
    digest = hashlib.sha256(f"scheme{FINGERPRINT_SCHEME};".encode())
    for text in extra:
        digest.update(f"{text};".encode())
    for item in digests:
        digest.update(f"{item};".encode())
    return digest.hexdigest()[:16]


@torch.no_grad()
def check_fingerprint(
    source: Path,
    *,
    preset: str,
    expected: str,
    found: str,
    scheme: int,
    strict: bool = True,
    hint: str = "other weights",
) -> None:
    """Refuse (or, when not ``strict``, warn about) a backbone other than the trained one.

    Args:
        source: the trained-model folder, for messages.
        preset: the backbone's preset name.
        expected: the fingerprint the folder records.
        found: the loaded backbone's fingerprint, computed with the recorded ``scheme``.
        scheme: the recorded fingerprint scheme.
        strict: raise on a mismatch (False: log a warning and go on).
        hint: what a mismatch usually means, for the message.

    Raises:
        CheckpointMismatchError: a newer scheme than this diffris knows, or (``strict``) a
            different fingerprint.
    """
    if scheme > FINGERPRINT_SCHEME:
        raise CheckpointMismatchError(
            f"{source} records a backbone fingerprint of scheme {scheme}; this diffris knows "
            f"schemes up to {FINGERPRINT_SCHEME}: upgrade diffris"
        )
    if expected != found:
        message = (
            f"{source} was trained on the {preset} backbone with fingerprint {expected}, but "
            f"the loaded backbone has {found} ({hint})"
        )
        if strict:
            raise CheckpointMismatchError(message + "; load the backbone it was trained on")
        logger.warning("%s; loading anyway (check_backbone=False)", message)
    elif scheme == LEGACY_SCHEME:
        logger.warning(
            "%s was saved by an older diffris, whose backbone fingerprint covers only a few "
            "tensors: the backbone was checked only that far; save the model again "
            "(save_trained(load_trained(folder), new_folder)) to record the full fingerprint",
            source,
        )


def module_digest(module: nn.Module) -> str:
    """SHA-256 of every parameter and buffer of ``module``: names, shapes, dtypes, values.

    Floating tensors are hashed as float16 (so float32 and float16 copies agree); other tensors
    as they are. One tensor at a time is converted, so memory stays at the largest tensor.
    """
    digest = hashlib.sha256()
    tensors = [*module.named_parameters(), *module.named_buffers()]
    for name, tensor in tensors:
        values = tensor.detach().to("cpu")
        kind = "float" if values.is_floating_point() else str(values.dtype)
        digest.update(f"{name}:{tuple(values.shape)}:{kind};".encode())
        if values.is_floating_point():
            values = values.to(torch.float16).view(torch.int16)
        digest.update(memoryview(values.contiguous().numpy()).cast("B"))
    return digest.hexdigest()


def legacy_fingerprint(modules: Sequence[nn.Module], extra: Sequence[str] = ()) -> str:
    """Scheme-1 fingerprint (older diffris): names and shapes of all, values of three tensors.

    Kept only to check trained models whose config records a scheme-1 fingerprint.
    """
    digest = hashlib.sha256()
    for text in extra:
        digest.update(text.encode())
    for module in modules:
        params = list(module.named_parameters())
        for name, param in params:
            digest.update(f"{name}:{tuple(param.shape)};".encode())
        for index in sorted({0, len(params) // 2, len(params) - 1}):
            values = params[index][1].detach().to("cpu", torch.float16).contiguous()
            digest.update(values.view(torch.int16).numpy().tobytes())
    return digest.hexdigest()[:16]


def cached_module_digest(module: nn.Module, folder: Path | None) -> str:
    """:func:`module_digest` of ``module``, loaded from ``folder``: from the cache when no file
    of ``folder`` changed since it was hashed; computed (and cached) otherwise.

    Args:
        module: the module as loaded from ``folder``.
        folder: the sub-folder it was loaded from (``unet/``...); None hashes without a cache.
    """
    if folder is None:
        return module_digest(module)
    key = _cache_key(folder)
    cache_file = diffris_home() / CACHE_NAME
    entries = _read_cache(cache_file)
    if key is not None and isinstance(entries.get(key), str):
        logger.debug("fingerprint of %s from the cache %s", folder, cache_file)
        return str(entries[key])
    value = module_digest(module)
    if key is not None:
        entries.pop(key, None)
        entries[key] = value
        _write_cache(cache_file, dict(list(entries.items())[-MAX_CACHE_ENTRIES:]))
    return value


def _cache_key(folder: Path) -> str | None:
    """What the digest of a module loaded from ``folder`` depends on, as one string."""
    try:
        files = sorted(path for path in Path(folder).iterdir() if path.is_file())
        stats = [
            (os.path.realpath(path), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
            for path in files
            for st in [path.stat()]
        ]
    except OSError:
        return None
    versions = [torch.__version__]
    for package in ("diffusers", "transformers"):
        try:
            versions.append(importlib.metadata.version(package))
        except importlib.metadata.PackageNotFoundError:
            versions.append("-")
    raw = json.dumps([FINGERPRINT_SCHEME, os.path.realpath(folder), versions, stats])
    return hashlib.sha256(raw.encode()).hexdigest()


def _read_cache(path: Path) -> dict[str, object]:
    """The cache's entries; an unreadable or malformed cache is an empty one (it is only speed)."""
    try:
        with path.open(encoding="utf-8") as stream:
            raw = json.loads(stream.read(1 << 20))
    except (OSError, ValueError) as err:
        if not isinstance(err, FileNotFoundError):
            logger.debug("ignoring the fingerprint cache %s: %s", path, err)
        return {}
    return raw if isinstance(raw, dict) else {}


def _write_cache(path: Path, entries: dict[str, object]) -> None:
    """Replace the cache atomically (a temporary file renamed over it); failures only log."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as stream:
                json.dump(entries, stream)
            os.replace(temporary, path)
        except BaseException:
            os.unlink(temporary)
            raise
    except OSError as err:
        logger.debug("could not write the fingerprint cache %s: %s", path, err)
