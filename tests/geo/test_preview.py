"""Quick-look PNGs from real scenes and real GeoTIFF / Zarr outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from PIL import Image

from diffris.data.prompts import Prompt
from diffris.errors import OutputExistsError
from diffris.geo.preview import PALETTE, swatch_box, write_preview
from diffris.geo.preview import _lab as lab
from diffris.geo.scene import Scene
from tests.geo.sink_helpers import make_spec, write_output
from tests.inference.scenes import CRS_UTM, TRANSFORM, position_scene

WIDTH, HEIGHT = 300, 260
#: Where the test masks are set: rows, cols.
RECTS = [(slice(50, 150), slice(60, 200)), (slice(170, 240), slice(20, 120))]


def _uniform_scene(path: Path, colour: tuple[int, int, int]) -> Path:
    data = np.broadcast_to(np.array(colour, np.uint8)[:, None, None], (3, HEIGHT, WIDTH))
    profile = dict(driver="GTiff", width=WIDTH, height=HEIGHT, count=3, dtype="uint8")
    with rasterio.open(path, "w", crs=CRS_UTM, transform=TRANSFORM, **profile) as dst:
        dst.write(data)
    return path


def _output(path: Path, prompts: int, *, inside: float = 0.9, **spec) -> Path:
    """An output whose prompt ``i`` is ``inside`` in RECTS[i] and 0.2 elsewhere; row 0 nodata."""
    names = [(f"p{i}", f"thing {i}") for i in range(prompts)]
    spec = make_spec(width=WIDTH, height=HEIGHT, prompts=names, **spec)
    prob = np.full((prompts, HEIGHT, WIDTH), 0.2, np.float32)
    for i in range(prompts):
        prob[i][RECTS[i]] = inside
    valid = np.ones((HEIGHT, WIDTH), bool)
    valid[0] = False
    write_output(path, spec, spec.encode(prob, valid))
    return path


def _preview(tmp_path: Path, scene: Path, output: Path, prompts: int, name: str) -> np.ndarray:
    png = tmp_path / name
    with Scene.open(scene) as opened:
        texts = [Prompt(id=f"p{i}", text=f"thing {i}") for i in range(prompts)]
        write_preview(opened, output, texts, png)
    return np.asarray(Image.open(png).convert("RGB"))


def _delta_e(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.linalg.norm(lab(a) - lab(b), axis=-1)


@pytest.mark.parametrize(
    ("name", "spec"),
    [
        ("p.zarr", {"output_type": "prob", "dtype": "float32"}),
        ("p.zarr", {"output_type": "prob"}),
        ("m.zarr", {}),
        ("p.tif", {"output_type": "prob", "dtype": "float32"}),
        ("m.tif", {}),
    ],
    ids=["zarr-float32", "zarr-uint8-prob", "zarr-mask", "tif-float32", "tif-mask"],
)
def test_preview_shows_exactly_the_mask_of_every_output_kind(tmp_path, name, spec):
    scene = position_scene(tmp_path / "scene.tif", WIDTH, HEIGHT)
    output = _output(tmp_path / name, 1, **spec)
    empty = _output(tmp_path / f"empty-{name}", 1, inside=0.2, **spec)
    shown = _preview(tmp_path, scene, output, 1, "shown.png")
    plain = _preview(tmp_path, scene, empty, 1, "plain.png")
    changed = (shown[:HEIGHT] != plain[:HEIGHT]).any(axis=-1)
    expected = np.zeros((HEIGHT, WIDTH), bool)
    expected[RECTS[0]] = True
    np.testing.assert_array_equal(changed, expected)


def test_a_mask_painted_over_its_own_colour_stays_visible(tmp_path):
    """The default first colour over a scene of that very colour: the mask must still show,
    and the legend swatch must be the colour painted for the prompt."""
    scene = _uniform_scene(tmp_path / "orange.tif", PALETTE[0])
    shown = _preview(tmp_path, scene, _output(tmp_path / "m.tif", 1), 1, "shown.png")
    plain = _preview(tmp_path, scene, _output(tmp_path / "e.tif", 1, inside=0.2), 1, "plain.png")
    rows, cols = RECTS[0]
    difference = _delta_e(shown[rows, cols], plain[rows, cols])
    assert difference.mean() > 20  # CIE76 ΔE: 2.3 is just noticeable, > 20 plainly different
    x0, y0, x1, y1 = swatch_box(0, HEIGHT)
    swatch = shown[y0 : y1 + 1, x0 : x1 + 1].reshape(-1, 3)
    assert (swatch == swatch[0]).all()
    assert tuple(shown[rows.start, cols.start]) == tuple(swatch[0])  # the outline's colour
    assert _delta_e(swatch[0], np.array(PALETTE[0], np.uint8)) > 40


def test_each_prompt_has_its_own_colour_and_a_matching_legend(tmp_path):
    scene = position_scene(tmp_path / "scene.tif", WIDTH, HEIGHT)
    shown = _preview(tmp_path, scene, _output(tmp_path / "m.zarr", 2), 2, "shown.png")
    colours = []
    for index, (rows, cols) in enumerate(RECTS):
        x0, y0, _, _ = swatch_box(index, HEIGHT)
        swatch = tuple(shown[y0 + 5, x0 + 5])
        corner = tuple(shown[rows.start, cols.start])
        assert swatch == corner
        colours.append(swatch)
    assert _delta_e(np.array(colours[0], np.uint8), np.array(colours[1], np.uint8)) > 40
    assert set(colours) <= set(PALETTE)


def test_an_existing_preview_is_kept_without_overwrite(tmp_path):
    scene = position_scene(tmp_path / "scene.tif", WIDTH, HEIGHT)
    output = _output(tmp_path / "m.tif", 1)
    png = tmp_path / "q.png"
    png.write_bytes(b"keep me")
    prompt = [Prompt(id="p0", text="thing 0")]
    with Scene.open(scene) as opened:
        with pytest.raises(OutputExistsError, match="q.png exists; pass --overwrite"):
            write_preview(opened, output, prompt, png)
        assert png.read_bytes() == b"keep me"
        write_preview(opened, output, prompt, png, overwrite=True)
    assert Image.open(png).format == "PNG"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.tif", "q.png", "scene.tif"]
