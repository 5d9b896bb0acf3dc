"""Several scenes in one call: output naming, a model loaded once, failures that don't stop
the others, and dry-run plans."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from diffris.data.prompts import Prompt
from diffris.errors import DiffrisError, InputError
from diffris.geo.grid import Grid
from diffris.geo.names import name_stem
from diffris.geo.sinks.publish import check_output, clean_stale_partials
from diffris.geo.sinks.spec import OutputDtype, OutputFormat
from diffris.geo.sinks.zarr import is_zarr_store
from diffris.geo.vector.options import EXTENSION_OF, VectorFormat
from diffris.inference.demo_grade import warn_if_demo_on_real_scenes
from diffris.inference.memory import MemoryEstimate, check_memory, estimate_memory
from diffris.inference.segment import (
    ProgressFn,
    SegmentOptions,
    SegmentResult,
    VectorTarget,
    check_scene,
    open_scene,
    segment_scene,
)

if TYPE_CHECKING:  # torch only when a model runs
    from diffris.inference.predictor import TilePredictor

log = logging.getLogger(__name__)

_EXTENSIONS = {OutputFormat.GTIFF: ".tif", OutputFormat.COG: ".tif", OutputFormat.ZARR: ".zarr"}


def output_paths(
    scenes: Sequence[str | Path],
    output: str | Path,
    fmt: OutputFormat | None,
    names: Sequence[str] | None = None,
) -> list[Path]:
    """Where each scene's output goes.

    One scene: ``output`` itself, unless it is an existing folder or ends with ``/`` (a Zarr
    store, existing or named ``.zarr``, is always ``output`` itself, never a folder). Several
    scenes: ``output`` is a folder and each scene writes ``<stem><ext>`` into it, the extension
    following ``fmt`` (GeoTIFF by default); ``names`` gives the stems instead (STAC item ids).

    Raises:
        InputError: two scenes would write the same output.
    """
    output_text = str(output)
    store = is_zarr_store(output)  # a store is one output, never a folder to write into
    folder = len(scenes) > 1 or (
        not store and (output_text.endswith(("/", "\\")) or Path(output).is_dir())
    )
    if not folder:
        return [Path(output)]
    if store:
        raise InputError(
            f"-o {output} is a Zarr store but {len(scenes)} scenes were given; give a folder "
            "for one store per scene, e.g. -o masks/ --format zarr"
        )
    if Path(output).suffix.lower() in (".tif", ".tiff") and not Path(output).is_dir():
        raise InputError(
            f"-o {output} looks like a file but {len(scenes)} scenes were given; "
            "give a folder, e.g. -o masks/"
        )
    extension = _EXTENSIONS[fmt or OutputFormat.GTIFF]
    stems = names if names is not None else [name_stem(str(scene)) for scene in scenes]
    paths = [Path(output) / f"{stem}{extension}" for stem in stems]
    seen: dict[Path, str] = {}
    for scene, path in zip(scenes, paths, strict=True):
        if path in seen:
            raise InputError(
                f"{seen[path]} and {scene} would both write {path}; rename one or run them "
                "separately"
            )
        seen[path] = str(scene)
    return paths


def per_scene(
    options: SegmentOptions | Sequence[SegmentOptions], count: int
) -> list[SegmentOptions]:
    """``options`` once per scene: the same for all, or as given (one per scene)."""
    if isinstance(options, SegmentOptions):
        return [options] * count
    if len(options) != count:
        raise ValueError(f"{len(options)} option sets for {count} scenes")
    return list(options)


def vector_paths(
    scenes: Sequence[str | Path],
    vector: str | Path,
    fmt: VectorFormat | None,
    names: Sequence[str] | None = None,
) -> list[Path]:
    """Where each scene's polygons go: like :func:`output_paths`, for vector files.

    One scene: ``vector`` itself, unless it is an existing folder or ends with ``/``. Several
    scenes: ``vector`` is a folder and each scene writes ``<stem><ext>`` into it, the
    extension following ``fmt`` (GeoPackage by default); ``names`` gives the stems instead (STAC
    item ids).

    Raises:
        InputError: a file name for several scenes, or two scenes writing the same file.
    """
    text = str(vector)
    folder = len(scenes) > 1 or text.endswith(("/", "\\")) or Path(vector).is_dir()
    if not folder:
        return [Path(vector)]
    if Path(vector).suffix and not Path(vector).is_dir():
        raise InputError(
            f"{vector} looks like a file but {len(scenes)} scenes were given; give a folder, "
            "e.g. polygons/"
        )
    extension = EXTENSION_OF[fmt or VectorFormat.GPKG]
    stems = names if names is not None else [name_stem(str(scene)) for scene in scenes]
    paths = [Path(vector) / f"{stem}{extension}" for stem in stems]
    if len(set(paths)) < len(paths):
        raise InputError(
            f"two scenes would write the same file in {vector}; rename one or run them separately"
        )
    return paths


@dataclass(frozen=True)
class ScenePlan:
    """What ``--dry-run`` reports for one scene."""

    scene: str
    output: str
    width: int
    height: int
    grid_rows: int
    grid_cols: int
    tiles: int
    estimated_memory_mib: float
    #: GDAL's block cache the run holds to (``--gdal-cache``), included in the estimate
    gdal_cache_mib: float = 0.0

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


def plan_scene(
    scene_path: str | Path, output: Path | None, prompt_count: int, options: SegmentOptions
) -> ScenePlan:
    """The grid and a memory estimate for one scene, without running the model.

    The estimate (:func:`~diffris.inference.memory.estimate_memory`) covers what scales with
    the scene's width and the prompts, and GDAL's block cache; the model's own memory comes on
    top (see ``benchmarks/``).
    """
    with open_scene(scene_path, options) as scene:
        grid = Grid(scene.width, scene.height, tile=options.tile, overlap=options.overlap)
        estimate = _estimate(scene.width, scene.height, len(grid), prompt_count, options)
        return ScenePlan(
            scene=str(scene_path),
            output=str(output),
            width=scene.width,
            height=scene.height,
            grid_rows=grid.n_rows,
            grid_cols=grid.n_cols,
            tiles=len(grid),
            estimated_memory_mib=estimate.mib,
            gdal_cache_mib=round(estimate.gdal_cache / 2**20, 1),
        )


def _estimate(
    width: int, height: int, tiles: int, prompts: int, options: SegmentOptions
) -> MemoryEstimate:
    return estimate_memory(
        width=width,
        height=height,
        tiles=tiles,
        prompts=prompts,
        tile=options.tile,
        batch_size=options.batch_size,
        # 4 bytes for float32 probabilities, 1 for masks and uint8 probabilities
        output_itemsize=4 if options.dtype is OutputDtype.FLOAT32 else 1,
    )


def check_fits_in_memory(
    scene: str | Path,
    grid: Grid,
    prompts: int,
    options: SegmentOptions,
    *,
    budget: int | None = None,
) -> None:
    """Refuse a scene whose run would need more memory than ``budget`` allows.

    Args:
        budget: bytes (``--max-memory``); None: ``DIFFRIS_MAX_MEMORY``, else the memory
            available now.

    Raises:
        NotEnoughMemoryError: with the numbers and the fixes.
    """
    estimate = _estimate(grid.width, grid.height, len(grid), prompts, options)
    check_memory(
        estimate.total,
        scene=str(scene),
        prompts=prompts,
        batch_size=min(options.batch_size, len(grid)),  # a batch holds at most this
        budget=budget,
    )


@dataclass(frozen=True)
class SceneFailure:
    scene: str
    error: str


def preflight(
    scenes: Sequence[str | Path],
    outputs: Sequence[Path | None],
    options: SegmentOptions | Sequence[SegmentOptions],
    *,
    prompts: Sequence[Prompt],
    overwrite: bool,
    preview: Path | None = None,
    max_memory: int | None = None,
    vectors: Sequence[VectorTarget | None] | None = None,
) -> list[SceneFailure]:
    """Check every scene opens with these options, every output may be written with them
    (:func:`~diffris.inference.segment.check_scene`) and the run fits in memory, before the
    model is loaded; a bad input fails in a second, not after an hour. ``--dry-run`` runs this
    same check.

    Args:
        options: one for all scenes, or one per scene (STAC items pick their own bands).
        preview: the quick-look PNG of a one-scene run, checked like an output (same
            ``overwrite`` rule), so that it cannot fail after the mask is written.
        max_memory: bytes the run may use (``--max-memory``); None: ``DIFFRIS_MAX_MEMORY``,
            else the memory available now (see :func:`~diffris.inference.memory.check_memory`).
        vectors: each scene's vector output (None: no polygons); ``outputs`` may then be None.

    Raises:
        DiffrisError: the first problem, when there is only one scene, and any problem with
            ``preview``.

    Returns:
        One failure per scene that cannot run (several scenes).
    """
    if preview is not None:
        check_preview(preview, [o for o in outputs if o is not None], overwrite=overwrite)
    vectors = vectors if vectors is not None else [None] * len(scenes)
    failures = []
    for scene, output, scene_options, vector in zip(
        scenes, outputs, per_scene(options, len(scenes)), vectors, strict=True
    ):
        try:
            grid = check_scene(
                scene, output, prompts, scene_options, overwrite=overwrite, vector=vector
            )
            check_fits_in_memory(scene, grid, len(prompts), scene_options, budget=max_memory)
        except DiffrisError as error:
            if len(scenes) == 1:
                raise
            failures.append(SceneFailure(str(scene), str(error)))
    return failures


def check_preview(preview: Path, outputs: Sequence[Path], *, overwrite: bool) -> Path:
    """Check up front that the quick-look PNG may be written (see :func:`check_output`).

    Raises:
        InputError: not a ``.png`` name, or the same path as an output.
        OutputExistsError: it exists and ``overwrite`` is False.
        OutputNotWritableError: its folder cannot be created or written to.
    """
    if Path(preview).suffix.lower() != ".png":
        raise InputError(f"--preview {preview}: the quick-look is a PNG; give a .png name")
    if any(Path(preview).resolve() == Path(output).resolve() for output in outputs):
        raise InputError(f"--preview {preview} is also the output; give the preview its own name")
    return check_output(preview, overwrite)


@dataclass
class RunSummary:
    """Results of a multi-scene run; ``exit_code`` is 1 when any scene failed."""

    results: list[SegmentResult] = dataclasses.field(default_factory=list)
    failures: list[SceneFailure] = dataclasses.field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 1 if self.failures else 0

    def to_dict(self) -> dict[str, object]:
        """``{"dry_run": false, "scenes": [...], "failed": [...]}``, the shape of
        :meth:`RunPlan.to_dict`."""
        return {
            "dry_run": False,
            "scenes": [r.to_dict() for r in self.results],
            "failed": [dataclasses.asdict(f) for f in self.failures],
        }


@dataclass
class RunPlan:
    """What ``--dry-run`` reports: a plan per scene that passed the preflight, and the rest."""

    plans: list[ScenePlan] = dataclasses.field(default_factory=list)
    failures: list[SceneFailure] = dataclasses.field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 1 if self.failures else 0

    def to_dict(self) -> dict[str, object]:
        """``{"dry_run": true, "scenes": [...], "failed": [...]}``, the shape of
        :meth:`RunSummary.to_dict`."""
        return {
            "dry_run": True,
            "scenes": [p.to_dict() for p in self.plans],
            "failed": [dataclasses.asdict(f) for f in self.failures],
        }


def plan_run(
    scenes: Sequence[str | Path],
    outputs: Sequence[Path | None],
    prompts: Sequence[Prompt],
    options: SegmentOptions | Sequence[SegmentOptions],
    failures: Sequence[SceneFailure] = (),
) -> RunPlan:
    """The dry run: a :class:`ScenePlan` for each scene :func:`preflight` let through.

    Args:
        failures: what :func:`preflight` returned; those scenes are reported, not planned.
    """
    failed = {failure.scene for failure in failures}
    plans = [
        plan_scene(scene, output, len(prompts), scene_options)
        for scene, output, scene_options in zip(
            scenes, outputs, per_scene(options, len(scenes)), strict=True
        )
        if str(scene) not in failed
    ]
    return RunPlan(plans=plans, failures=list(failures))


def segment_scenes(
    scenes: Sequence[str | Path],
    outputs: Sequence[Path | None],
    predictor: TilePredictor,
    prompts: Sequence[Prompt],
    options: SegmentOptions | Sequence[SegmentOptions],
    *,
    model_id: str,
    overwrite: bool = False,
    progress_for: Callable[[str, int], ProgressFn | None] | None = None,
    failures: Sequence[SceneFailure] = (),
    after_scene: Callable[[int, SegmentResult], None] | None = None,
    vectors: Sequence[VectorTarget | None] | None = None,
) -> RunSummary:
    """Segment each scene into its output; a failed scene is recorded and the rest go on.

    Args:
        outputs: each scene's raster output; None where it writes polygons only.
        options: one for all scenes, or one per scene.
        vectors: each scene's vector output, or None.
        after_scene: ``after_scene(index, result)`` once a scene's output is published (e.g.
            writing its STAC item); an error there fails that scene like any other.
        progress_for: ``progress_for(scene, index)`` returns the progress callback of a scene.
        failures: scenes :func:`preflight` refused; reported, not run.

    Temporary outputs left in the output folders by processes that no longer run are removed
    first (:func:`~diffris.geo.sinks.publish.clean_stale_partials`).
    """
    summary = RunSummary(failures=list(failures))
    failed = {failure.scene for failure in failures}
    from diffris.inference.predictor import ModelPredictor  # torch: a model is running anyway

    if isinstance(predictor, ModelPredictor):
        runnable = [scene for scene in scenes if str(scene) not in failed]
        warn_if_demo_on_real_scenes(predictor.model.config.backbone, runnable)
    # Temporary outputs of killed runs (SIGKILL, a crash) of processes gone from this machine;
    # a live process's are never touched, so a concurrent run in the same folder is safe.
    vectors = vectors if vectors is not None else [None] * len(scenes)
    targets = [
        *zip(scenes, outputs, strict=True),
        *((s, v and v.path) for s, v in zip(scenes, vectors, strict=True)),
    ]
    folders = {Path(o).parent for s, o in targets if o is not None and str(s) not in failed}
    for folder in sorted(folders):
        clean_stale_partials(folder)
    all_options = per_scene(options, len(scenes))
    for index, (scene, output, vector) in enumerate(zip(scenes, outputs, vectors, strict=True)):
        if str(scene) in failed:
            continue
        try:
            result = segment_scene(
                scene,
                output,
                predictor,
                prompts,
                all_options[index],
                model_id=model_id,
                overwrite=overwrite,
                progress=progress_for(str(scene), index) if progress_for else None,
                vector=vector,
            )
            if after_scene is not None:
                after_scene(index, result)
        except Exception as error:
            if len(scenes) == 1:
                raise
            # A user error is one line; anything else keeps its traceback in the debug log.
            log.error("%s failed: %s", scene, error, exc_info=not isinstance(error, DiffrisError))
            summary.failures.append(SceneFailure(str(scene), str(error) or type(error).__name__))
            continue
        summary.results.append(result)
    return summary
