"""Training RSRefSeg (LoRA in its encoders) through the generic trainer: the frozen base stays
untouched, the folder holds only LoRA and heads and reloads to the trained model's outputs, a
trained folder is refused on another backbone, and the latent cache is refused in one line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import typer
from safetensors.torch import load_file
from typer.testing import CliRunner

from diffris.data.transforms import ResizeToModel
from diffris.errors import CheckpointMismatchError, InputError
from diffris.models.checkpoint import load_trained
from diffris.models.loading import load_model
from diffris.models.registry import build_model
from diffris.train import train
from diffris.train.data import open_split
from diffris.train.distributed import init_process, unused_parameters
from diffris.train.latents import build_latent_cache
from diffris.train.launch import prepare
from diffris.train.learnability import score_with_and_without_text
from diffris.train.trainer import Trainer
from diffris_cli.train import train as train_command
from tests.train.helpers import TEST_SIZES, quick_launch, small_config

PRESET = "rsrefseg-tiny"
#: Where a trained RSRefSeg folder may hold tensors: LoRA, the prompter, SAM's prompt encoder
#: and mask decoder.
HEADS = ("prompter.", "sam.prompt_encoder.", "sam.mask_decoder.")
TEXTS = ["the red roofs left of the river", "a small blue vehicle"]


@dataclass
class Trained:
    model: torch.nn.Module  # the trainer's model, as training left it
    run: Path
    root: Path  # the dataset


@pytest.fixture(scope="module")
def trained(synth_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trained]:
    """One epoch (4 steps) of rsrefseg-tiny through the Trainer, validated; the model kept."""
    config = small_config(synth_root, PRESET, epochs=1)
    output = tmp_path_factory.mktemp("rsrefseg-run") / "run"
    config, run, launch = prepare(config, output, quick_launch(), resume=False, overwrite=False)
    trainer = Trainer(init_process(0, 1, 0, use_cuda=False), config, run, launch)
    assert trainer.fit(resume=False).finished
    yield Trained(model=trainer.model, run=output, root=synth_root)


def test_training_leaves_the_frozen_base_untouched(trained: Trained) -> None:
    fresh = build_model(PRESET, seed=0)
    after, before = trained.model.state_dict(), fresh.state_dict()
    trainable = trained.model.trainable_state_dict()
    tied = {t.untyped_storage().data_ptr() for t in trainable.values()}
    frozen = [
        name
        for name, t in after.items()
        if name not in trainable and t.untyped_storage().data_ptr() not in tied
    ]
    assert {"siglip.logit_scale", "siglip.logit_bias"} <= set(frozen)
    assert any(name.endswith("q_proj.base_layer.weight") for name in frozen)
    assert any(name.startswith("sam.vision_encoder.") for name in frozen)
    assert [name for name in frozen if not torch.equal(after[name], before[name])] == []
    # ... while LoRA (both encoders and the text tower) and the heads moved
    moved = {name for name in trainable if not torch.equal(trainable[name], before[name])}
    for part in ("sam.vision_encoder.", "siglip.vision_model.", "siglip.text_model.", *HEADS):
        assert any(name.startswith(part) for name in moved), part
    assert any(".lora_B." in name for name in moved)


def test_the_folder_holds_only_lora_and_heads_and_reloads_to_the_same_outputs(
    trained: Trained,
) -> None:
    stored = load_file(trained.run / "last" / "model.safetensors")
    assert stored.keys() == trained.model.trainable_state_dict().keys()
    assert all(".lora_" in name or name.startswith(HEADS) for name in stored)
    assert not [n for n in stored if "base_layer" in n or n.startswith("siglip.logit")]

    reloaded = load_model(trained.run / "last")
    model = trained.model.eval()
    pixels = torch.rand((2, 3, 64, 64), generator=torch.Generator().manual_seed(2)) * 2 - 1
    with torch.no_grad():
        assert torch.equal(reloaded(pixels, TEXTS), model(pixels, TEXTS))
        untrained = build_model(PRESET, seed=0).eval()
        assert not torch.equal(untrained(pixels, TEXTS), model(pixels, TEXTS))


def test_validation_and_the_text_check_score_a_trained_rsrefseg(trained: Trained) -> None:
    size = TEST_SIZES[PRESET]
    val = open_split("synthetic", trained.root, "val", ResizeToModel(size))
    true, shuffled = score_with_and_without_text(
        load_model(trained.run / "last"), val, batch_size=2
    )
    recorded = json.loads((trained.run / "last" / "metadata.json").read_text())["metrics"]
    assert true.n == shuffled.n == recorded["n"] == len(val)
    assert true.to_dict() == {k: v for k, v in recorded.items() if k != "split"}


def test_every_trainable_tensor_gets_a_gradient_so_ddp_needs_no_unused_search() -> None:
    assert unused_parameters(build_model(PRESET, seed=0).train()) == []


@pytest.mark.parametrize(("part", "name"), [("siglip", "SigLIP"), ("sam", "SAM")])
def test_a_trained_folder_on_another_backbone_is_refused_naming_the_part(
    trained: Trained, tmp_path: Path, part: str, name: str
) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    for item in (trained.run / "last").iterdir():
        (folder / item.name).write_bytes(item.read_bytes())
    config = json.loads((folder / "config.json").read_text())
    config["model"]["backbone"][f"{part}_fingerprint"] = "0" * 64
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointMismatchError) as err:
        load_model(folder)
    message = str(err.value)
    assert "\n" not in message and f"{PRESET} {name}" in message and str(folder) in message
    assert f"another {name} folder" in message
    other = "SAM" if part == "siglip" else "SigLIP"
    assert f"{PRESET} {other}" not in message


def test_cache_latents_is_one_line_before_anything_is_written(
    synth_root: Path, tmp_path: Path
) -> None:
    app = typer.Typer()
    app.command()(train_command)
    flags = ["--dataset", "synthetic", "--data-root", str(synth_root), "--preset", PRESET]
    flags += ["--image-size", "64", "--batch-size", "4", "--epochs", "1", "--cache-latents"]
    result = CliRunner().invoke(app, [*flags, "-o", str(tmp_path / "run")])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output
    assert (
        "--cache-latents" in lines[0] and PRESET in lines[0] and "drop --cache-latents" in lines[0]
    )
    assert not (tmp_path / "run").exists()
    # the library refuses it as early, and so does the cache itself given such a model
    config = small_config(synth_root, PRESET, cache_latents=True)
    with pytest.raises(InputError, match="--cache-latents"):
        train(config, tmp_path / "api", launch=quick_launch())
    assert not (tmp_path / "api").exists()
    dataset = open_split("synthetic", synth_root, "train", ResizeToModel(64))
    with pytest.raises(InputError, match="--cache-latents"):
        build_latent_cache(
            build_model(PRESET, seed=0),
            dataset,
            init_process(0, 1, 0, use_cuda=False),
            size=64,
            precision=config.precision,
            batch_size=2,
        )


def test_diffris_train_then_evaluate_with_the_trained_folder(
    synth_root: Path, tmp_path: Path
) -> None:
    from diffris_cli.app import app

    runner = CliRunner()
    run = tmp_path / "run"
    flags = ["train", "--dataset", "synthetic", "--data-root", str(synth_root), "--preset", PRESET]
    flags += ["--image-size", "64", "--batch-size", "4", "--device-batch", "2", "--epochs", "1"]
    flags += ["--lr", "1e-3", "--workers", "0", "--threads", "1", "-o", str(run)]
    result = runner.invoke(app, flags)
    assert result.exit_code == 0, result.output
    for folder in (run / "last", run / "best"):
        assert load_trained(folder).architecture == "rsrefseg"
    assert json.loads((run / "last" / "config.json").read_text())["preset"] == PRESET
    # --model takes the trained folder and finds its architecture in it
    evaluate = ["evaluate", "-d", "synthetic", "--data-root", str(synth_root), "--split", "val"]
    evaluate += ["--model", str(run / "best"), "--image-size", "64", "--json"]
    scored = runner.invoke(app, evaluate)
    assert scored.exit_code == 0, scored.output
    recorded = json.loads((run / "best" / "metadata.json").read_text())["metrics"]
    assert f'"mIoU": {recorded["mIoU"]}' in scored.output


def test_model_options_train_the_model_they_name_and_the_folder_records_them(
    synth_root: Path, tmp_path: Path
) -> None:
    from diffris_cli.app import app

    runner = CliRunner()
    flags = ["train", "--dataset", "synthetic", "--data-root", str(synth_root), "--preset", PRESET]
    flags += ["--image-size", "64", "--batch-size", "4", "--device-batch", "2", "--epochs", "1"]
    flags += ["--val-split", "", "--workers", "0", "--threads", "1"]
    options = ["--model-option", "lora_rank=4", "--model-option", "mask_padding=true"]
    result = runner.invoke(app, [*flags, *options, "-o", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    model = load_trained(tmp_path / "run" / "last")
    assert (model.config.lora_rank, model.config.mask_padding) == (4, True)
    lora_a = [t for n, t in model.trainable_state_dict().items() if ".lora_A." in n]
    assert lora_a and all(t.shape[0] == 4 for t in lora_a)
    # a misspelt name, a value the model refuses, and an option of the other architecture: one
    # line each, naming the option, and no run folder
    bad = {
        "lora_rnk=4": "lora_rnk",
        "lora_rank=0": "lora_rank",
        "lora_rank": "KEY=VALUE",
    }
    for option, named in bad.items():
        run = tmp_path / f"bad-{len(named)}-{option.count('=')}"
        result = runner.invoke(app, [*flags, "--model-option", option, "-o", str(run)])
        lines = result.output.strip().splitlines()
        assert result.exit_code != 0 and len(lines) == 1, result.output
        assert named in lines[0] and "Traceback" not in result.output
        assert not run.exists()
    diffris = [*flags[:6], "tiny", *flags[7:], "--model-option", "lora_rank=4"]
    result = runner.invoke(app, [*diffris, "-o", str(tmp_path / "tiny")])
    assert result.exit_code != 0 and "not an option of tiny" in result.output
    assert "mask_threshold" in result.output and not (tmp_path / "tiny").exists()
