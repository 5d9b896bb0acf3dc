"""Regenerate the bundled example: a 2048² synthetic aerial scene (EPSG:32633, 0.5 m, a 48 px
nodata collar), its description file and one ground-truth mask per prompt.

    python examples/make_example.py

The scene is re-encoded losslessly with WebP (pixel-identical, about half the size of DEFLATE
for this noisy texture) so the repository stays small.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil

from diffris.data.synthetic import write_scene

HERE = Path(__file__).resolve().parent


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        raw = Path(scratch) / "scene.tif"
        write_scene(
            raw,
            size=2048,
            seed=7,
            nodata_border=48,
            max_prompts=4,
            prompts_out=HERE / "prompts.yaml",
            masks_out=HERE / "truth",
            overwrite=True,
        )
        target = HERE / "scene.tif"
        rasterio.shutil.copy(
            raw,
            target,
            driver="GTiff",
            TILED="YES",
            BLOCKXSIZE=256,
            BLOCKYSIZE=256,
            COMPRESS="WEBP",
            WEBP_LOSSLESS="YES",
            COPY_SRC_OVERVIEWS="YES",
        )
        with rasterio.open(raw) as before, rasterio.open(target) as after:
            if not np.array_equal(before.read(), after.read()):
                raise SystemExit("lossless re-encoding changed pixels")
    print(f"wrote {target}, {HERE / 'prompts.yaml'} and {HERE / 'truth'}/")


if __name__ == "__main__":
    main()
