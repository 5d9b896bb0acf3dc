"""The whole RSRefSeg through the real-weights path: the tiny preset's SigLIP (with its tokenizer)
and SAM saved as Hugging Face folders and read back as ``rsrefseg-b`` reads its folders
(:func:`load_components` + :func:`compose`) is the same model, bit for bit; a pickled weight file
in either folder stops ``load_model`` before anything is unpickled."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from diffris.errors import WeightsNotFoundError
from diffris.models.loading import load_model
from diffris.models.rsrefseg.build import build_rsrefseg, build_tiny_components, compose
from diffris.models.rsrefseg.folders import load_components, save_components

TEXTS = ["the red roofs left of the river", "a small blue vehicle"]


@pytest.fixture(scope="module")
def tiny_folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``rsrefseg-tiny``'s frozen SigLIP + tokenizer and SAM, saved in the Hugging Face layout."""
    root = tmp_path_factory.mktemp("rsrefseg-tiny-hf")
    return save_components(build_tiny_components(), root / "siglip", root / "sam")


def test_tiny_saved_as_folders_loads_back_bit_identical(tiny_folders: tuple[Path, Path]) -> None:
    siglip_dir, sam_dir = tiny_folders
    assert (siglip_dir / "model.safetensors").is_file() and (
        sam_dir / "model.safetensors"
    ).is_file()
    assert not [p for p in (*siglip_dir.iterdir(), *sam_dir.iterdir()) if p.suffix == ".bin"]
    preset = build_rsrefseg("rsrefseg-tiny", seed=0).eval()
    loaded = compose(load_components(*tiny_folders), preset="rsrefseg-tiny", seed=0).eval()

    # the same frozen weights, so the same identity (fingerprints of both parts, widths)
    assert loaded.config == preset.config
    assert loaded.config.backbone.fingerprint == preset.config.backbone.fingerprint != ""
    # every tensor, the fresh LoRA and heads from the same seed included
    ours, theirs = preset.state_dict(), loaded.state_dict()
    assert ours.keys() == theirs.keys()
    assert [name for name in ours if not torch.equal(ours[name], theirs[name])] == []
    assert loaded.tokenize(TEXTS).input_ids.tolist() == preset.tokenize(TEXTS).input_ids.tolist()

    pixels = torch.rand((2, 3, 64, 64), generator=torch.Generator().manual_seed(5)) * 2 - 1
    with torch.no_grad():
        expected = preset(pixels, TEXTS)
        assert torch.equal(loaded(pixels, TEXTS), expected)
    # the loaded frozen parts stay frozen: LoRA and the heads are the only trainable tensors
    trainable = {id(p) for p in loaded.trainable_parameters()}
    assert trainable == {id(p) for p in loaded.parameters() if p.requires_grad}
    assert not loaded.siglip.logit_scale.requires_grad


class _Marker:
    """Unpickling this creates ``path``: proof that a file was unpickled."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (open, (str(self.path), "w"))


@pytest.mark.parametrize("part", ["siglip", "sam"])
def test_load_model_refuses_a_pickle_only_folder_without_unpickling(
    tmp_path: Path, tiny_folders: tuple[Path, Path], part: str
) -> None:
    pickle.loads(pickle.dumps(_Marker(tmp_path / "twin")))
    assert (tmp_path / "twin").exists()  # the trap works

    marker = tmp_path / "unpickled"
    source = dict(zip(("siglip", "sam"), tiny_folders, strict=True))
    folder = tmp_path / part
    folder.mkdir()
    for item in source[part].iterdir():
        if item.suffix != ".safetensors":
            (folder / item.name).write_bytes(item.read_bytes())
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(_Marker(marker)))

    with pytest.raises(WeightsNotFoundError) as err:
        load_model("rsrefseg-b", pretrained={**source, part: str(folder)})
    message = str(err.value)
    assert "\n" not in message
    assert f"{folder}" in message and "only pickled weights (pytorch_model.bin)" in message
    assert not marker.exists()
