"""The committed demo model segments the bundled example scene: IoU ≥ 0.7 for every prompt.

The model is written by ``python tools/train_demo_model.py``; until it exists these tests are
skipped (and say so), never faked. The prompts come from the example description file itself, so
a prompt added there is checked too.
"""

from pathlib import Path

import pytest
import rasterio

from diffris.data.prompts import load_prompts
from diffris.eval.metrics import iou, iou_counts
from diffris.inference.loading import load_predictor
from diffris.inference.segment import SegmentOptions, segment_scene

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
DEMO = EXAMPLES / "models" / "demo"
TARGET_IOU = 0.7
PROMPT_IDS = [prompt.id for prompt in load_prompts(EXAMPLES / "prompts.yaml")]

pytestmark = pytest.mark.skipif(
    not (DEMO / "config.json").is_file(),
    reason="examples/models/demo is not trained yet: run python tools/train_demo_model.py",
)


@pytest.fixture(scope="module")
def scene_ious(tmp_path_factory: pytest.TempPathFactory) -> dict[str, float]:
    """IoU of the demo model's mask against the ground truth, per prompt of the example file."""
    prompts = load_prompts(EXAMPLES / "prompts.yaml")
    predictor, model_id = load_predictor(DEMO, prompts, device="cpu")
    output = tmp_path_factory.mktemp("demo") / "masks.tif"
    segment_scene(
        EXAMPLES / "scene.tif", output, predictor, prompts, SegmentOptions(), model_id=model_id
    )
    with rasterio.open(output) as masks:
        predicted = masks.read()
    scores = {}
    for band, prompt in enumerate(prompts):
        with rasterio.open(EXAMPLES / "truth" / f"{prompt.id}.tif") as truth:
            expected = truth.read(1) == 1
        scores[prompt.id] = iou(*iou_counts(predicted[band] == 1, expected))
    return scores


@pytest.mark.parametrize("prompt_id", PROMPT_IDS)
def test_demo_model_segments_the_example_scene(
    scene_ious: dict[str, float], prompt_id: str
) -> None:
    assert scene_ious[prompt_id] >= TARGET_IOU, scene_ious
