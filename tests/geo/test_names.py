"""GDAL names: which part is a file, how it is resolved, what the output is called; containers."""

import numpy as np
import pytest
import rasterio
from affine import Affine

from diffris.errors import InputError, NotARasterError
from diffris.geo.names import absolute_name, is_remote, local_path, name_stem
from diffris.geo.scene import Scene, _choose_subdataset

S2 = "SENTINEL2_L2A:/d/S2B_MSIL2A_X.SAFE/MTD_MSIL2A.xml"


@pytest.mark.parametrize(
    ("name", "local", "absolute", "stem"),
    [
        ("a.tif", "a.tif", "/base/a.tif", "a"),
        ("/vsicurl/http://127.0.0.1:8000/c//a.tif", None, None, "a"),
        ("https://host/cogs/a.tif?sig=x:y", None, None, "a"),
        ("s3://bucket/a.tif", None, None, "a"),
        ("/vsizip/x.zip/b.tif", None, None, "b"),
        ("GTIFF_DIR:2:a.tif", "a.tif", "GTIFF_DIR:2:/base/a.tif", "a_2"),
        ("GTIFF_DIR:2:/vsicurl/http://h:80/a.tif", None, None, "a_2"),
        (f"{S2}:10m:EPSG_32633", S2.split(":", 1)[1], None, "S2B_MSIL2A_X_10m_EPSG_32633"),
        ('NETCDF:"in/f.nc":tas', "in/f.nc", 'NETCDF:"/base/in/f.nc":tas', "f_tas"),
        (
            "/d/S2B_MSIL2A_X.SAFE/MTD_MSIL2A.xml",
            "/d/S2B_MSIL2A_X.SAFE/MTD_MSIL2A.xml",
            None,
            "S2B_MSIL2A_X",
        ),
    ],
)
def test_names_split_resolve_and_name_outputs(name, local, absolute, stem):
    assert local_path(name) == local and is_remote(name) == (local is None)
    assert absolute_name(name, "/base") == (absolute or name)
    assert name_stem(name) == stem


def test_a_container_of_several_rasters_is_refused_with_its_subdatasets(tmp_path):
    path = tmp_path / "c.gpkg"
    profile = dict(driver="GPKG", width=64, height=64, count=3, dtype="uint8", crs="EPSG:32633")
    transform = Affine(10.0, 0.0, 500_000.0, 0.0, -10.0, 5_000_000.0)
    for table, extra in (("summer", {}), ("winter", {"APPEND_SUBDATASET": "YES"})):
        with rasterio.open(
            path, "w", transform=transform, RASTER_TABLE=table, **profile, **extra
        ) as dst:
            dst.write(np.full((3, 64, 64), 100, np.uint8))
    with pytest.raises(InputError) as error:
        Scene.open(path)
    message = str(error.value)
    assert f"{path} holds 2 subdatasets" in message and f"GPKG:{path}:winter" in message
    with Scene.open(f"GPKG:{path}:winter") as scene:  # the name it suggests opens
        assert (scene.width, scene.height) == (64, 64)


def test_a_sentinel2_product_reads_its_10m_subdataset():
    # The SENTINEL2 driver lists these for an L2A product (GDAL's documentation).
    listed = [f"{S2}:{part}:EPSG_32633" for part in ("10m", "20m", "60m", "TCI")]
    assert _choose_subdataset("MTD_MSIL2A.xml", "SENTINEL2", listed) == listed[0]
    with pytest.raises(InputError, match="holds 4 subdatasets"):
        _choose_subdataset("x.nc", "netCDF", listed)


def test_a_safe_folder_is_opened_by_its_metadata_file(tmp_path):
    product = tmp_path / "S2B_MSIL2A_X.SAFE"
    (product / "GRANULE").mkdir(parents=True)
    (product / "MTD_MSIL2A.xml").write_text("<?xml version='1.0'?><Level-2A_User_Product/>")
    with pytest.raises(NotARasterError) as error:
        Scene.open(product)  # no real product can be built here: GDAL's refusal, in one line
    assert str(error.value).startswith(f"{product}/MTD_MSIL2A.xml is not a raster GDAL can read")
    assert "\n" not in str(error.value)
