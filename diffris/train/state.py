"""The resumable training state: safetensors for tensors, JSON for the rest, never a pickle.

A state is two files in ``<run>/state/``:

- ``tensors-<step>.safetensors``: the trainable weights (``model/...``), the optimiser's
  per-parameter tensors (``optimizer/<index>/<key>``), and every rank's RNG states as uint8
  tensors (``rng/<rank>/cpu``, ``rng/<rank>/cuda``, ``rng/<rank>/numpy``);
- ``state.json``: epoch, step, sampler position, best score, the optimiser's plain values and
  param groups, scaler and schedule, Python's RNG, and the name and SHA-256 of the tensor file.

Writing is crash-safe: the tensor file is written under a new name and fsynced, then
``state.json`` is replaced atomically (write a temporary file, fsync, ``os.replace``), and only
then are older tensor files removed. A kill at any moment leaves the previous state.json pointing
at its own, complete tensor file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from diffris.errors import CheckpointMismatchError, InputNotFoundError
from diffris.tensor_files import save_tensors

logger = logging.getLogger(__name__)

STATE_DIR = "state"
POINTER_NAME = "state.json"
STATE_FORMAT = 1
_HASH_CHUNK = 1 << 20


# -- atomic files --------------------------------------------------------------------------------


def _fsync_dir(folder: Path) -> None:
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a reader sees the old or the new file, never a part."""
    temporary = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        with temporary.open("wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# -- optimiser state without pickle ----------------------------------------------------------------


def flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into tensors and JSON-able values.

    Returns:
        ``<param index>/<key>`` -> tensor, and ``{"state": {index: {key: value}},
        "param_groups": [...], "tuples": [keys of param-group values that were tuples]}``.
    """
    tensors: dict[str, Tensor] = {}
    plain: dict[str, dict[str, Any]] = {}
    for index, values in state["state"].items():
        for key, value in values.items():
            if isinstance(value, Tensor):
                tensors[f"{index}/{key}"] = value.detach().cpu().contiguous()
            else:
                plain.setdefault(str(index), {})[key] = value
    groups = []
    tuples: set[str] = set()
    for group in state["param_groups"]:
        entry = {}
        for key, value in group.items():
            if isinstance(value, tuple):
                tuples.add(key)
                value = list(value)
            entry[key] = value
        groups.append(entry)
    return tensors, {"state": plain, "param_groups": groups, "tuples": sorted(tuples)}


def unflatten_optimizer(tensors: dict[str, Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`flatten_optimizer`: a dict for ``optimizer.load_state_dict``."""
    state: dict[int, dict[str, Any]] = {}
    for name, tensor in tensors.items():
        index, key = name.split("/", 1)
        state.setdefault(int(index), {})[key] = tensor
    for index, values in meta["state"].items():
        state.setdefault(int(index), {}).update(values)
    tuples = set(meta.get("tuples", ()))
    groups = [
        {key: tuple(value) if key in tuples else value for key, value in group.items()}
        for group in meta["param_groups"]
    ]
    return {"state": state, "param_groups": groups}


# -- RNG states --------------------------------------------------------------------------------


def capture_rng(device: torch.device) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """This process' RNG states: uint8 tensors (torch CPU, CUDA, numpy) and Python's as JSON."""
    tensors = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        tensors["cuda"] = torch.cuda.get_rng_state(device)
    kind, keys, position, has_gauss, gauss = np.random.get_state(legacy=True)  # type: ignore[misc]
    tensors["numpy"] = torch.from_numpy(np.asarray(keys, dtype=np.uint32).copy()).view(torch.uint8)
    version, internal, python_gauss = random.getstate()
    plain = {
        "numpy": [kind, int(position), int(has_gauss), float(gauss)],
        "python": [version, list(internal), python_gauss],
    }
    return tensors, plain


def restore_rng(tensors: dict[str, Tensor], plain: dict[str, Any], device: torch.device) -> None:
    """Set this process' RNGs from :func:`capture_rng` output."""
    torch.set_rng_state(tensors["cpu"])
    if device.type == "cuda" and "cuda" in tensors:
        torch.cuda.set_rng_state(tensors["cuda"], device)
    kind, position, has_gauss, gauss = plain["numpy"]
    keys = tensors["numpy"].contiguous().view(torch.int32).numpy().view(np.uint32)
    np.random.set_state((kind, keys, position, has_gauss, gauss))
    version, internal, python_gauss = plain["python"]
    random.setstate((version, tuple(internal), python_gauss))


# -- the state files -----------------------------------------------------------------------------


def state_dir(run: Path) -> Path:
    """``<run>/state``."""
    return run / STATE_DIR


def has_state(run: Path) -> bool:
    """Whether ``run`` holds a saved training state."""
    return (state_dir(run) / POINTER_NAME).is_file()


def save_state(run: Path, tensors: dict[str, Tensor], meta: dict[str, Any]) -> Path:
    """Write a state (crash-safe, see the module docstring); returns the tensor file.

    Args:
        run: the run folder.
        tensors: name -> CPU tensor (contiguous, not sharing storage).
        meta: JSON-able values; must hold ``global_step``.
    """
    folder = state_dir(run)
    folder.mkdir(parents=True, exist_ok=True)
    name = f"tensors-{int(meta['global_step']):09d}-{uuid.uuid4().hex[:6]}.safetensors"
    target = folder / name
    staging = folder / f".{name}.tmp"
    save_tensors(tensors, staging, metadata={"format": "pt"})
    with staging.open("rb") as stream:
        os.fsync(stream.fileno())
    os.replace(staging, target)
    pointer = {
        "format": STATE_FORMAT,
        **meta,
        "tensors": name,
        "sha256": _sha256(target),
    }
    atomic_write_text(folder / POINTER_NAME, json.dumps(pointer, indent=1, allow_nan=False))
    for old in folder.glob("tensors-*.safetensors"):
        if old.name != name:
            old.unlink(missing_ok=True)
    for stale in folder.glob(".tensors-*.tmp"):
        stale.unlink(missing_ok=True)
    logger.debug("saved training state at step %s to %s", meta["global_step"], target)
    return target


#: The values every state.json holds, and their JSON types.
_POINTER_FIELDS: dict[str, type | tuple[type, ...]] = {
    "global_step": int,
    "epoch": int,
    "step_in_epoch": int,
    "world_size": int,
    "metrics_bytes": int,
    "tensors": str,
    "sha256": str,
    "epoch_loss": list,
    "optimizer": dict,
    "scaler": dict,
    "rng": dict,
}


def _damaged(pointer: Path, problem: str) -> CheckpointMismatchError:
    return CheckpointMismatchError(
        f"{pointer}: the state is damaged ({problem}); restore the run folder from a backup, or "
        "start over with --overwrite"
    )


def read_pointer(run: Path) -> dict[str, Any]:
    """The values of ``state.json``, their types and ranges checked (the tensors are not read).

    Raises:
        InputNotFoundError: ``run`` holds no state.
        CheckpointMismatchError: the file is not a state this diffris wrote.
    """
    pointer = state_dir(run) / POINTER_NAME
    if not pointer.is_file():
        raise InputNotFoundError(
            f"{run} holds no training state ({STATE_DIR}/{POINTER_NAME} is missing); "
            "start a new run instead of --resume"
        )
    try:
        meta = json.loads(pointer.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
        raise _damaged(pointer, f"not valid JSON ({str(err)[:80]})") from err
    if not isinstance(meta, dict):
        raise _damaged(pointer, "not a JSON object")
    if meta.get("format") != STATE_FORMAT:
        raise CheckpointMismatchError(
            f"{pointer} has state format {str(meta.get('format'))[:40]!r}; this diffris reads "
            f"{STATE_FORMAT}"
        )
    _check_fields(pointer, meta, ("global_step", "tensors", "sha256"))
    name = meta["tensors"]
    if Path(name).name != name or not name.startswith("tensors-"):
        raise _damaged(pointer, f"tensor file name {name[:60]!r} is not a file of {STATE_DIR}/")
    return meta


def _check_fields(pointer: Path, meta: dict[str, Any], required: tuple[str, ...]) -> None:
    """Every field of ``meta`` listed in ``_POINTER_FIELDS`` has its type and range."""
    for name, kind in _POINTER_FIELDS.items():
        if name not in meta and name not in required:
            continue
        value = meta.get(name)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise _damaged(
                pointer, f"{name!r} is missing or not a {getattr(kind, '__name__', kind)}"
            )
        if kind is int and value < (1 if name == "world_size" else 0):
            raise _damaged(pointer, f"{name} {value} is out of range")


def check_position(run: Path, meta: dict[str, Any], *, steps_per_epoch: int, epochs: int) -> None:
    """Refuse a state that lacks what a trainer restores, or whose position is not in this run.

    Raises:
        CheckpointMismatchError: a missing value, or epoch, step or global step outside the run.
    """
    pointer = state_dir(run) / POINTER_NAME
    _check_fields(pointer, meta, tuple(_POINTER_FIELDS))  # all that a trainer restores
    epoch, step, global_step = meta["epoch"], meta["step_in_epoch"], meta["global_step"]
    if epoch > epochs or step >= steps_per_epoch or (epoch == epochs and step):
        raise _damaged(
            pointer,
            f"epoch {epoch}, step {step} lies outside this run ({epochs} epochs of "
            f"{steps_per_epoch} steps)",
        )
    if global_step != epoch * steps_per_epoch + step:
        raise _damaged(pointer, f"global step {global_step} is not epoch x steps + step")


def verify_tensors(run: Path, meta: dict[str, Any]) -> Path:
    """The state's tensor file, after checking its SHA-256 against ``state.json``.

    Raises:
        CheckpointMismatchError: the file is missing, not a regular file, or altered.
    """
    pointer = state_dir(run) / POINTER_NAME
    tensor_file = state_dir(run) / meta["tensors"]
    if tensor_file.is_symlink() or not tensor_file.is_file():
        raise _damaged(pointer, f"its tensor file {tensor_file.name} is missing")
    if _sha256(tensor_file) != meta["sha256"]:
        raise _damaged(
            pointer, f"{tensor_file.name} does not match its SHA-256 (truncated or altered)"
        )
    return tensor_file


def load_state(run: Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """The tensors and values of the state saved in ``run``.

    Raises:
        InputNotFoundError: ``run`` holds no state.
        CheckpointMismatchError: the state is damaged (bad JSON, missing or altered tensor file).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    meta = read_pointer(run)
    tensor_file = verify_tensors(run, meta)
    try:
        tensors = load_file(tensor_file)
    except (SafetensorError, OSError) as err:
        raise CheckpointMismatchError(f"{tensor_file} is not readable: {err}") from err
    return tensors, meta


def select(tensors: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """The tensors whose name starts with ``prefix/``, with the prefix removed."""
    start = f"{prefix}/"
    return {name[len(start) :]: t for name, t in tensors.items() if name.startswith(start)}
