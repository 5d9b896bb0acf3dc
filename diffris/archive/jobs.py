"""Scene jobs: everything a worker needs to process one scene, and the per-scene work contract.

A :class:`SceneJob` is a frozen, picklable description of one (scene, prompt set, model, options)
combination: the input, the output path, the model spec a worker rebuilds its model from, the
prompts and options. Two hashes identify it:

- ``key``: the ledger row, ``sha256(input, prompt-set hash, model id, options hash)``;
- ``digest``: ``sha256(key, input identity)``, written into the output as the tag
  ``diffris_job``. A scene is skipped only when its ledger row is done *and* its output carries
  this digest, so a changed input, prompt set, model or option, a deleted output, or a foreign
  file at the output path all lead to reprocessing.

The per-scene work is a :class:`SceneProcessor`: a picklable object whose ``setup(device)`` loads
the model once per worker process and whose ``__call__(job)`` writes ``job.output`` atomically
(temporary name, then rename; replacing an older output), tagged with ``job.tags``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Protocol, runtime_checkable

from diffris.archive.inputs import InputIdentity, SceneInput, identify
from diffris.data.prompts import Prompt, prompt_set_hash
from diffris.errors import InputError
from diffris.stac.inputs import StacScene

__all__ = [
    "JOB_TAG",
    "NON_OUTPUT_OPTIONS",
    "SceneJob",
    "SceneOutcome",
    "SceneProcessor",
    "make_jobs",
    "options_hash",
]

#: Output tag (GeoTIFF dataset tag / Zarr attribute) holding the job digest.
JOB_TAG = "diffris_job"
#: Options that change speed but never the output's bytes; they do not trigger reprocessing.
NON_OUTPUT_OPTIONS = frozenset({"batch_size", "device", "workers"})


@dataclass(frozen=True)
class SceneJob:
    """One scene to process for one prompt set, model and option set.

    Attributes:
        key: ledger row key (32 hex digits).
        digest: what the output's ``diffris_job`` tag must equal (32 hex digits).
        input: what GDAL opens: a local path or a URL.
        name: relative name of the scene within its source (e.g. ``2024/06/a.tif``).
        output: the file or Zarr store to write (a part file when ``rows`` is set).
        model: model spec a worker loads: a preset name or a trained-model folder.
        model_id: model identity recorded in the ledger and the output's tags.
        prompts: the prompts, in band order.
        prompt_hash: :func:`~diffris.data.prompts.prompt_set_hash` of ``prompts``.
        options: JSON-able processing options (e.g. ``SegmentOptions.to_dict()``).
        options_hash: :func:`options_hash` of ``options``.
        identity: the input's size, mtime and optional content hash when planned.
        rows: output row range ``[start, stop)`` to produce, for one part of a split scene;
            None for the whole scene.
        stac: the STAC item the scene came from, if any (its id, bands, file).
    """

    key: str
    digest: str
    input: str
    name: str
    output: str
    model: str
    model_id: str
    prompts: tuple[Prompt, ...]
    prompt_hash: str
    options: Mapping[str, Any] = field(hash=False)
    options_hash: str = ""
    identity: InputIdentity = InputIdentity()
    rows: tuple[int, int] | None = None
    stac: StacScene | None = field(default=None, compare=False)

    @property
    def tags(self) -> dict[str, str]:
        """Tags the output must carry (pass them to the sink as extra tags)."""
        return {JOB_TAG: self.digest}


@dataclass(frozen=True)
class SceneOutcome:
    """What a processor reports for a scene it finished.

    Attributes:
        output: the path it published.
        seconds: wall time of the scene, in seconds.
        tiles: tiles processed, if the processor counts them.
        details: anything else worth recording (JSON-able).
    """

    output: str
    seconds: float
    tiles: int | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class SceneProcessor(Protocol):
    """The per-scene work, injected into the runner; must be picklable.

    ``setup`` runs once in every worker process before its first scene (load the model there and
    cache it on ``self``); ``__call__`` processes one job, writing ``job.output`` atomically with
    ``job.tags``, and raises on failure (the runner records the error and carries on).
    """

    def setup(self, device: str | None) -> None:
        """Prepare this worker process (load the model once) for ``device`` (None: default)."""
        ...

    def __call__(self, job: SceneJob) -> SceneOutcome:
        """Process one scene (or, with ``job.rows``, one row range of it) and publish it."""
        ...


def options_hash(options: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the options' canonical JSON, ignoring :data:`NON_OUTPUT_OPTIONS`."""
    relevant = {key: value for key, value in options.items() if key not in NON_OUTPUT_OPTIONS}
    return _sha(relevant, length=64)


