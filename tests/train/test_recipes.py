"""Each architecture's training recipe is its presets' default; flags and YAML win over it."""

from __future__ import annotations

import logging
import math

import pytest
import yaml

from diffris.errors import InputError
from diffris.models.names import loss_weights, training_recipe
from diffris.train import TrainConfig
from diffris.train.config import SelectBy
from diffris.train.schedule import (
    PolySchedule,
    Schedule,
    WarmupCosineSchedule,
    make_schedule,
)
from diffris_cli.train import build_config


def test_diffris_presets_default_to_the_papers_recipe() -> None:
    config = TrainConfig(data_root="x", preset="tiny")
    assert (config.epochs, config.batch_size, config.image_size) == (40, 32, 512)
    assert (config.lr, config.weight_decay) == (5e-5, 0.01)
    assert config.schedule is Schedule.POLY and config.warmup_epochs == 0
    assert (config.bce_weight, config.dice_weight) == (1.0, 1.0)
    assert config.select_by is SelectBy.OIOU


def test_rsrefseg_presets_default_to_the_authors_recipe() -> None:
    config = TrainConfig(data_root="x", preset="rsrefseg-tiny")
    assert (config.epochs, config.batch_size, config.image_size) == (200, 32, 1024)
    assert (config.lr, config.weight_decay) == (1e-4, 0.05)
    assert config.schedule is Schedule.WARMUP_COSINE and config.warmup_epochs == 5
    assert (config.warmup_start, config.final_lr_ratio) == (0.01, 1e-3)
    assert (config.bce_weight, config.dice_weight) == (5.0, 0.0)
    assert config.select_by is SelectBy.MIOU
    assert TrainConfig(data_root="x", preset="rsrefseg-l").to_dict() == {
        **config.to_dict(),
        "preset": "rsrefseg-l",
    }


def test_fields_given_win_over_the_recipe() -> None:
    config = TrainConfig(
        data_root="x", preset="rsrefseg-tiny", lr=3e-4, epochs=2, select_by="oIoU", dice_weight=1
    )
    assert (config.lr, config.epochs, config.select_by) == (3e-4, 2, SelectBy.OIOU)
    assert (config.weight_decay, config.bce_weight, config.dice_weight) == (0.05, 5.0, 1)
    # another schedule than the recipe's brings no warm-up of its own
    assert TrainConfig(data_root="x", preset="rsrefseg-tiny", schedule="poly").warmup_epochs == 0
    tiny = TrainConfig(data_root="x", preset="tiny", schedule="warmup-cosine", warmup_epochs=0.5)
    assert tiny.schedule is Schedule.WARMUP_COSINE and tiny.warmup_epochs == 0.5


def test_a_partial_yaml_is_resolved_and_the_saved_config_round_trips() -> None:
    partial = {"dataset": "synthetic", "data_root": "x", "preset": "rsrefseg-tiny", "lr": 2e-4}
    config = TrainConfig.from_dict(yaml.safe_load(yaml.safe_dump(partial)))
    saved = config.to_dict()
    assert saved["schedule"] == "warmup-cosine" and saved["select_by"] == "mIoU"
    assert saved["lr"] == 2e-4 and saved["image_size"] == 1024
    assert None not in {saved[name] for name in ("epochs", "warmup_epochs", "bce_weight")}
    mapping = config.replace(pretrained={"siglip": "/w/siglip", "sam": "/w/sam"})
    assert TrainConfig.from_dict(yaml.safe_load(yaml.safe_dump(mapping.to_dict()))) == mapping


def test_the_warmup_cosine_schedule_matches_a_hand_computation() -> None:
    schedule = WarmupCosineSchedule(1e-4, total_steps=110, warmup_steps=10)
    assert schedule.lr(0) == pytest.approx(1e-6)  # 0.01 x
    assert schedule.lr(5) == pytest.approx(1e-4 * (0.01 + 0.99 * 0.5))
    assert schedule.lr(10) == pytest.approx(1e-4)  # the peak, where the cosine starts
    assert schedule.lr(60) == pytest.approx(1e-4 * (1e-3 + (1 - 1e-3) * 0.5))  # half-way
    assert schedule.lr(35) == pytest.approx(
        1e-4 * (1e-3 + (1 - 1e-3) * (1 + math.cos(math.pi / 4)) / 2)
    )
    assert schedule.lr(110) == pytest.approx(1e-7)  # 1e-3 x at the end
    assert schedule.lr(500) == pytest.approx(1e-7)
    assert schedule.state_dict() == {
        "base_lr": 1e-4,
        "total_steps": 110,
        "warmup_steps": 10,
        "warmup_start": 0.01,
        "final_ratio": 1e-3,
    }
    # a warm-up as long as the run only rises
    short = WarmupCosineSchedule(1e-4, total_steps=4, warmup_steps=8)
    assert [short.lr(s) for s in range(4)] == sorted(short.lr(s) for s in range(4))


