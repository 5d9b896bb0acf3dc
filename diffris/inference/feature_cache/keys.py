"""What a cached tile's image features are keyed by, so that a hit is never another input's.

An entry holds one scene's features for one tile grid and one image encoder. Its name is a hash
of three parts:

- the scene: its name (absolute for local files), size and modification time (as the archive
  identifies inputs, :func:`diffris.archive.inputs.identify`), the bands, nodata and resolved
  8-bit stretch that turn it into RGB;
- the grid: tile size (the model's input size), overlap, the scene's width and height;
- the model: the frozen backbone's preset and fingerprint (``config.backbone``), and, where the
  image features have trainable parts (RSRefSeg's LoRA on its encoders), a digest of the
  trained weights; the autocast precision, the device type and the cache's dtype.

Each tile's marker also records a digest of the exact uint8 model input and of the stored
features, checked on every read: a changed scene that kept its size and mtime, a remote scene
(which cannot be stat-ed) or a torn chunk is a miss, never a wrong answer.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from diffris.geo.names import local_path, name_stem

if TYPE_CHECKING:
    import numpy as np

    from diffris.geo.grid import Grid
    from diffris.geo.scene import Scene
    from diffris.models.interface import ReferringModel

#: Bumped when the layout of an entry or what its key covers changes; older entries then miss.
KEY_VERSION = 1

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class EntryKey:
    """The identity of one cache entry: a readable name and the fields it hashes.

    Attributes:
        name: ``<scene stem>-<24 hex digits>``, the entry's folder name.
        fields: what was hashed, written into the entry for whoever inspects the cache.
    """

    name: str
    fields: dict[str, Any]


def model_key(
    model: ReferringModel, *, precision: str, device_type: str, dtype: str
) -> dict[str, Any]:
    """The part of a key that names the image encoder and how its output is kept.

    Args:
        model: the model whose ``encode_image`` fills the cache.
        precision: autocast precision (``fp32``, ``bf16``, ``fp16``).
        device_type: ``cpu``, ``cuda``, ``mps``: kernels differ in their last bits.
        dtype: the cache's stored dtype (``float16``, ``float32``).
    """
    backbone = model.config.backbone
    fields: dict[str, Any] = {
        "architecture": model.architecture,
        "backbone": backbone.preset,
        "fingerprint": backbone.fingerprint,
        "precision": precision,
        "device": device_type,
        "dtype": dtype,
    }
    if not model.image_features_frozen:
        fields["trained_image_weights"] = trainable_digest(model)
    return fields


def trainable_digest(model: ReferringModel) -> str:
    """BLAKE2b (hex) of every trainable tensor's name, shape, dtype and bytes.

    Over-covers (the text side's weights too): two models that share an image encoder but differ
    elsewhere miss each other's entries, which costs time, never correctness.
    """
    import torch

    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in sorted(model.trainable_state_dict().items()):
        value = tensor.detach().to("cpu")
        digest.update(f"{name};{tuple(value.shape)};{value.dtype};".encode())
        # flat C-order bytes whatever the layout (channels_last weights on a CPU)
        flat = value.clone(memory_format=torch.contiguous_format).reshape(-1)
        digest.update(flat.view(torch.uint8).numpy().tobytes() if value.numel() else b"")
    return digest.hexdigest()


def scene_key(scene: Scene, grid: Grid) -> dict[str, Any]:
    """The part of a key that names the scene, how it becomes RGB, and its tile grid."""
    source = local_path(scene.path)
    fields: dict[str, Any] = {"path": scene.path, "size": None, "mtime_ns": None}
    if source is not None:
        fields["path"] = scene.path.replace(source, os.path.realpath(source), 1)
        try:
            info = os.stat(source)
            fields["size"], fields["mtime_ns"] = info.st_size, info.st_mtime_ns
        except OSError:
            pass  # GDAL opened it; the per-tile pixel digest still guards every hit
    stretch = scene.stretch
    fields.update(
        bands=list(scene.band_indexes),
        nodata=scene.nodata,
        stretch=[stretch.method.value, list(stretch.low), list(stretch.high)],
        tile=grid.tile,
        overlap=grid.overlap,
        width=grid.width,
        height=grid.height,
    )
    return fields


def entry_key(scene: Scene, grid: Grid, model_fields: dict[str, Any]) -> EntryKey:
    """The entry of ``scene`` on ``grid`` for the model described by ``model_fields``."""
    fields = {"version": KEY_VERSION, "scene": scene_key(scene, grid), "model": model_fields}
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(text.encode()).hexdigest()[:24]
    stem = _UNSAFE.sub("_", name_stem(scene.path))[:48] or "scene"
    return EntryKey(f"{stem}-{digest}", fields)


def pixel_digest(frame: np.ndarray) -> str:
    """BLAKE2b (hex) of one tile's model input: (3, T, T) uint8, its shape included."""
    import numpy as np

    digest = hashlib.blake2b(f"{frame.shape};{frame.dtype};".encode(), digest_size=16)
    digest.update(np.ascontiguousarray(frame).data)
    return digest.hexdigest()


def array_digest(array: np.ndarray) -> str:
    """BLAKE2b (hex) of a stored feature array's bytes, to tell a whole chunk from a torn one."""
    import numpy as np

    return hashlib.blake2b(np.ascontiguousarray(array).data, digest_size=16).hexdigest()
