"""The recipe: defaults of the paper, batch arithmetic, YAML round trip, ablation switches."""

import pytest
import yaml

from diffris.errors import InputError
from diffris.models.diffris.tiny import tiny_head_configs
from diffris.train import Ablation, TrainConfig
from diffris.train.trainer import build_model


def test_defaults_are_the_papers() -> None:
    config = TrainConfig(data_root="/data/RISBench")
    assert (config.epochs, config.batch_size, config.image_size) == (40, 32, 512)
    assert (config.lr, config.weight_decay, config.poly_power) == (5e-5, 0.01, 0.9)
    assert config.preset == "sd15" and config.precision.value == "fp32"


def test_global_batch_is_split_over_processes_and_micro_batches() -> None:
    config = TrainConfig(data_root="x", batch_size=32)
    assert config.for_world(8).device_batch == 4
    assert config.for_world(8).micro_batches(8) == 1
    small = config.replace(device_batch=2)
    assert small.micro_batches(8) == 2 and small.micro_batches(1) == 16
    with pytest.raises(InputError, match="not a multiple of 3 process"):
        config.for_world(3)
    with pytest.raises(InputError, match="--image-size 500 is not a multiple of 64"):
        TrainConfig(data_root="x", image_size=500)
    with pytest.raises(InputError, match="--dataset 'coco'"):
        TrainConfig(dataset="coco", data_root="x")


def test_yaml_round_trip_and_unknown_keys() -> None:
    config = TrainConfig(data_root="x", preset="tiny", ablation=Ablation(multi_scale=False))
    text = yaml.safe_dump(config.to_dict())
    assert TrainConfig.from_dict(yaml.safe_load(text)) == config
    with pytest.raises(InputError, match="unknown TrainConfig option"):
        TrainConfig.from_dict({**config.to_dict(), "learning_rate": 1.0})


def test_ablation_switches_reach_the_model() -> None:
    config = TrainConfig(
        data_root="x",
        preset="tiny",
        ablation=Ablation(global_context=False, query_tokens=False, hard_assignment=False),
    )
    model = build_model(config)
    assert not model.config.cp_adapter.global_context
    assert model.config.cp_adapter.object_reasoning
    assert not model.config.pcmrd.query_tokens and not model.config.pcmrd.hard_assignment
    assert model.config.pcmrd.dim == tiny_head_configs()[1].dim  # the preset's sizes stay
