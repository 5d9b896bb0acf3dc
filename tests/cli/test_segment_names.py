"""``diffris segment`` takes every name GDAL opens: URLs, /vsi*/ paths, subdataset names."""

import http.server
import io
import os
import re
import shutil
import subprocess
import sys
import threading
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.shutil
from typer.testing import CliRunner

from diffris_cli.app import app
from tests.inference.scenes import CRS_UTM, TRANSFORM, position_scene

runner = CliRunner()
_RANGE = re.compile(r"bytes=(\d+)-(\d*)$")


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with HTTP Range support (python's handler has none), as a COG host has."""

    ranges: list[str]

    def send_head(self):  # type: ignore[no-untyped-def]
        match = _RANGE.match(self.headers.get("Range", ""))
        path = self.translate_path(self.path)
        if match is None or not os.path.isfile(path):
            return super().send_head()
        with open(path, "rb") as handle:
            data = handle.read()
        start = int(match.group(1))
        stop = min(int(match.group(2) or len(data) - 1), len(data) - 1)
        self.ranges.append(f"{self.path} {start}-{stop}")
        self.send_response(206)
        self.send_header("Content-Type", "image/tiff")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Range", f"bytes {start}-{stop}/{len(data)}")
        self.send_header("Content-Length", str(stop - start + 1))
        self.end_headers()
        return io.BytesIO(data[start : stop + 1])

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_root(tmp_path):
    """A threaded HTTP server on 127.0.0.1 serving ``tmp_path / "www"``; yields (root, port, ranges)."""
    root = tmp_path / "www"
    root.mkdir()
    ranges: list[str] = []
    handler = type("Handler", (RangeHandler,), {"ranges": ranges})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=root))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, server.server_address[1], ranges
    server.shutdown()
    server.server_close()


def _read(path):
    with rasterio.open(path) as src:
        return src.read(), src.crs, src.transform


def test_vsicurl_and_s3_urls_segment_like_the_local_file(tmp_path, http_root):
    root, port, ranges = http_root
    local = position_scene(tmp_path / "scene.tif", 256, 200)
    shutil.copy(local, root / "remote.tif")
    (root / "bucket").mkdir()
    shutil.copy(local, root / "bucket" / "in-bucket.tif")
    env = {
        **os.environ,
        # s3://bucket/... is served by the same loopback server, unsigned, over plain HTTP.
        "AWS_S3_ENDPOINT": f"127.0.0.1:{port}",
        "AWS_HTTPS": "NO",
        "AWS_VIRTUAL_HOSTING": "FALSE",
        "AWS_NO_SIGN_REQUEST": "YES",
        "OMP_NUM_THREADS": "1",
    }
    names = [
        str(local),
        f"/vsicurl/http://127.0.0.1:{port}/remote.tif",
        "s3://bucket/in-bucket.tif",
    ]
    command = [sys.executable, "-m", "diffris_cli", "segment", *names, "-o", str(tmp_path / "out")]
    command += ["-t", "the river", "--model", "tiny", "--tile", "256", "--output-type", "prob"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    assert any(r.startswith("/remote.tif") for r in ranges)  # GDAL really read over HTTP
    assert any(r.startswith("/bucket/in-bucket.tif") for r in ranges)
    expected, crs, transform = _read(tmp_path / "out" / "scene.tif")
    assert crs == CRS_UTM and transform == TRANSFORM and expected.any()
    for name in ("remote.tif", "in-bucket.tif"):
        pixels, other_crs, other_transform = _read(tmp_path / "out" / name)
        assert np.array_equal(pixels, expected) and (other_crs, other_transform) == (crs, transform)


@pytest.mark.parametrize(
    "name", ["https://127.0.0.1:9/cogs//a.tif", "/vsicurl/http://127.0.0.1:9/x//a.tif"]
)
def test_a_url_reaches_gdal_unmangled_and_its_refusal_is_one_line(tmp_path, name):
    # Port 9 (discard) refuses at once: no network needed.
    args = ["segment", name, "-t", "roofs", "-o", str(tmp_path / "m.tif"), "--model", "tiny"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1 and "Traceback" not in result.output
    (line,) = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert f"GDAL cannot open {name}:" in line
    assert not (tmp_path / "m.tif").exists()


def _pages(path: Path) -> Path:
    """A two-page GeoTIFF: page 1 the position scene, page 2 its inverse."""
    position_scene(path, 300, 260)
    second = position_scene(path.with_name("second.tif"), 300, 260)
    with rasterio.open(second, "r+") as dst:
        dst.write(255 - dst.read())
    rasterio.shutil.copy(second, path, driver="GTiff", APPEND_SUBDATASET="YES")
    return second


def test_a_subdataset_name_segments_that_page(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _pages(tmp_path / "pages.tif")
    args = ["segment", "GTIFF_DIR:1:pages.tif", "GTIFF_DIR:2:pages.tif", "second.tif"]
    args += ["-o", "out/", "-t", "roofs", "--model", "tiny", "--tile", "256", "-q"]
    args += ["--output-type", "prob"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "pages_1.tif",
        "pages_2.tif",
        "second.tif",
    ]
    page_two, crs, transform = _read(tmp_path / "out" / "pages_2.tif")
    assert (crs, transform) == (CRS_UTM, TRANSFORM)
    assert np.array_equal(page_two, _read(tmp_path / "out" / "second.tif")[0])
    assert not np.array_equal(page_two, _read(tmp_path / "out" / "pages_1.tif")[0])


def test_a_subdataset_of_a_missing_file_names_the_file(tmp_path):
    name = f"GTIFF_DIR:1:{tmp_path}/nope.tif"
    args = ["segment", name, "-t", "roofs", "-o", str(tmp_path / "m.tif"), "--model", "tiny"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"error: {tmp_path}/nope.tif (the file of {name}) does not exist" in result.output
