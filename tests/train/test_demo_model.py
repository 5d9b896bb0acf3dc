"""The committed demo models segment the bundled example scene: IoU ≥ 0.7 for every prompt.

Both demo folders are checked: ``examples/models/demo`` (DiffRIS, ``tiny``) and
``examples/models/demo-rsrefseg`` (RSRefSeg, ``rsrefseg-tiny``), each written by
``python tools/train_demo_model.py --preset P``; a folder not trained yet is skipped (and says
so), never faked. The prompts come from the example description file itself, so a prompt added
there is checked too.
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
#: Demo folder -> the preset that trains it.
DEMOS = {"demo": "tiny", "demo-rsrefseg": "rsrefseg-tiny"}
TARGET_IOU = 0.7
#: (demo folder, prompt) pairs measured below the target: strict expected failures, so that a
#: retrained model that reaches it turns them into errors to be removed from here.
BELOW_TARGET: dict[tuple[str, str], str] = {}
PROMPT_IDS = [prompt.id for prompt in load_prompts(EXAMPLES / "prompts.yaml")]


@pytest.fixture(scope="module", params=sorted(DEMOS))
def scene_ious(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, dict[str, float]]:
    """IoU of a demo model's mask against the ground truth, per prompt of the example file."""
    folder = EXAMPLES / "models" / request.param
    if not (folder / "config.json").is_file():
        pytest.skip(
            f"examples/models/{request.param} is not trained yet: run "
            f"python tools/train_demo_model.py --preset {DEMOS[request.param]}"
        )
    prompts = load_prompts(EXAMPLES / "prompts.yaml")
    predictor, model_id = load_predictor(folder, prompts, device="cpu")
    output = tmp_path_factory.mktemp(request.param) / "masks.tif"
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
    return request.param, scores


@pytest.mark.parametrize("prompt_id", PROMPT_IDS)
def test_demo_model_segments_the_example_scene(
    request: pytest.FixtureRequest, scene_ious: tuple[str, dict[str, float]], prompt_id: str
) -> None:
    demo, scores = scene_ious
    if (demo, prompt_id) in BELOW_TARGET:
        reason = BELOW_TARGET[(demo, prompt_id)]
        request.applymarker(pytest.mark.xfail(strict=True, reason=reason))
    assert scores[prompt_id] >= TARGET_IOU, scores
