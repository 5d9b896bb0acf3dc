"""A self-contained HTML evaluation report: one file, no external assets or scripts.

Holds the metric table (Pr@0.5 ... Pr@0.9, oIoU, mIoU, x100, with the number of samples scored),
a per-category bar chart and table, an IoU histogram (both inline SVG), a gallery of the best
(IoU > 0) and worst samples (image; ground truth and prediction overlaid in three colours; sentence; IoU) as
embedded PNG thumbnails, and the settings of the run. Every figure is on one scale, ×100: the
table, the charts' axes and the gallery's captions. It opens from disk or a mail attachment with
no network and no scripts.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from diffris.eval.metrics import Scores

#: Overlay colours: ground truth only, prediction only, both (RGB).
GT_COLOUR = (255, 200, 0)
PRED_COLOUR = (0, 160, 255)
BOTH_COLOUR = (60, 220, 90)
THUMBNAIL = 256


@dataclass(frozen=True)
class GallerySample:
    """One sample shown in the gallery.

    Attributes:
        image: (H, W, 3) uint8.
        truth: (H, W) bool ground truth at the image's size.
        prediction: (H, W) bool prediction at the image's size.
    """

    sample_id: str
    sentence: str
    iou: float
    image: np.ndarray
    truth: np.ndarray
    prediction: np.ndarray
    category: str | None = None


def overlay(image: np.ndarray, truth: np.ndarray, prediction: np.ndarray) -> np.ndarray:
    """Blend ground truth, prediction and their overlap in three colours over ``image``.

    Args:
        image: (H, W, 3) uint8.
        truth: (H, W) ground truth; prediction: (H, W) prediction (both read as bool).

    Returns:
        (H, W, 3) uint8.
    """
    truth, prediction = truth.astype(bool), prediction.astype(bool)
    out = image.astype(np.float32).copy()
    for region, colour in (
        (truth & ~prediction, GT_COLOUR),
        (prediction & ~truth, PRED_COLOUR),
        (truth & prediction, BOTH_COLOUR),
    ):
        out[region] = 0.45 * out[region] + 0.55 * np.asarray(colour, np.float32)
    return np.rint(out).clip(0, 255).astype(np.uint8)


def _png_data_uri(array: np.ndarray) -> str:
    picture = Image.fromarray(array)
    picture.thumbnail((THUMBNAIL, THUMBNAIL))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _bar_chart(values: Mapping[str, float], title: str) -> str:
    """Horizontal bars of values in [0, 100], as inline SVG."""
    row, label_width, bar_width = 22, 190, 360
    height = row * len(values) + 30
    parts = [
        f'<svg role="img" aria-label="{html.escape(title)}" width="{label_width + bar_width + 60}"'
        f' height="{height}" xmlns="http://www.w3.org/2000/svg">'
    ]
    for index, (name, value) in enumerate(values.items()):
        y = 20 + index * row
        width = bar_width * max(0.0, min(value, 100.0)) / 100.0
        parts.append(
            f'<text x="{label_width - 6}" y="{y + 14}" text-anchor="end">{html.escape(name)}</text>'
            f'<rect x="{label_width}" y="{y + 2}" width="{width:.1f}" height="{row - 6}" '
            f'fill="#3b82c4"/><text x="{label_width + width + 4:.1f}" y="{y + 14}">{value:.2f}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _histogram(ious: Sequence[float], bins: int = 10) -> str:
    """IoU histogram: samples per 0.1-wide bin (the last bin includes IoU = 1), as inline SVG.

    ``ious`` are in [0, 1]; the axis and the bar titles are ×100, like every other figure of the
    report (the metric table, the per-category chart, the gallery's captions).
    """
    # Bin k holds k/bins <= IoU < (k+1)/bins: an IoU of exactly 0.3 is in the 0.3 bin (as it
    # counts for Pr@0.3), which float bin edges (0.30000000000000004) would get wrong.
    values = np.asarray(ious, dtype=np.float64)
    which = np.clip(np.floor(values * bins + 1e-9).astype(np.int64), 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    peak = max(int(counts.max()) if counts.size else 0, 1)
    width, height, bar, top = 440, 180, 40, 22
    parts = [
        f'<svg role="img" aria-label="IoU histogram" width="{width}" height="{height + top + 44}" '
        'xmlns="http://www.w3.org/2000/svg">'
    ]
    for index, count in enumerate(counts):
        h = height * int(count) / peak
        x = 10 + index * (bar + 2)
        parts.append(
            f'<rect x="{x}" y="{top + height - h:.1f}" width="{bar}" height="{h:.1f}" '
            f'fill="#c46a3b"><title>IoU ×100 {_tick(index, bins)}–{_tick(index + 1, bins)}: '
            f"{int(count)} samples</title></rect>"
            f'<text x="{x + bar / 2}" y="{top + height - h - 4:.1f}" text-anchor="middle">'
            f"{int(count)}</text>"
            f'<text x="{x}" y="{top + height + 16}" text-anchor="middle">{_tick(index, bins)}</text>'
        )
    parts.append(
        f'<text x="{10 + bins * (bar + 2)}" y="{top + height + 16}" text-anchor="middle">'
        f"{_tick(bins, bins)}</text>"
        f'<text x="{width / 2}" y="{top + height + 36}" text-anchor="middle">'
        "IoU ×100 (bars: samples per bin)</text></svg>"
    )
    return "".join(parts)


def _tick(edge: int, bins: int) -> str:
    """Bin edge ``edge`` of ``bins`` on the ×100 scale: 0, 10, ... 100 for ten bins."""
    return f"{100 * edge / bins:g}"


def _gallery(title: str, samples: Sequence[GallerySample], empty: str = "") -> str:
    if not samples:
        return f"<h2>{html.escape(title)}</h2><p>{html.escape(empty)}</p>"
    cards = []
    for sample in samples:
        category = f" · {html.escape(sample.category)}" if sample.category else ""
        cards.append(
            '<figure class="card">'
            f'<img alt="image {html.escape(sample.sample_id)}" src="{_png_data_uri(sample.image)}">'
            f'<img alt="overlay {html.escape(sample.sample_id)}" '
            f'src="{_png_data_uri(overlay(sample.image, sample.truth, sample.prediction))}">'
            f"<figcaption><b>IoU {100 * sample.iou:.2f}</b>{category}<br>"
            f"“{html.escape(sample.sentence)}”<br><small>{html.escape(sample.sample_id)}"
            "</small></figcaption></figure>"
        )
    return f'<h2>{html.escape(title)}</h2><div class="gallery">{"".join(cards)}</div>'


_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1200px}
table{border-collapse:collapse;margin-bottom:1em}
td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#f3f3f3}
.settings td,.settings th{text-align:left}.lead{font-size:1.1em}
svg text{font-size:12px;font-family:sans-serif}
.charts{display:flex;flex-wrap:wrap;gap:32px;align-items:flex-start}
.gallery{display:flex;flex-wrap:wrap;gap:12px}.card{margin:0;width:524px}
.card img{width:256px;height:256px;object-fit:contain;background:#eee;margin-right:4px}
.legend span{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px}
"""


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], css: str = "") -> str:
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    css_class = f' class="{css}"' if css else ""
    return f"<table{css_class}><tr>{head}</tr>{body}</table>"


