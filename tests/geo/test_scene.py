"""Scene: band choice, scene-level stretch, nodata semantics and errors, on real GeoTIFFs."""

from __future__ import annotations

import logging
import pickle
import threading
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.enums import ColorInterp
from rasterio.windows import Window
from rasters import CRS, TRANSFORM, write_raster

from diffris.errors import InputError, InputNotFoundError, NotARasterError
from diffris.geo.scene import Scene, SceneSpec, Stretch, StretchMethod

RGBA = [ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha]


def test_one_band_uint8_is_replicated_to_rgb(tmp_path: Path) -> None:
    data = np.random.default_rng(0).integers(0, 256, (90, 120), dtype=np.uint8)
    path = write_raster(tmp_path / "grey.tif", data)
    with Scene.open(path) as scene:
        assert (scene.width, scene.height, scene.dtype) == (120, 90, "uint8")
        assert scene.band_indexes == (1, 1, 1)
        assert scene.crs == rasterio.crs.CRS.from_string(CRS)
        assert scene.transform == TRANSFORM
        assert scene.profile == {
            "width": 120,
            "height": 90,
            "crs": scene.crs,
            "transform": TRANSFORM,
        }
        assert scene.stretch.method is StretchMethod.NONE
        assert scene.stretch.to_tags() == {"stretch_method": "none"}
        image, valid = scene.read(Window(10, 20, 64, 32))
    assert image.dtype == np.uint8 and image.shape == (3, 32, 64)
    assert valid.dtype == np.bool_ and valid.all()
    for band in image:
        np.testing.assert_array_equal(band, data[20:52, 10:74])
    assert scene.closed


