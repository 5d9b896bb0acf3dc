"""The committed demo model segments the bundled example scene: IoU ≥ 0.7 for every prompt.

The model is written by ``python tools/train_demo_model.py``; until it exists this test is
skipped (and says so), never faked.
"""

from pathlib import Path

import numpy as np
import pytest
import rasterio

from diffris.data.prompts import load_prompts
from diffris.inference.loading import load_predictor
from diffris.inference.segment import SegmentOptions, segment_scene

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
DEMO = EXAMPLES / "models" / "demo"


@pytest.mark.skipif(
    not (DEMO / "config.json").is_file(),
    reason="examples/models/demo is not trained yet: run python tools/train_demo_model.py",
)
def test_demo_model_segments_the_example_scene(tmp_path: Path) -> None:
    prompts = load_prompts(EXAMPLES / "prompts.yaml")
    predictor, model_id = load_predictor(DEMO, prompts, device="cpu")
    output = tmp_path / "masks.tif"
    segment_scene(
        EXAMPLES / "scene.tif", output, predictor, prompts, SegmentOptions(), model_id=model_id
    )
    with rasterio.open(output) as masks:
        predicted = masks.read()
    scores = {}
    for band, prompt in enumerate(prompts):
        with rasterio.open(EXAMPLES / "truth" / f"{prompt.id}.tif") as truth:
            expected = truth.read(1) == 1
        mask = predicted[band] == 1
        scores[prompt.id] = np.count_nonzero(mask & expected) / np.count_nonzero(mask | expected)
    assert all(iou >= 0.7 for iou in scores.values()), scores
