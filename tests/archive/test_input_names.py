"""Archive sources with GDAL names: subdatasets and URLs in lists, Sentinel-2 .SAFE products."""

import numpy as np
import rasterio
import rasterio.shutil

from diffris.archive.inputs import discover_scenes, identify
from diffris.archive.jobs import make_jobs
from diffris.archive.runner import archive
from tests.archive.archive_helpers import PROMPTS, field_processor, job_options, read, write_scene

MTD = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<n1:Level-2A_User_Product xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/'
    'User_Product_Level-2A.xsd"></n1:Level-2A_User_Product>\n'
)


def _product(folder, name="S2A_MSIL2A_20240601T100031_N0510_R122_T33UUP_20240601T120000.SAFE"):
    """The layout of a Sentinel-2 L2A product (no real imagery: one cannot be built here)."""
    product = folder / name
    r10m = product / "GRANULE" / "L2A_T33UUP_A046512_20240601T100031" / "IMG_DATA" / "R10m"
    r10m.mkdir(parents=True)
    for band in ("B02", "B03", "B04"):
        (r10m / f"T33UUP_20240601T100031_{band}_10m.jp2").write_bytes(b"\0" * 64)
    (product / "MTD_MSIL2A.xml").write_text(MTD)
    return product


def _pages(path):
    """A two-page GeoTIFF; page 2 is a different scene from page 1."""
    write_scene(path, seed=1)
    second = write_scene(path.with_name("second.tif"), seed=2)
    rasterio.shutil.copy(second, path, driver="GTiff", APPEND_SUBDATASET="YES")
    return second


def _outputs(scenes, out):
    jobs = make_jobs(
        scenes, out_dir=out, model="m", model_id="m", prompts=PROMPTS, options=job_options()
    )
    return {job.input: job.output for job in jobs}


def test_list_lines_that_are_subdatasets_urls_or_products_keep_their_syntax(tmp_path):
    _pages(tmp_path / "scenes" / "pages.tif")
    product = _product(tmp_path / "products")
    url = "/vsicurl/http://127.0.0.1:8000/cogs//b.tif"
    listing = tmp_path / "scenes.txt"
    listing.write_text(f"GTIFF_DIR:2:scenes/pages.tif\n{url}\nproducts/{product.name}\n")
    scenes = discover_scenes(listing)
    subdataset = f"GTIFF_DIR:2:{tmp_path}/scenes/pages.tif"  # the file resolved, not prefixed
    metadata = str(product / "MTD_MSIL2A.xml")
    assert sorted(s.source for s in scenes) == sorted([subdataset, url, metadata])
    outputs = _outputs(scenes, tmp_path / "out")
    assert outputs == {
        subdataset: str(tmp_path / "out" / "scenes" / "pages_2.tif"),
        url: str(tmp_path / "out" / "127.0.0.1_8000" / "cogs" / "b.tif"),
        metadata: str(tmp_path / "out" / "products" / (product.stem + ".tif")),
    }
    by_source = {s.source: s for s in scenes}
    assert (
        identify(by_source[subdataset]).size == (tmp_path / "scenes" / "pages.tif").stat().st_size
    )


def test_a_folder_of_safe_products_is_scanned_as_products_not_jp2_files(tmp_path):
    write_scene(tmp_path / "in" / "a.tif")
    product = _product(tmp_path / "in" / "2024")
    for source in (tmp_path / "in", f"{tmp_path}/in/*/*.SAFE", product):
        scenes = discover_scenes(source)
        products = [s for s in scenes if s.source.endswith("MTD_MSIL2A.xml")]
        assert len(products) == 1 and not [s for s in scenes if s.source.endswith(".jp2")]
        assert products[0].source == str(product / "MTD_MSIL2A.xml")
        assert products[0].name.endswith(product.name)


def test_an_unreadable_product_fails_in_one_line_and_the_rest_is_done(tmp_path):
    write_scene(tmp_path / "in" / "a.tif")
    product = _product(tmp_path / "in")
    report = archive(
        tmp_path / "in",
        out_dir=tmp_path / "out",
        processor=field_processor(),
        model="stand-in",
        model_id="field-v1",
        prompts=PROMPTS,
        options=job_options(),
    )
    results = {r.input: r for r in report.results}
    assert results[str(tmp_path / "in" / "a.tif")].status == "done"
    failed = results[str(product / "MTD_MSIL2A.xml")]
    assert failed.status == "failed" and "\n" not in failed.error
    assert failed.error.startswith(f"{product}/MTD_MSIL2A.xml is not a raster GDAL can read")
    assert sorted(p.name for p in (tmp_path / "out").glob("*.tif")) == ["a.tif"]


def test_a_listed_subdataset_is_processed_from_that_page(tmp_path):
    second = _pages(tmp_path / "pages.tif")
    (tmp_path / "list.txt").write_text("GTIFF_DIR:2:pages.tif\nsecond.tif\n")
    report = archive(
        tmp_path / "list.txt",
        out_dir=tmp_path / "out",
        processor=field_processor(),
        model="stand-in",
        model_id="field-v1",
        prompts=PROMPTS,
        options=job_options(),
    )
    assert report.counts["done"] == 2, report.to_dict()
    page_two = read(tmp_path / "out" / "pages_2.tif")
    assert np.array_equal(page_two, read(tmp_path / "out" / second.name))
    with rasterio.open(tmp_path / "out" / "pages_2.tif") as written, rasterio.open(second) as src:
        assert (written.crs, written.transform) == (src.crs, src.transform)
