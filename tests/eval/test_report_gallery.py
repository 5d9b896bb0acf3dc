"""The report's one scale (×100) and its gallery: best means IoU > 0, best and worst disjoint.

The pages are parsed with :mod:`html.parser`, as a reader's browser would split them into
sections, rather than searched for substrings.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from diffris.data.base import open_dataset
from diffris.data.synthetic import write_dataset
from diffris.eval.evaluate import EvaluateOptions, evaluate
from diffris.eval.gallery import GallerySelector
from diffris.eval.metrics import resize_mask_nearest
from diffris.eval.predictions import prediction_file

SIZE = 64


class ReportSections(HTMLParser):
    """Each ``<h2>`` section's figure captions and paragraphs, and the histogram's SVG texts."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.sections: dict[str, dict[str, list[str]]] = {}
        self._section = ""
        self._tag: str | None = None
        self._text: list[str] = []
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("h2", "figcaption", "p", "text", "title"):
            self._tag, self._text = tag, []

    def handle_data(self, data: str) -> None:
        if self._tag is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag != self._tag:
            return
        text = "".join(self._text).strip()
        if tag == "h2":
            self._section = text
            self.sections[text] = {}
        elif self._section:
            self.sections[self._section].setdefault(tag, []).append(text)
        self._tag = None

    def captions(self, section: str) -> list[tuple[float, str]]:
        """(IoU as shown, sample id) of each card of a gallery section."""
        found = []
        for caption in self.sections[section].get("figcaption", []):
            value = re.match(r"IoU (\d+\.\d\d)", caption)
            assert value, caption
            found.append((float(value.group(1)), caption.split()[-1]))
        return found


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("refsegrs")
    write_dataset(root, layout="refsegrs", samples=10, splits=(2, 2, 6), size=SIZE, seed=1)
    return root


def _report(root: Path, folder: Path, hit: set[int], gallery: int) -> ReportSections:
    """Score predictions that equal the truth for samples ``hit`` and are empty otherwise."""
    data = open_dataset("refsegrs", root, "test")
    for index in range(len(data)):
        truth = resize_mask_nearest(data.sample(index).mask, SIZE)
        prediction = truth if index in hit else np.zeros_like(truth)
        name = prediction_file(data.meta(index).sample_id, "test")
        Image.fromarray(prediction.astype(np.uint8)).save(folder / name)
    options = EvaluateOptions(image_size=SIZE, device="cpu", gallery=gallery)
    result = evaluate("refsegrs", root, "test", predictions=folder, options=options)
    page = result.write_report(folder / "report.html").read_text()
    return ReportSections(page)


def test_best_never_shows_a_zero_and_never_a_worst_sample(root, tmp_path):
    # two perfect samples, four misses; a gallery of 4 a side would fill "best" with misses
    report = _report(root, tmp_path, hit={1, 4}, gallery=4)
    best, worst = report.captions("Best samples"), report.captions("Worst samples")
    assert [iou for iou, _ in best] == [100.0, 100.0]
    assert [iou for iou, _ in worst] == [0.0] * 4
    assert not {sample for _, sample in best} & {sample for _, sample in worst}


def test_no_sample_above_zero_says_so(root, tmp_path):
    report = _report(root, tmp_path, hit=set(), gallery=2)
    assert report.sections["Best samples"] == {"p": ["No sample has an IoU above 0."]}
    assert [iou for iou, _ in report.captions("Worst samples")] == [0.0, 0.0]


def test_histogram_axis_is_on_the_scale_of_the_table_and_the_gallery(root, tmp_path):
    report = _report(root, tmp_path, hit={1, 4}, gallery=1)
    texts = report.sections["IoU distribution"]["text"]
    # per bar: its count, then its left tick; then the right end and the axis label
    ticks, label = [*texts[1:20:2], texts[20]], texts[21]
    assert ticks == [str(10 * k) for k in range(11)]
    assert label == "IoU ×100 (bars: samples per bin)"
    titles = report.sections["IoU distribution"]["title"]
    assert "IoU ×100 0–10: 4 samples" in titles and "IoU ×100 90–100: 2 samples" in titles
    assert [iou for iou, _ in report.captions("Best samples")] == [100.0]  # IoU 1 shown as 100


def test_selector_best_is_above_zero_and_worst_takes_the_rest():
    selector: GallerySelector[int] = GallerySelector(3)
    for index, value in enumerate([0.0, 0.4, 0.0, 0.0]):
        selector.offer(index, value, lambda index=index: index)
    assert [(p.index, p.iou) for p in selector.best()] == [(1, 0.4)]
    assert [p.index for p in selector.worst()] == [0, 2, 3]  # zeros kept on the best heap too
    zeros: GallerySelector[int] = GallerySelector(2)
    for index in range(3):
        zeros.offer(index, 0.0, lambda index=index: index)
    assert zeros.best() == [] and [p.index for p in zeros.worst()] == [0, 1]
