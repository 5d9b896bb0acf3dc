"""The user's ``--co OVERVIEW_RESAMPLING`` applies to a COG's overviews."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio

from tests.geo.sink_helpers import make_spec, write_output


def _overview_values(creation_options: dict[str, str], path: Path) -> set[int]:
    spec = make_spec(output_type="prob", creation_options=creation_options)
    rng = np.random.default_rng(0)
    data = np.where(rng.random((spec.count, spec.height, spec.width)) > 0.5, 254, 0)
    write_output(path, spec, data.astype(np.uint8))
    with rasterio.open(path, overview_level=0) as level:
        return set(np.unique(level.read()).tolist())


def test_overview_resampling_from_the_user_is_used(tmp_path: Path) -> None:
    assert len(_overview_values({}, tmp_path / "avg.cog.tif")) > 2  # default: average
    mode = {"OVERVIEW_RESAMPLING": "MODE"}
    assert _overview_values(mode, tmp_path / "mode.cog.tif") <= {0, 254}
