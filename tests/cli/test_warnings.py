"""Library warnings reach the user through the log: expected ones only with -v/--debug, any
other one always (also under -q), as one line."""

import logging
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from typer.testing import CliRunner

from diffris_cli.app import app
from diffris_cli.logs import configure_logging

runner = CliRunner()


@pytest.fixture(scope="module")
def bare_scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 64² RGB GeoTIFF with no CRS and no geotransform (rasterio warns on opening it)."""
    path = tmp_path_factory.mktemp("scene") / "bare.tif"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(
            path, "w", driver="GTiff", width=64, height=64, count=3, dtype="uint8"
        ) as scene:
            scene.write(np.full((3, 64, 64), 120, dtype=np.uint8))
    return path


def _segment(scene: Path, out: Path, *flags: str) -> str:
    args = [*flags, "segment", str(scene), "-t", "roofs", "-o", str(out), "--model", "tiny"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return result.stderr


def test_rasterios_not_georeferenced_warning_stays_out_of_a_normal_run(
    bare_scene: Path, tmp_path: Path
) -> None:
    # a fresh process: under pytest, warnings would go to pytest's own record, not stderr
    out = tmp_path / "masks.tif"
    args = ["segment", str(bare_scene), "-t", "roofs", "-o", str(out), "--model", "tiny"]
    done = subprocess.run(
        [sys.executable, "-m", "diffris_cli", *args], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "NotGeoreferencedWarning" not in done.stderr
    assert "has no CRS" in done.stderr  # diffris' own line says it


@pytest.mark.parametrize(("verbose", "debug"), [(1, False), (0, True)], ids=["-v", "--debug"])
def test_an_expected_warning_shows_with_verbose_or_debug_as_one_debug_line(
    verbose: int, debug: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    from rasterio.errors import NotGeoreferencedWarning

    configure_logging(verbose, False, debug=debug)
    try:
        warnings.warn("Dataset has no geotransform", NotGeoreferencedWarning, stacklevel=1)
    finally:
        logging.captureWarnings(False)
    lines = [
        line for line in capsys.readouterr().err.splitlines() if "NotGeoreferencedWarning" in line
    ]
    assert len(lines) == 1 and "DEBUG" in lines[0], lines


@pytest.mark.parametrize("quiet", [False, True])
def test_an_unknown_warning_still_shows(quiet: bool, capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(0, quiet)
    try:
        warnings.warn("something nobody expected", UserWarning, stacklevel=1)
        warnings.warn(
            "Casting complex values to real discards the imaginary part",
            np.exceptions.ComplexWarning,
            stacklevel=1,
        )
    finally:
        logging.captureWarnings(False)
    stderr = capsys.readouterr().err
    shown = [line for line in stderr.splitlines() if "UserWarning" in line]
    assert len(shown) == 1 and "something nobody expected" in shown[0], stderr
    assert "WARNING" in shown[0] and "test_warnings.py" in shown[0]
    assert "ComplexWarning" not in stderr
