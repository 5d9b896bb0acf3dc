"""What ``--resume`` restores besides the recipe: the launch options saved in ``config.yaml``.

A resumed run is bit-identical to an uninterrupted one only if it runs as the original did. Of
the launch options, the number of processes (``gpus``/``procs``, or torchrun's world), the
device kind, the torch thread count (it changes the CPU kernels' summation order: losses differ
in the last bit) and ``deterministic`` change the numbers; ``workers`` and ``save_every`` do not
(measured), but they are restored too, so that the run goes on as it was launched. ``max_steps``
is not restored: it is a stop of this invocation, not of the run.

An explicit different value is accepted (resuming on a smaller machine is legitimate) with a
warning that names it: the resumed losses may then differ from an uninterrupted run's in the last
bits. ``config.yaml`` keeps the original launch options.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch

from diffris.train.config import LaunchOptions
from diffris.train.run_folder import RunFolder, read_launch

logger = logging.getLogger(__name__)

#: Launch options whose change on resume may change the losses (see the module docstring).
NUMERIC_OPTIONS = ("gpus", "procs", "threads", "deterministic")


def default_threads(launch: LaunchOptions, world: int) -> int:
    """The torch thread count per process a launch without ``threads`` gets on this machine."""
    if launch.gpus == 0 and world > 1:
        local = min(world, int(os.environ.get("LOCAL_WORLD_SIZE", world)))
        return max(1, (os.cpu_count() or 1) // local)
    return torch.get_num_threads()


def with_threads(launch: LaunchOptions, world: int) -> LaunchOptions:
    """``launch`` with its thread count fixed, so that ``config.yaml`` records what ran."""
    if launch.threads is not None:
        return launch
    return launch.replace(threads=default_threads(launch, world))


def resume_launch(output: str | os.PathLike[str], **given: Any) -> LaunchOptions:
    """The saved launch options of the run in ``output`` with ``given`` (explicit flags) applied.

    Raises:
        DiffrisError: ``config.yaml`` is missing or malformed, or a given value is invalid.
    """
    saved, _ = read_launch(RunFolder(Path(output).expanduser()))
    return saved.replace(max_steps=None, **given)


def restored_launch(
    run: RunFolder, launch: LaunchOptions | None, *, world: int | None
) -> LaunchOptions:
    """The launch options of a resumed run: ``launch``, or the saved ones if None.

    Warns (one log line) for each option that differs from the saved run in a way that may change
    the numbers.

    Args:
        run: the run folder.
        launch: the options asked for (None: exactly the saved ones).
        world: processes under torchrun (None: ``launch.world_size``).
    """
    saved, saved_world = read_launch(run)
    resolved = saved.replace(max_steps=None) if launch is None else launch
    if resolved.threads is None:
        resolved = resolved.replace(threads=saved.threads)
    # under torchrun, torchrun's world replaces --gpus/--procs
    names = NUMERIC_OPTIONS if world is None else ("threads", "deterministic")
    changed = [
        f"--{name} {getattr(resolved, name)} (saved: {getattr(saved, name)})"
        for name in names
        if getattr(saved, name) is not None and getattr(resolved, name) != getattr(saved, name)
    ]
    this_world = world or resolved.world_size
    if world is not None and saved_world is not None and saved_world != this_world:
        changed.append(f"{this_world} processes (saved: {saved_world})")
    if changed:
        logger.warning(
            "resuming with %s: the losses may differ from an uninterrupted run's in the last bits",
            ", ".join(changed),
        )
    return with_threads(resolved, this_world)
