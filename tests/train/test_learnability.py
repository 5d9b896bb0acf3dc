"""Slow: each tiny preset learns the synthetic task and uses the text.

Run with ``scripts/test --slow -k learnability`` (the figures: ``python benchmarks/learnability.py
--preset P``). Each preset trains with its recipe, ``benchmarks/learnability.py``'s ``RECIPES``:
``tiny`` (DiffRIS): 1200 samples of 256² px, 3 epochs, lr 3e-3, batch 8, cached latents;
``rsrefseg-tiny``: 640 samples of 256² px, 4 epochs, lr 1e-3 (poly), batch 8 (no cache: LoRA in
its encoders): mIoU 76.7 true, 24.7 shuffled (710 s CPU).
"""

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from diffris.data.synthetic import write_dataset
from diffris.data.transforms import ResizeToModel
from diffris.train.data import open_split
from diffris.train.learnability import ShuffledSentences, derangement

REPO = Path(__file__).resolve().parents[2]


def test_shuffled_sentences_move_every_sentence(tmp_path: Path) -> None:
    assert all(i != j for i, j in enumerate(derangement(7, seed=3)))
    assert sorted(derangement(7, seed=3)) == list(range(7))
    root = tmp_path / "data"
    write_dataset(root, layout="risbench", samples=12, splits=(4, 4, 4), size=64)
    dataset = open_split("synthetic", root, "val", ResizeToModel(64))
    shuffled = ShuffledSentences(dataset, seed=1)
    for i in range(len(dataset)):
        assert shuffled[i]["sentence"] == dataset.records[shuffled.source[i]].sentence
        assert (shuffled[i]["mask"] == dataset[i]["mask"]).all()
        assert shuffled.meta(i) == dataset.meta(i)


def _benchmark() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "learnability", REPO / "benchmarks" / "learnability.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["tiny", "rsrefseg-tiny"])
def test_tiny_model_learns_and_uses_the_text(tmp_path: Path, preset: str) -> None:
    module = _benchmark()
    figures = module.learnability(tmp_path, preset=preset, **module.RECIPES[preset])
    assert figures["miou"] >= 60, figures
    assert figures["miou"] - figures["shuffled_miou"] >= 30, figures
