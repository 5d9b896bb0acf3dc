"""Synthetic scenes of any size from the smallest allowed: no cell too narrow to plan."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from diffris.data.synthetic import write_scene
from diffris.data.synthetic.georef import CELL, MIN_SCENE_SIZE, TILE, cell_edges
from diffris.errors import InputError

SIZES = [64, 100, 256, 300, 512, 576, 700, 704, (700, 1024), (100, 1300), 1000]


@pytest.mark.parametrize("size", SIZES, ids=str)
def test_scene_of_any_size_is_written_with_objects_where_they_fit(tmp_path, size):
    path = tmp_path / "scene.tif"
    summary = write_scene(
        path, size=size, seed=3, nodata_border=0, overviews=False, masks_out=tmp_path / "m"
    )
    height, width = (size, size) if isinstance(size, int) else size
    with rasterio.open(path) as src:
        assert (src.height, src.width) == (height, width)
        image = src.read()
    assert image.min() > 0  # every pixel rendered (0 is nodata)
    for prompt in summary.prompts:
        with rasterio.open(prompt.mask) as src:
            assert src.read(1).sum() == prompt.pixels > 0
    if min(height, width) >= 512:
        assert summary.objects["building"] > 0


@pytest.mark.parametrize("side", [64, 255, 256, 511, 512, 513, 576, 700, 1000, 1024, 1100, 4096])
def test_cells_tile_the_side_without_slivers(side):
    edges = cell_edges(side)
    widths = np.diff(edges)
    assert edges[0] == 0 and edges[-1] == side and (widths > 0).all()
    assert all(edge % TILE == 0 for edge in edges[1:-1])  # windows start on the tile grid
    assert widths.min() >= min(side, 256) and widths.max() <= CELL + TILE
    if side % CELL == 0:
        assert (widths == CELL).all()  # multiples of 512 plan exactly as before


def test_scene_smaller_than_the_minimum_is_refused(tmp_path):
    with pytest.raises(InputError, match=f"too small; use at least {MIN_SCENE_SIZE} px"):
        write_scene(tmp_path / "s.tif", size=(MIN_SCENE_SIZE - 1, 512), nodata_border=0)
    assert not list(tmp_path.iterdir())