def _category_section(per_category: Mapping[str, Scores]) -> str:
    if not per_category:
        return ""
    rows = [
        [name, str(s.n), f"{s.miou:.2f}", f"{s.oiou:.2f}", f"{s.pr_at[0.5]:.2f}"]
        for name, s in per_category.items()
    ]
    chart = _bar_chart({name: s.miou for name, s in per_category.items()}, "mIoU per category")
    table = _table(["category", "n", "mIoU", "oIoU", "Pr@0.5"], rows)
    return f'<h2>Per category</h2><div class="charts"><div>{chart}</div>{table}</div>'


def render_report(
    *,
    title: str,
    scores: Scores,
    settings: Mapping[str, object],
    best: Sequence[GallerySample] = (),
    worst: Sequence[GallerySample] = (),
) -> str:
    """The report page as one HTML string (no scripts, no external assets).

    Args:
        title: the page heading.
        scores: the evaluation's scores; ``per_sample`` feeds the IoU histogram and
            ``per_category`` the bar chart and its table (both left out when empty).
        settings: what was evaluated (dataset, split, model, resolution, samples scored...);
            keys are shown with ``_`` as spaces, None values are left out.
        best: the gallery's best samples (IoU > 0); worst: its worst ones, none of them in
            ``best``.
    """
    figures = scores.figures()
    metric_table = _table(
        ["samples", *figures], [[str(scores.n), *(f"{v:.2f}" for v in figures.values())]]
    )
    setting_rows = [
        [key.replace("_", " "), str(value)] for key, value in settings.items() if value is not None
    ]
    legend = "".join(
        f'<span style="background:rgb{colour}"></span>{name}'
        for name, colour in (
            ("ground truth only", GT_COLOUR),
            ("prediction only", PRED_COLOUR),
            ("both", BOTH_COLOUR),
        )
    )
    galleries = ""
    if best or worst:
        # The best side holds only samples with IoU > 0 (GallerySelector.best): say so when
        # none has, rather than leave the heading out or show zeros as "best".
        galleries = (
            f'<p class="legend">{legend}</p>'
            f"{_gallery('Best samples', best, 'No sample has an IoU above 0.')}"
            f"{_gallery('Worst samples', worst) if worst else ''}"
        )
    ious = [sample.iou for sample in scores.per_sample]
    resolution = settings.get("resolution")
    lead = f"{scores.n} samples scored" + (f", {resolution} resolution" if resolution else "")
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
        f'<h1>{html.escape(title)}</h1><p class="lead">{html.escape(lead)}; every figure ×100.</p>'
        f"<h2>Metrics</h2>{metric_table}"
        f"{_category_section(scores.per_category)}"
        f"<h2>IoU distribution</h2>{_histogram(ious) if ious else '<p>no samples</p>'}"
        f"{galleries}<h2>Settings</h2>{_table(['setting', 'value'], setting_rows, 'settings')}"
        "</body></html>"
    )


def write_report(
    path: Path,
    *,
    title: str,
    scores: Scores,
    settings: Mapping[str, object],
    best: Sequence[GallerySample] = (),
    worst: Sequence[GallerySample] = (),
) -> Path:
    """Write :func:`render_report` to ``path`` (atomically) and return it."""
    page = render_report(title=title, scores=scores, settings=settings, best=best, worst=worst)
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(page, encoding="utf-8")
    partial.replace(path)
    return path
