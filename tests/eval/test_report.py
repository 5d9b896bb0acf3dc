"""The HTML report: self-contained, escaped, holding what it promises; rendered in Chromium."""

from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from diffris.eval.metrics import MetricAccumulator
from diffris.eval.report import (
    BOTH_COLOUR,
    GT_COLOUR,
    PRED_COLOUR,
    GallerySample,
    overlay,
    render_report,
    write_report,
)

SCRIPT = Path(__file__).resolve().parents[2] / "tools" / "screenshot_report.sh"
BAR_BLUE, HISTOGRAM_ORANGE = (0x3B, 0x82, 0xC4), (0xC4, 0x6A, 0x3B)


def _scores():
    accumulator = MetricAccumulator()
    counts = [(90, 100), (50, 100), (0, 40), (30, 100), (100, 100), (0, 0)]
    categories = ["ship", "ship", "vehicle", "vehicle", "harbor", None]
    for k, ((i, u), category) in enumerate(zip(counts, categories, strict=True)):
        accumulator.add(f"test/{k}", i, u, category)
    return accumulator.result()


def _sample(
    sample_id: str, iou: float, sentence: str = "the ship <b>left</b> & up"
) -> GallerySample:
    image = np.full((96, 96, 3), 120, np.uint8)
    truth = np.zeros((96, 96), bool)
    truth[20:60, 20:60] = True
    prediction = np.roll(truth, 20, axis=1)
    return GallerySample(sample_id, sentence, iou, image, truth, prediction, category="ship")


SETTINGS = {"dataset": "risbench", "split": "test", "resolution": "input", "limit": None}


def _page(**changes) -> str:
    arguments = dict(
        title="RISBench test: tiny",
        scores=_scores(),
        settings=SETTINGS,
        best=[_sample("test/4", 1.0)],
        worst=[_sample("test/2", 0.0)],
    )
    return render_report(**(arguments | changes))


def test_page_is_self_contained():
    page = _page()
    assert "<script" not in page.lower()
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", page)
    assert "<link" not in page
    # Every image is an embedded PNG that decodes, at most 256 px.
    uris = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(uris) == 4  # image + overlay, for one best and one worst sample
    for uri in uris:
        with Image.open(io.BytesIO(base64.b64decode(uri))) as picture:
            assert picture.format == "PNG" and max(picture.size) <= 256


def test_page_holds_the_figures_the_categories_and_the_settings():
    scores = _scores()
    page = _page()
    for name, value in scores.figures().items():
        assert f"<th>{name}</th>" in page
        assert f"<td>{value:.2f}</td>" in page
    assert "<td>6</td>" in page and "6 samples scored, input resolution" in page
    for name, part in scores.per_category.items():
        assert f"<td>{name}</td><td>{part.n}</td><td>{part.miou:.2f}</td>" in page
    assert 'aria-label="mIoU per category"' in page
    assert "<td>dataset</td><td>risbench</td>" in page
    assert "limit" not in page  # None settings are left out


def test_histogram_counts_every_sample_in_its_bin():
    page = _page()
    # IoUs 0.9, 0.5, 0, 0.3, 1.0, 0 -> bins 0-10: 2, 30-40: 1, 50-60: 1, 90-100: 2 (x100).
    titles = re.findall(r"<title>IoU ×100 (\d+)–(\d+): (\d+) samples</title>", page)
    assert [(low, int(n)) for low, _, n in titles if int(n)] == [
        ("0", 2),
        ("30", 1),
        ("50", 1),
        ("90", 2),
    ]


def test_text_is_escaped_and_gallery_can_be_left_out():
    page = _page(title="<i>x</i>")
    assert "<b>left</b>" not in page and "the ship &lt;b&gt;left&lt;/b&gt; &amp; up" in page
    assert "<h1>&lt;i&gt;x&lt;/i&gt;</h1>" in page
    bare = _page(best=[], worst=[])
    assert "Best samples" not in bare and "data:image/png" not in bare
    assert "IoU distribution" in bare


def test_overlay_colours_regions():
    image = np.zeros((1, 4, 3), np.uint8)
    truth = np.array([[True, True, False, False]])
    prediction = np.array([[False, True, True, False]])
    out = overlay(image, truth, prediction)
    for pixel, colour in ((0, GT_COLOUR), (1, BOTH_COLOUR), (2, PRED_COLOUR)):
        assert np.array_equal(out[0, pixel], np.round(0.55 * np.array(colour)).astype(np.uint8))
    assert not out[0, 3].any()
    assert np.array_equal(overlay(image, truth.astype(np.uint8), prediction), out)


def test_write_is_atomic(tmp_path):
    path = write_report(tmp_path / "report.html", title="t", scores=_scores(), settings=SETTINGS)
    assert path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


@pytest.mark.skipif(
    shutil.which("chromium") is None and shutil.which("chromium-browser") is None,
    reason="chromium is not installed (Debian: apt-get install chromium)",
)
def test_chromium_renders_the_report(tmp_path):
    report = write_report(
        tmp_path / "report.html",
        title="RISBench test: tiny",
        scores=_scores(),
        settings=SETTINGS,
        best=[_sample("test/4", 1.0)],
        worst=[_sample("test/2", 0.0)],
    )
    png = tmp_path / "report.png"
    done = subprocess.run(
        [str(SCRIPT), str(report), str(png), "1000,1600"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    with Image.open(png) as shot:
        assert shot.size == (1000, 1600)
        pixels = np.asarray(shot.convert("RGB")).reshape(-1, 3)
    colours = {tuple(p) for p in np.unique(pixels, axis=0)}
    # The SVG charts, the overlay thumbnails and text were all drawn.
    assert BAR_BLUE in colours and HISTOGRAM_ORANGE in colours
    overlay_both = tuple(int(round(0.45 * 120 + 0.55 * c)) for c in BOTH_COLOUR)
    near = np.abs(pixels.astype(int) - np.array(overlay_both)).max(axis=1) <= 2
    assert near.sum() > 500
    assert (pixels.max(axis=1) < 60).sum() > 1000  # dark text


def test_screenshot_script_refuses_a_missing_report(tmp_path):
    done = subprocess.run(
        [str(SCRIPT), str(tmp_path / "none.html"), str(tmp_path / "x.png")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode in (1, 3)  # 3: chromium is not installed here
    assert not (tmp_path / "x.png").exists()