def test_each_config_makes_its_schedule() -> None:
    rsrefseg = TrainConfig(data_root="x", preset="rsrefseg-tiny", epochs=10, warmup_epochs=2)
    schedule = make_schedule(rsrefseg, steps_per_epoch=3)
    assert schedule == WarmupCosineSchedule(1e-4, 30, warmup_steps=6)
    tiny = make_schedule(TrainConfig(data_root="x", preset="tiny", epochs=2), steps_per_epoch=5)
    assert tiny == PolySchedule(5e-5, 10, 0.9)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"schedule": "cosine"}, "--schedule 'cosine' is not one of: poly, warmup-cosine"),
        ({"select_by": "dice"}, "--select-by 'dice' is not one of: oIoU, mIoU"),
        ({"schedule": "poly", "warmup_epochs": 5}, "--warmup-epochs 5 applies to --schedule"),
        ({"warmup_epochs": -1}, "--warmup-epochs -1 must be ≥ 0"),
        ({"preset": "rsrefseg-xl"}, "--preset 'rsrefseg-xl' is not one of: tiny, sd15"),
        ({"pretrained": "/w"}, "is a bare folder, but this model loads several foundations"),
        ({"pretrained": {"clip": "/w"}}, "give KEY=DIR with KEY one of sd15, siglip, sam"),
    ],
)
def test_bad_recipe_values_are_one_line(changes, message) -> None:
    values = {"data_root": "x", "preset": "rsrefseg-tiny", **changes}
    with pytest.raises(InputError, match=message):
        TrainConfig(**values)


def test_a_yaml_schedule_of_another_name_is_one_line() -> None:
    values = {"data_root": "x", "preset": "tiny", "schedule": "cosine"}
    with pytest.raises(InputError, match="schedule: 'cosine' is not a valid Schedule; valid: poly"):
        TrainConfig.from_dict(values)


def test_loss_names_map_to_each_recipes_weights() -> None:
    assert loss_weights("tiny", "bce") == {"bce_weight": 1.0, "dice_weight": 0.0}
    assert loss_weights("sd15", "bce+dice") == {"bce_weight": 1.0, "dice_weight": 1.0}
    assert loss_weights("rsrefseg-b", "bce") == {"bce_weight": 5.0, "dice_weight": 0.0}
    assert loss_weights("rsrefseg-tiny", "bce+dice") == {"bce_weight": 5.0, "dice_weight": 5.0}
    with pytest.raises(InputError, match="--loss 'dice' is not one of: bce, bce"):
        loss_weights("tiny", "dice")
    assert training_recipe("rsrefseg-b")["select_by"] == "mIoU"


def test_the_cli_loss_flag_beats_the_base_and_explicit_weights_beat_it() -> None:
    base = {"dataset": "synthetic", "data_root": "x", "preset": "rsrefseg-tiny"}
    config = build_config(base, {}, "bce+dice")
    assert (config.bce_weight, config.dice_weight) == (5.0, 5.0)
    # a saved config.yaml's resolved weights give way to --loss
    saved = build_config(base, {}).to_dict()
    assert (saved["bce_weight"], saved["dice_weight"]) == (5.0, 0.0)
    assert build_config(saved, {}, "bce+dice").dice_weight == 5.0
    explicit = build_config(base, {"dice_weight": 2.0}, "bce+dice")
    assert (explicit.bce_weight, explicit.dice_weight) == (5.0, 2.0)
    # the preset given as a flag decides which recipe --loss reads; sd15 without one
    assert build_config(base, {"preset": "tiny"}, "bce").bce_weight == 1.0
    no_preset = {"dataset": "synthetic", "data_root": "x"}
    assert build_config(no_preset, {}, "bce").to_dict()["dice_weight"] == 0.0


def test_a_warm_up_spanning_the_whole_run_is_named_when_the_run_is_prepared(
    tmp_path, caplog
) -> None:
    """RSRefSeg's recipe warms up for 5 epochs: on a 4-epoch run the learning rate would only
    rise; the run still starts, and the log says so and how to fix it."""
    from diffris.train.launch import prepare
    from tests.train.helpers import quick_launch, write_small_dataset

    short = TrainConfig(data_root="x", preset="rsrefseg-tiny", epochs=4)
    assert "spans the whole 4-epoch run" in (short.warmup_warning() or "")
    assert "--warmup-epochs 0.4" in (short.warmup_warning() or "")
    assert TrainConfig(data_root="x", preset="rsrefseg-tiny", epochs=6).warmup_warning() is None
    assert TrainConfig(data_root="x", preset="tiny", epochs=1).warmup_warning() is None
    root = write_small_dataset(tmp_path / "data")
    config = TrainConfig(
        dataset="synthetic",
        data_root=str(root),
        preset="rsrefseg-tiny",
        epochs=2,
        batch_size=4,
        image_size=64,
    )
    with caplog.at_level("WARNING", logger="diffris.train"):
        prepare(config, tmp_path / "run", quick_launch(), resume=False, overwrite=False)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == [config.warmup_warning()]
