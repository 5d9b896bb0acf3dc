"""Draw a GeoPackage of polygons (one layer per prompt) over the scene it came from.

    diffris segment examples/scene.tif --prompts examples/prompts.yaml \\
        -o masks.tif --vector polygons.gpkg --model examples/models/demo
    python examples/polygons_picture.py polygons.gpkg docs/example-polygons.jpg

The picture is the scene shrunk to ``--size`` pixels on its long side, each prompt's polygons
outlined in its preview colour (:data:`diffris.geo.preview.PALETTE`, the colours of
``--preview``), holes included, with a legend of prompt texts and polygon counts.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pyogrio
import rasterio
import shapely
from PIL import Image, ImageDraw
from rasterio.enums import Resampling

from diffris.geo.preview import PALETTE

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("polygons", type=Path)
    parser.add_argument("picture", type=Path)
    parser.add_argument("--scene", type=Path, default=HERE / "scene.tif")
    parser.add_argument("--size", type=int, default=1024)
    args = parser.parse_args()
    with rasterio.open(args.scene) as scene:
        scale = args.size / max(scene.width, scene.height)
        shape = (round(scene.height * scale), round(scene.width * scale))
        rgb = scene.read((1, 2, 3), out_shape=(3, *shape), resampling=Resampling.average)
        inverse = ~scene.transform
    image = Image.fromarray(np.moveaxis(rgb, 0, -1).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    legend = []
    for index, (layer, _) in enumerate(pyogrio.list_layers(args.polygons)):
        colour = PALETTE[index % len(PALETTE)]
        geometry, fields = pyogrio.raw.read(args.polygons, layer=layer, columns=["prompt_text"])[
            2:4
        ]
        polygons = shapely.from_wkb(geometry)
        for polygon in polygons:
            for ring in [polygon.exterior, *polygon.interiors]:
                xy = np.asarray(ring.coords)
                col, row = inverse * (xy[:, 0], xy[:, 1])
                draw.line(list(zip(col * scale, row * scale, strict=True)), fill=colour, width=2)
        text = fields[0][0] if len(polygons) else layer
        legend.append((colour, f"{text}: {len(polygons)} polygons"))
    for i, (colour, text) in enumerate(legend):
        top = 8 + 20 * i
        draw.rectangle((8, top, 22, top + 14), fill=colour, outline=(0, 0, 0))
        draw.text((30, top), text, fill=(255, 255, 255), stroke_width=2, stroke_fill=(0, 0, 0))
    args.picture.parent.mkdir(parents=True, exist_ok=True)
    image.save(args.picture, quality=88)


if __name__ == "__main__":
    main()
