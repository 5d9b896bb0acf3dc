"""Several scenes in one call: output naming, a model loaded once, failures that don't stop
the others, and dry-run plans."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from diffris.data.prompts import Prompt
from diffris.errors import DiffrisError, InputError
from diffris.geo.grid import Grid
from diffris.geo.names import name_stem
from diffris.geo.sinks.publish import check_output
from diffris.geo.sinks.spec import OutputFormat
from diffris.inference.predictor import TilePredictor
from diffris.inference.segment import (
    ProgressFn,
    SegmentOptions,
    SegmentResult,
    open_scene,
    segment_scene,
)

log = logging.getLogger(__name__)

_EXTENSIONS = {OutputFormat.GTIFF: ".tif", OutputFormat.COG: ".tif", OutputFormat.ZARR: ".zarr"}


def output_paths(
    scenes: Sequence[str | Path], output: str | Path, fmt: OutputFormat | None
) -> list[Path]:
    """Where each scene's output goes.

    One scene: ``output`` itself, unless it is an existing folder or ends with ``/``. Several
    scenes: ``output`` is a folder and each scene writes ``<stem><ext>`` into it, the extension
    following ``fmt`` (GeoTIFF by default).

    Raises:
        InputError: two scenes would write the same output.
    """
    output_text = str(output)
    folder = len(scenes) > 1 or output_text.endswith(("/", "\\")) or Path(output).is_dir()
    if not folder:
        return [Path(output)]
    if Path(output).suffix.lower() in (".tif", ".tiff", ".zarr") and not Path(output).is_dir():
        raise InputError(
            f"-o {output} looks like a file but {len(scenes)} scenes were given; "
            "give a folder, e.g. -o masks/"
        )
    extension = _EXTENSIONS[fmt or OutputFormat.GTIFF]
    paths = [Path(output) / f"{name_stem(str(scene))}{extension}" for scene in scenes]
    seen: dict[Path, str] = {}
    for scene, path in zip(scenes, paths, strict=True):
        if path in seen:
            raise InputError(
                f"{seen[path]} and {scene} would both write {path}; rename one or run them "
                "separately"
            )
        seen[path] = str(scene)
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

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


def plan_scene(
    scene_path: str | Path, output: Path, prompt_count: int, options: SegmentOptions
) -> ScenePlan:
    """The grid and a memory estimate for one scene, without running the model.

    The estimate covers what scales with the scene: the stitcher's open band of rows
    ((P + 1) float32 maps of tile x width), the encoded rows waiting to be written, and the
    tiles read ahead; the model's own memory comes on top (see ``benchmarks/``).
    """
    with open_scene(scene_path, options) as scene:
        grid = Grid(scene.width, scene.height, tile=options.tile, overlap=options.overlap)
        band = (prompt_count + 1) * min(options.tile, scene.height) * scene.width * 4
        written = 4 * prompt_count * options.tile * scene.width * 4
        read_ahead = 3 * options.batch_size * options.tile**2 * 4
        probs = options.batch_size * prompt_count * options.tile**2 * 4
        return ScenePlan(
            scene=str(scene_path),
            output=str(output),
            width=scene.width,
            height=scene.height,
            grid_rows=grid.n_rows,
            grid_cols=grid.n_cols,
            tiles=len(grid),
            estimated_memory_mib=round((band + written + read_ahead + probs) / 2**20, 1),
        )


@dataclass(frozen=True)
class SceneFailure:
    scene: str
    error: str


def preflight(
    scenes: Sequence[str | Path],
    outputs: Sequence[Path],
    options: SegmentOptions,
    *,
    overwrite: bool,
) -> list[SceneFailure]:
    """Check every scene opens with these options and every output may be written, before the
    model is loaded; a bad input fails in a second, not after an hour.

    Raises:
        DiffrisError: the first problem, when there is only one scene.

    Returns:
        One failure per scene that cannot run (several scenes).
    """
    failures = []
    for scene, output in zip(scenes, outputs, strict=True):
        try:
            check_output(output, overwrite)
            with open_scene(scene, options):
                pass
        except DiffrisError as error:
            if len(scenes) == 1:
                raise
            failures.append(SceneFailure(str(scene), str(error)))
    return failures


@dataclass
class RunSummary:
    """Results of a multi-scene run; ``exit_code`` is 1 when any scene failed."""

    results: list[SegmentResult] = dataclasses.field(default_factory=list)
    failures: list[SceneFailure] = dataclasses.field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 1 if self.failures else 0

    def to_dict(self) -> dict[str, object]:
        return {
            "scenes": [r.to_dict() for r in self.results],
            "failed": [dataclasses.asdict(f) for f in self.failures],
        }


def segment_scenes(
    scenes: Sequence[str | Path],
    outputs: Sequence[Path],
    predictor: TilePredictor,
    prompts: Sequence[Prompt],
    options: SegmentOptions,
    *,
    model_id: str,
    overwrite: bool = False,
    progress_for: Callable[[str, int], ProgressFn | None] | None = None,
    failures: Sequence[SceneFailure] = (),
) -> RunSummary:
    """Segment each scene into its output; a failed scene is recorded and the rest go on.

    Args:
        progress_for: ``progress_for(scene, index)`` returns the progress callback of a scene.
        failures: scenes :func:`preflight` refused; reported, not run.
    """
    summary = RunSummary(failures=list(failures))
    failed = {failure.scene for failure in failures}
    for index, (scene, output) in enumerate(zip(scenes, outputs, strict=True)):
        if str(scene) in failed:
            continue
        try:
            result = segment_scene(
                scene,
                output,
                predictor,
                prompts,
                options,
                model_id=model_id,
                overwrite=overwrite,
                progress=progress_for(str(scene), index) if progress_for else None,
            )
        except Exception as error:
            if len(scenes) == 1:
                raise
            # A user error is one line; anything else keeps its traceback in the debug log.
            log.error("%s failed: %s", scene, error, exc_info=not isinstance(error, DiffrisError))
            summary.failures.append(SceneFailure(str(scene), str(error) or type(error).__name__))
            continue
        summary.results.append(result)
    return summary