def make_jobs(
    scenes: Sequence[SceneInput],
    *,
    out_dir: str | Path,
    model: str,
    model_id: str,
    prompts: Sequence[Prompt],
    options: Mapping[str, Any],
    suffix: str = ".tif",
    hash_content: bool = False,
    known: Mapping[str, InputIdentity] | None = None,
) -> list[SceneJob]:
    """One job per scene: output paths, hashes and input identities.

    Outputs mirror the scenes' relative names under ``out_dir`` with ``suffix`` as extension;
    scenes whose names differ only by extension (``a.tif``, ``a.jp2``) keep it in the name
    (``a_tif.tif``, ``a_jp2.tif``) so they never overwrite each other. A scene from a STAC item
    whose band metadata names red, green and blue reads those bands unless ``options`` sets
    ``bands`` (``--bands``).

    Args:
        scenes: from :func:`~diffris.archive.inputs.discover_scenes`.
        out_dir: the output folder.
        model: the model spec workers load (preset name or trained-model folder).
        model_id: the model's identity (changes when its weights do).
        prompts: the prompt set, in band order.
        options: JSON-able options that shape the output.
        suffix: output extension: ``.tif`` or ``.zarr``.
        hash_content: identify inputs by SHA-256 of their bytes (and size), not mtime.
        known: identities from the ledger by input path, to reuse content hashes of files whose
            size and mtime did not change.

    Raises:
        InputError: an output path would be one of the inputs.
    """
    if not prompts:
        raise InputError("no prompts given; pass a description file with --prompts")
    out_dir = Path(os.path.abspath(out_dir))
    prompt_hash = prompt_set_hash(list(prompts))
    opt_hash = options_hash(options)
    names = _output_names([scene.name for scene in scenes], suffix)
    jobs = []
    for scene, name in zip(scenes, names, strict=True):
        output = out_dir / name
        if scene.file is not None and os.path.realpath(output) == os.path.realpath(scene.file):
            raise InputError(
                f"the output for {scene.source} would overwrite it; choose an output folder "
                "other than the input folder"
            )
        identity = identify(scene, hash_content=hash_content, known=(known or {}).get(scene.source))
        scene_options, scene_hash = dict(options), opt_hash
        if scene.stac is not None and scene.stac.bands and options.get("bands") is None:
            scene_options["bands"] = list(scene.stac.bands)
            scene_hash = options_hash(scene_options)
        key = _sha([scene.source, prompt_hash, model_id, scene_hash])
        jobs.append(
            SceneJob(
                key=key,
                digest=_sha([key, identity.fingerprint, suffix]),
                input=scene.source,
                name=scene.name,
                output=str(output),
                model=model,
                model_id=model_id,
                prompts=tuple(prompts),
                prompt_hash=prompt_hash,
                options=scene_options,
                options_hash=scene_hash,
                identity=identity,
                stac=scene.stac,
            )
        )
    return jobs


def _output_names(names: Sequence[str], suffix: str) -> list[str]:
    stems = [PurePosixPath(name).with_suffix("").as_posix() for name in names]
    clashes = {stem for stem, count in Counter(stems).items() if count > 1}
    out = []
    for name, stem in zip(names, stems, strict=True):
        if stem in clashes:
            stem = f"{stem}_{PurePosixPath(name).suffix.lstrip('.').lower() or 'noext'}"
        out.append(stem + suffix)
    return out


def _sha(value: Any, *, length: int = 32) -> str:
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:length]
