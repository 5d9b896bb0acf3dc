"""Every architecture and its presets, under one registry.

An architecture is a module of ``diffris.models`` with one folder per architecture; its ``build``
module provides:

- ``PRESETS``: preset name -> builder ``(pretrained=..., seed=..., **options) -> model``;
- ``CONFIG_CLASS``: the config a trained folder's ``config.json`` holds for it;
- ``MODEL_CLASS``: the class its presets build (class-level facts, before building one);
- ``rebuild(config, *, pretrained, check_backbone, source)``: the model such a config describes
  (its preset's frozen backbone, checked against the recorded fingerprint, and fresh heads);
- ``build_on_meta(preset, **options)``: shapes and parameter counts without weights.

Nothing outside ``diffris.models`` asks which architecture it has: it builds and loads through
this module and uses the :class:`~diffris.models.interface.ReferringModel` it gets.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping
from types import ModuleType
from typing import Any

from diffris.errors import InputError
from diffris.models.interface import ReferringModel
from diffris.models.names import PRESET_ARCHITECTURES, PRESETS, Pretrained

#: Architecture name (as recorded in ``config.json``) -> the module that builds it.
ARCHITECTURES = {
    "diffris": "diffris.models.diffris.build",
    "rsrefseg": "diffris.models.rsrefseg.build",
}
#: Seed of the untrained heads of a preset loaded by name (:func:`diffris.models.loading.
#: load_model`), so that loading ``tiny`` twice gives the same outputs in every process.
PRESET_HEAD_SEED = 0


def architecture(name: str) -> ModuleType:
    """The build module of architecture ``name``.

    Raises:
        InputError: an architecture this diffris does not know.
    """
    if name not in ARCHITECTURES:
        raise InputError(
            f"unknown architecture {name!r}; this diffris builds: {', '.join(ARCHITECTURES)}"
        )
    return importlib.import_module(ARCHITECTURES[name])


def architecture_of(preset: str) -> str:
    """The architecture that builds ``preset``.

    Raises:
        InputError: an unknown preset.
    """
    if preset not in PRESET_ARCHITECTURES:
        raise InputError(f"unknown model {preset!r}; choose one of: {', '.join(PRESETS)}")
    return PRESET_ARCHITECTURES[preset]


def build_model(
    preset: str, *, pretrained: Pretrained = None, seed: int | None = None, **options: Any
) -> ReferringModel:
    """A model with fresh (untrained) heads on ``preset``'s frozen backbone.

    Args:
        preset: one of :data:`~diffris.models.names.PRESETS`.
        pretrained: folders of the frozen foundations (see :data:`~diffris.models.names.
            Pretrained`); None looks in the environment variables and the diffris cache.
        seed: initialise the heads from this seed (the global RNG untouched); None draws from
            the global RNG.
        **options: the architecture's model options.

    Raises:
        InputError: unknown preset or option.
        WeightsNotFoundError: the foundations' weights are not found or incomplete.
    """
    builder = architecture(architecture_of(preset)).PRESETS[preset]
    return builder(pretrained=pretrained, seed=seed, **options)


def build_on_meta(preset: str, **options: Any) -> ReferringModel:
    """``preset`` with every tensor on the ``meta`` device: shapes and counts, no files."""
    return architecture(architecture_of(preset)).build_on_meta(preset, **options)


class _Registry(Mapping[str, Callable[..., ReferringModel]]):
    """Preset name -> builder, importing an architecture only when one of its presets is used."""

    def __getitem__(self, preset: str) -> Callable[..., ReferringModel]:
        if preset not in PRESET_ARCHITECTURES:
            raise KeyError(preset)
        return architecture(PRESET_ARCHITECTURES[preset]).PRESETS[preset]

    def __iter__(self) -> Iterator[str]:
        return iter(PRESETS)

    def __len__(self) -> int:
        return len(PRESETS)


#: Preset name -> builder, over every architecture.
MODEL_REGISTRY: Mapping[str, Callable[..., ReferringModel]] = _Registry()


def build_for_training(config: Any) -> ReferringModel:
    """The untrained model a training config describes (preset, pretrained folders, the
    architecture's head options and ablations), heads seeded with ``config.seed``.

    Args:
        config: a :class:`diffris.train.config.TrainConfig`.
    """
    return architecture(architecture_of(config.preset)).build_for_training(config)


def image_features_frozen(preset: str) -> bool:
    """Whether ``preset``'s image features stay fixed while it trains (so that training may
    cache them), known without building the model.

    Raises:
        InputError: an unknown preset.
    """
    return bool(architecture(architecture_of(preset)).MODEL_CLASS.image_features_frozen)


def check_pretrained(preset: str, pretrained: Pretrained) -> None:
    """Refuse ``pretrained`` folders that ``preset`` cannot load, before a run starts.

    Raises:
        WeightsNotFoundError: naming the folder and what is missing.
        InputError: a form of ``pretrained`` the preset cannot use.
    """
    architecture(architecture_of(preset)).check_pretrained(preset, pretrained)