def test_uint16_uses_one_scene_level_percentile_stretch(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    data = rng.integers(200, 60_000, (3, 200, 300), dtype=np.uint16)
    data[:, :100, :150] //= 20  # a dark corner: a per-tile stretch would brighten it
    data[:, 10, 10] = data[:, 150, 250] = 12_345
    path = write_raster(tmp_path / "rgb16.tif", data)
    with Scene.open(path) as scene:
        stretch = scene.stretch
        dark, _ = scene.read(Window(0, 0, 64, 64))
        bright, _ = scene.read(Window(200, 100, 64, 64))
    assert stretch.method is StretchMethod.PERCENTILE and stretch.percentiles == (2.0, 98.0)
    expected = np.percentile(data.reshape(3, -1).astype(float), [2, 98], axis=1)
    np.testing.assert_allclose(stretch.low, expected[0])
    np.testing.assert_allclose(stretch.high, expected[1])
    # The same source value gives the same output wherever it is read.
    np.testing.assert_array_equal(dark[:, 10, 10], bright[:, 50, 50])
    tags = stretch.to_tags()
    assert tags["stretch_method"] == "percentile" and tags["stretch_percentiles"] == "2,98"
    assert len(tags["stretch_low"].split(",")) == 3


def test_statistics_of_a_large_scene_come_from_a_decimated_read(tmp_path: Path) -> None:
    cols = np.linspace(0, 10_000, 3000)
    data = np.broadcast_to(cols, (150, 3000)).astype(np.uint16)
    path = write_raster(tmp_path / "wide.tif", data)
    with Scene.open(path) as scene:
        low, high = scene.stretch.low[0], scene.stretch.high[0]
    assert low == pytest.approx(200, abs=20) and high == pytest.approx(9800, abs=20)


def test_statistics_use_overviews_when_present(tmp_path: Path) -> None:
    # A 0/1000 checkerboard: its 2x average overview is ~500 everywhere, while any
    # nearest-neighbour decimation of full resolution would see only 0s or 1000s.
    rows, cols = np.indices((1024, 2048))
    data = (((rows + cols) % 2) * 1000 + cols // 16).astype(np.uint16)
    path = write_raster(tmp_path / "ovr.tif", data, overviews=[2, 4])
    with Scene.open(path) as scene:
        assert 450 < scene.stretch.low[0] < scene.stretch.high[0] < 700


def test_bands_pick_and_order_channels(tmp_path: Path) -> None:
    data = np.stack([np.full((70, 80), 10 * (b + 1), np.uint8) for b in range(4)])
    path = write_raster(tmp_path / "four.tif", data)
    with Scene.open(path, bands=(4, 3, 2)) as scene:
        image, _ = scene.read(Window(0, 0, 80, 70))
        assert scene.band_indexes == (4, 3, 2)
    assert [int(band[0, 0]) for band in image] == [40, 30, 20]
    with Scene.open(path, bands=[2]) as scene:
        assert scene.band_indexes == (2, 2, 2)


def test_rgba_uses_colour_interpretation_and_alpha_as_mask(tmp_path: Path) -> None:
    data = np.stack([np.full((64, 96), v, np.uint8) for v in (50, 100, 150, 255)])
    data[3, :, :20] = 0  # transparent strip
    path = write_raster(tmp_path / "rgba.tif", data, colorinterp=RGBA)
    with Scene.open(path) as scene:
        image, valid = scene.read(Window(0, 0, 96, 64))
    assert scene.band_indexes == (1, 2, 3)
    assert not valid[:, :20].any() and valid[:, 20:].all()
    assert (image[:, :, :20] == 0).all()
    assert [int(band[0, 50]) for band in image] == [50, 100, 150]


def test_colour_interpretation_order_is_followed(tmp_path: Path) -> None:
    data = np.stack([np.full((64, 64), v, np.uint8) for v in (1, 2, 3, 4, 5)])
    interp = [ColorInterp.undefined, ColorInterp.blue, ColorInterp.green, ColorInterp.red]
    path = write_raster(tmp_path / "bgr.tif", data, colorinterp=[*interp, ColorInterp.undefined])
    with Scene.open(path) as scene:
        assert scene.band_indexes == (4, 3, 2)


def test_many_bands_without_colour_interpretation_is_a_clear_error(tmp_path: Path) -> None:
    path = write_raster(tmp_path / "five.tif", np.zeros((5, 64, 64), np.uint16))
    with pytest.raises(InputError, match=r"five\.tif has 5 bands .*--bands 4,3,2") as info:
        Scene.open(path)
    assert "\n" not in str(info.value)
    two = write_raster(tmp_path / "two.tif", np.zeros((2, 64, 64), np.uint8))
    with pytest.raises(InputError, match=r"two\.tif has 2 bands"):
        Scene.open(two)


@pytest.mark.parametrize(
    ("bands", "message"),
    [
        ((6, 3, 2), r"--bands 6,3,2: .*five\.tif has no band 6; it has 5 band\(s\)"),
        ((0,), r"has no band 0"),
        ((4, 3), r"--bands 4,3 has 2 value\(s\); give three"),
    ],
)
def test_bad_bands_are_a_clear_error(tmp_path: Path, bands: tuple[int, ...], message: str) -> None:
    path = write_raster(tmp_path / "five.tif", np.zeros((5, 64, 64), np.uint16))
    with pytest.raises(InputError, match=message):
        Scene.open(path, bands=bands)


def test_float_nan_is_nodata_and_ignored_by_statistics(tmp_path: Path) -> None:
    data = np.random.default_rng(2).uniform(0.0, 0.3, (3, 80, 100)).astype(np.float32)
    data[1, 5:15, 5:25] = np.nan  # NaN in one band masks the pixel
    data[:, 70:, :] = np.nan
    path = write_raster(tmp_path / "reflectance.tif", data)
    with Scene.open(path) as scene:
        image, valid = scene.read(Window(0, 0, 100, 80))
    assert np.isfinite(scene.stretch.low).all() and np.isfinite(scene.stretch.high).all()
    expected = np.isfinite(data).all(axis=0)
    np.testing.assert_array_equal(valid, expected)
    assert (image[:, ~expected] == 0).all() and image[:, expected].max() == 255


def test_nodata_value_masks_and_is_excluded_from_statistics(tmp_path: Path) -> None:
    data = np.full((3, 80, 80), 1000, np.uint16)
    data[:, :, 40:] = 3000
    data[:, :20, :] = 0
    path = write_raster(tmp_path / "nodata.tif", data, nodata=0)
    with Scene.open(path) as scene:
        image, valid = scene.read(Window(0, 0, 80, 80))
    assert not valid[:20].any() and valid[20:].all()
    assert scene.stretch.low == (1000.0,) * 3 and scene.stretch.high == (3000.0,) * 3
    assert (image[:, 20:, :40] == 0).all() and (image[:, 20:, 40:] == 255).all()


def test_internal_mask_is_honoured(tmp_path: Path) -> None:
    data = np.full((3, 64, 64), 77, np.uint8)
    mask = np.ones((64, 64), bool)
    mask[30:40, 10:50] = False
    path = write_raster(tmp_path / "masked.tif", data, mask=mask)
    with Scene.open(path) as scene:
        _, valid = scene.read(Window(0, 0, 64, 64))
        _, part = scene.read(Window(5, 28, 20, 20))
    np.testing.assert_array_equal(valid, mask)
    np.testing.assert_array_equal(part, mask[28:48, 5:25])


def test_nodata_override_masks_a_value_in_any_band(tmp_path: Path) -> None:
    data = np.full((3, 64, 64), 20, np.uint8)
    data[2, :8, :] = 7
    path = write_raster(tmp_path / "override.tif", data)
    with Scene.open(path, nodata=7) as scene:
        _, valid = scene.read(Window(0, 0, 64, 64))
    assert not valid[:8].any() and valid[8:].all()


def test_manual_stretch_overrides_percentiles(tmp_path: Path) -> None:
    data = np.full((3, 64, 64), 600, np.uint16)
    data[:, 0, 0] = 2000
    path = write_raster(tmp_path / "manual.tif", data)
    with Scene.open(path, stretch=(0, 1000)) as scene:
        image, _ = scene.read(Window(0, 0, 64, 64))
        assert scene.stretch.to_tags()["stretch_low"] == "0,0,0"
    assert image[0, 1, 1] == 153 and image[0, 0, 0] == 255
    with pytest.raises(InputError, match="--stretch 10,5 is not a range"):
        Scene.open(path, stretch=(10, 5))
    with pytest.raises(InputError, match="--percentiles 98,2 is not a range"):
        Scene.open(path, percentiles=(98, 2))


def test_scene_without_crs_opens_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_raster(tmp_path / "nocrs.tif", np.ones((64, 64), np.uint8), crs=None)
    with caplog.at_level(logging.WARNING, logger="diffris.geo.scene"), Scene.open(path) as scene:
        assert scene.crs is None
        image, valid = scene.read(Window(0, 0, 64, 64))
    assert valid.all() and image.shape == (3, 64, 64)
    assert any("nocrs.tif has no CRS" in r.getMessage() for r in caplog.records)


def test_missing_file_is_input_not_found(tmp_path: Path) -> None:
    path = tmp_path / "absent.tif"
    with pytest.raises(InputNotFoundError, match=f"^{path} does not exist") as info:
        Scene.open(path)
    assert isinstance(info.value, FileNotFoundError) and "\n" not in str(info.value)


def test_text_file_is_not_a_raster(tmp_path: Path) -> None:
    path = tmp_path / "notes.tif"
    path.write_text("just some text\n")
    with pytest.raises(NotARasterError, match=f"^{path} is not a raster GDAL can read: ") as info:
        Scene.open(path)
    assert "\n" not in str(info.value)


def test_reopen_gives_an_independent_handle_with_the_same_stretch(tmp_path: Path) -> None:
    data = np.random.default_rng(3).integers(0, 4000, (3, 128, 128), dtype=np.uint16)
    path = write_raster(tmp_path / "reopen.tif", data)
    window = Window(32, 16, 64, 64)
    with Scene.open(path) as scene:
        expected = scene.read(window)
        spec = pickle.loads(pickle.dumps(scene.spec))
        assert isinstance(spec, SceneSpec) and spec == scene.spec
        results: list[tuple[np.ndarray, np.ndarray]] = []

        def read_elsewhere() -> None:
            with scene.reopen() as other:
                results.append(other.read(window))

        thread = threading.Thread(target=read_elsewhere)
        thread.start()
        thread.join()
        with spec.open() as copy:
            assert copy.stretch == scene.stretch
            results.append(copy.read(window))
    for image, valid in results:
        np.testing.assert_array_equal(image, expected[0])
        np.testing.assert_array_equal(valid, expected[1])


def test_windows_outside_the_scene_are_refused(tmp_path: Path) -> None:
    path = write_raster(tmp_path / "small.tif", np.zeros((64, 64), np.uint8))
    with Scene.open(path) as scene:
        with pytest.raises(ValueError, match="extends past"):
            scene.read(Window(32, 32, 64, 64))
        with pytest.raises(ValueError, match="whole pixels"):
            scene.read(Window(0.5, 0, 8, 8))


def test_stretch_maps_linearly_and_clips() -> None:
    stretch = Stretch(StretchMethod.MANUAL, (0.0, 10.0, 0.0), (100.0, 20.0, 1.0))
    data = np.array([[[40.0]], [[25.0]], [[np.nan]]])
    np.testing.assert_array_equal(stretch.apply(data)[:, 0, 0], [102, 255, 0])
