"""Slow: the tiny model learns the synthetic task and uses the text.

Run with ``scripts/test --slow -k learnability`` (the figures: ``python benchmarks/learnability.py``).
"""

import importlib.util
from pathlib import Path

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


@pytest.mark.slow
def test_tiny_model_learns_and_uses_the_text(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location(
        "learnability", REPO / "benchmarks" / "learnability.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    figures = module.learnability(tmp_path, samples=1200, epochs=3, size=256, lr=3e-3)
    assert figures["miou"] >= 60, figures
    assert figures["miou"] - figures["shuffled_miou"] >= 30, figures
