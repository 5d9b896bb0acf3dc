"""The archive's real per-scene work: :func:`~diffris.inference.segment.segment_scene` per job.

:class:`SegmentProcessor` is small and picklable (model spec, prompts, precision); each worker
process calls ``setup(device)`` once, which loads the model and encodes the prompts, and then
segments scenes with it. Outputs are written by the inference sinks (temporary name, then
rename), replacing an older output, and tagged with the job's digest.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from diffris.archive.jobs import SceneJob, SceneOutcome
from diffris.archive.outputs import VECTOR_FORMAT_OPTION, VECTOR_OPTIONS_OPTION, vector_output
from diffris.data.prompts import Prompt, prompt_set_hash
from diffris.devices import Precision
from diffris.errors import InputError
from diffris.geo.vector.options import VectorFormat, VectorOptions

#: The vector formats an archive writes beside its rasters (``--vector-format``).
ARCHIVE_VECTOR_FORMATS = (VectorFormat.GPKG, VectorFormat.PARQUET)

if TYPE_CHECKING:
    from diffris.inference.feature_cache import FeatureCacheOptions
    from diffris.inference.predictor import TilePredictor
    from diffris.inference.segment import SegmentOptions

__all__ = ["ARCHIVE_VECTOR_FORMATS", "SegmentProcessor", "segment_options"]

_PRECISION_KEY = "precision"


def segment_options(options: Mapping[str, Any]) -> SegmentOptions:
    """The :class:`SegmentOptions` held in a job's options (other keys, e.g. precision, dropped)."""
    from diffris.inference.segment import SegmentOptions

    names = {f.name for f in dataclasses.fields(SegmentOptions)}
    return SegmentOptions.from_dict({k: v for k, v in options.items() if k in names})


@dataclass
class SegmentProcessor:
    """Segments a scene with a model (any architecture) loaded once per worker process.

    Folders (``model``, ``pretrained``) are made absolute when the processor is built, where
    they were typed: workers may run in another folder or on another machine.

    Args:
        model: preset name (``tiny``, ``sd15``) or trained-model folder.
        prompts: the prompt set (encoded once per worker).
        precision: autocast precision.
        pretrained: the frozen foundations' folders (see :data:`~diffris.models.names.
            Pretrained`): a Stable Diffusion folder, or ``{"siglip": DIR, "sam": DIR}``.
        micro_batch: model micro-batch (see ModelPredictor); None picks it by device.
    """

    model: str
    prompts: tuple[Prompt, ...]
    precision: Precision = Precision.FP32
    pretrained: str | dict[str, str] | None = None
    micro_batch: int | None = None
    #: bytes a scene's run may use (``--max-memory``); None: ``DIFFRIS_MAX_MEMORY``, else the
    #: memory available when the scene starts
    max_memory: int | None = None
    #: keep the tiles' image features between runs (``--feature-cache``); shared by the
    #: workers, which may fill and read it at the same time
    feature_cache: FeatureCacheOptions | None = None
    #: bytes of GDAL's block cache in each worker (``--gdal-cache``); None leaves it as is
    gdal_cache: int | None = None
    _predictor: TilePredictor | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        from diffris.models.names import absolute_pretrained, model_spec

        self.model = model_spec(self.model)
        self.pretrained = absolute_pretrained(self.pretrained)  # type: ignore[assignment]

    def job_options(
        self,
        options: SegmentOptions,
        *,
        vector_format: VectorFormat | None = None,
        vector_options: VectorOptions | None = None,
    ) -> dict[str, Any]:
        """The options to give :func:`~diffris.archive.jobs.make_jobs`: ``options`` + precision,
        and the polygons' format and options when each scene also writes polygons (so that
        changing them reprocesses).

        Raises:
            InputError: a vector format the archive does not write (gpkg, parquet only).
        """
        values = {**options.to_dict(), _PRECISION_KEY: self.precision.value}
        if vector_format is not None:
            if vector_format not in ARCHIVE_VECTOR_FORMATS:
                valid = ", ".join(f.value for f in ARCHIVE_VECTOR_FORMATS)
                raise InputError(
                    f"--vector-format {vector_format.value}: the archive writes {valid}"
                )
            values[VECTOR_FORMAT_OPTION] = vector_format.value
            values[VECTOR_OPTIONS_OPTION] = (vector_options or VectorOptions()).to_dict()
        return values

    def setup(self, device: str | None) -> None:
        """Load the model and encode the prompts on ``device`` (None: ``auto``)."""
        self._predictor = self.load_predictor(device or "auto")

    def load_predictor(self, device: str) -> TilePredictor:
        """The tile predictor this worker uses (a subclass may supply another)."""
        from diffris.inference.loading import load_predictor

        predictor, _ = load_predictor(
            self.model,
            list(self.prompts),
            device=device,
            precision=self.precision,
            pretrained=self.pretrained,
            micro_batch=self.micro_batch,
            feature_cache=self.feature_cache,
        )
        return predictor

    def __call__(self, job: SceneJob) -> SceneOutcome:
        """Segment ``job.input`` into ``job.output`` (replacing it), tagged with ``job.tags``.

        Raises:
            InputError: the job was planned for other prompts.
            DiffrisError: the scene cannot be read or the output written.
        """
        from diffris.geo.grid import Grid
        from diffris.inference.run import check_fits_in_memory
        from diffris.inference.segment import VectorTarget, open_scene, segment_scene

        if job.prompt_hash != prompt_set_hash(list(self.prompts)):
            raise InputError(f"{job.input}: the job was planned for another prompt set")
        if self.gdal_cache is not None:
            # Per scene, not once per worker: a dask worker may serve runs with other bounds.
            from diffris.geo.gdal_cache import set_gdal_cache

            set_gdal_cache(self.gdal_cache)
        options = segment_options(job.options)
        # Scene sizes are known only here: a scene too large fails alone, in one line, before
        # its first tile (segment checks every scene up front).
        with open_scene(job.input, options) as scene:
            grid = Grid(scene.width, scene.height, tile=options.tile, overlap=options.overlap)
        check_fits_in_memory(job.input, grid, len(job.prompts), options, budget=self.max_memory)
        vector = None
        if (path := vector_output(job)) is not None:
            if job.rows is not None:
                raise InputError(
                    f"{job.input}: polygons are not written by split parts; drop --split-rows"
                )
            vector = VectorTarget(
                path,
                VectorOptions.from_dict(dict(job.options[VECTOR_OPTIONS_OPTION])),
                VectorFormat(job.options[VECTOR_FORMAT_OPTION]),
            )
        if self._predictor is None:
            self.setup(None)
        assert self._predictor is not None
        result = segment_scene(
            job.input,
            job.output,
            self._predictor,
            list(job.prompts),
            options,
            model_id=job.model_id,
            overwrite=True,
            extra_tags=job.tags,
            rows=job.rows,
            vector=vector,
        )
        return SceneOutcome(
            output=result.output,
            seconds=result.seconds,
            tiles=result.tiles,
            details={
                "skipped_tiles": result.skipped_tiles,
                "peak_memory_mib": result.peak_memory_mib,
                "gdal_cache_mib": result.gdal_cache_mib,
                **({"vector": result.vector, "polygons": result.polygons} if vector else {}),
            },
        )

    def __getstate__(self) -> dict[str, Any]:
        # The loaded model stays in its worker; a copy sent elsewhere loads its own.
        state = dict(self.__dict__)
        state["_predictor"] = None
        return state
