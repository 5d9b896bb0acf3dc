"""``train``: check everything a user can get wrong, set up the run folder, start the processes.

The checks (run folder rules, dataset layout, Stable Diffusion folder, batch arithmetic) happen
once, before any training process starts, so a mistake costs a second and one clear line rather
than a stack of tracebacks from eight processes. Under ``torchrun`` they happen on rank 0 after
the rendezvous, and every rank gets rank 0's verdict.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

import torch

from diffris.errors import DiffrisError, InputError, OutputNotWritableError
from diffris.train import state as state_io
from diffris.train.config import LaunchOptions, TrainConfig
from diffris.train.data import open_split
from diffris.train.distributed import (
    DistContext,
    Emit,
    broadcast_from_main,
    init_process,
    shutdown,
    spawn,
    torchrun_env,
)
from diffris.train.events import TrainResult
from diffris.train.latents import check_cache_latents
from diffris.train.resume import default_threads, restored_launch, with_threads
from diffris.train.run_folder import (
    RunFolder,
    check_run_folder,
    read_config,
    start_run_folder,
    write_config,
)

logger = logging.getLogger(__name__)


def differences(given: TrainConfig, saved: TrainConfig) -> list[str]:
    """The options of ``given`` that differ from ``saved``, as ``--flag given (saved: x)``.

    ``device_batch`` left unset (None) in ``given`` matches any saved value.
    """
    found = []
    for field in dataclasses.fields(TrainConfig):
        mine, theirs = getattr(given, field.name), getattr(saved, field.name)
        if field.name == "device_batch" and mine is None:
            continue
        if mine != theirs:
            flag = f"--{field.name.replace('_', '-')}"
            found.append(f"{flag} {_show(mine)} (saved: {_show(theirs)})")
    return found


def _show(value: Any) -> str:
    return str(value.value) if hasattr(value, "value") else str(value)


def check_pretrained(config: TrainConfig) -> None:
    """Refuse ``--pretrained`` folders that are missing or incomplete, before anything is written.

    Raises:
        WeightsNotFoundError: naming the folder and what is missing.
    """
    from diffris.models.registry import check_pretrained as check_foundations

    check_foundations(config.preset, config.pretrained)


def check_devices(launch: LaunchOptions, *, resume: bool) -> None:
    """Refuse more ``--gpus`` than this machine has, before anything is written.

    Raises:
        InputError: naming the count and the fix.
    """
    if launch.gpus == 0:
        return
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if launch.gpus > count:
        origin = "this run was launched with" if resume else "asked for"
        raise InputError(
            f"{origin} --gpus {launch.gpus} but this machine has {count} CUDA device(s); pass "
            "--gpus 0 to train on the CPU"
            + (" (the numbers then differ in the last bits)" if resume else "")
        )


def _check_state(run: RunFolder, config: TrainConfig, samples: int) -> None:
    """A resumed run's saved state, if any, must be intact and belong to this run."""
    if not state_io.has_state(run.root):
        logger.info("%s saved no training state yet: it starts again from step 0", run.root)
        return
    meta = state_io.read_pointer(run.root)
    state_io.check_position(
        run.root, meta, steps_per_epoch=samples // config.batch_size, epochs=config.epochs
    )
    state_io.verify_tensors(run.root, meta)


def prepare(
    config: TrainConfig | None,
    output: Path,
    launch: LaunchOptions | None,
    *,
    world_size: int | None = None,
    resume: bool,
    overwrite: bool,
) -> tuple[TrainConfig, RunFolder, LaunchOptions]:
    """Check the request and set up the run folder.

    Args:
        config: the recipe; None with ``resume`` (the saved one is used).
        output: the run folder.
        launch: how it runs; None with ``resume``: as saved (see :mod:`diffris.train.resume`).
        world_size: processes in total under torchrun; None: ``launch.world_size``.
        resume: continue the run saved in ``output`` (from step 0 if it saved no state yet).
        overwrite: replace a previous run in ``output``.

    Returns:
        The config with ``device_batch`` fixed, the run folder, the launch options with the
        thread count fixed.

    Raises:
        DiffrisError: one line naming what is wrong and the fix.
    """
    run = check_run_folder(output, resume=resume, overwrite=overwrite)
    launch = restored_launch(run, launch, world=world_size) if resume else launch or LaunchOptions()
    world = world_size or launch.world_size
    if world_size is None:
        check_devices(launch, resume=resume)
    if resume:
        saved = read_config(run)
        if config is not None and (changed := differences(config, saved)):
            raise InputError(
                f"--resume {output} continues the saved configuration, but these options differ: "
                f"{'; '.join(changed)}; drop them, or start a new run"
            )
        config = saved
        config.micro_batches(world)  # the saved device batch must fit this launch
    elif config is None:
        raise InputError("no training configuration given; pass --dataset and --data-root")
    else:
        config = config.for_world(world)
        launch = with_threads(launch, world)
    check_pretrained(config)
    check_cache_latents(config.preset, config.cache_latents)
    if (warning := config.warmup_warning()) and not resume:
        logger.warning(warning)
    train_set = open_split(config.dataset, config.data_root, config.train_split)
    if len(train_set) < config.batch_size:
        raise InputError(
            f"{config.data_root} has {len(train_set)} {config.train_split} samples, fewer than "
            f"one global batch; use --batch-size {len(train_set)} or less"
        )
    if config.val_split:
        open_split(config.dataset, config.data_root, config.val_split)
    if resume:
        _check_state(run, config, len(train_set))
    else:
        start_run_folder(run, overwrite=overwrite)
        try:
            write_config(run, config, launch, world)
        except OSError as err:
            raise OutputNotWritableError(
                f"cannot write {run.config}: {err.strerror or err}; free space or choose another -o"
            ) from err
    return config, run, launch


def run_worker(
    ctx: DistContext,
    config: TrainConfig,
    root: str,
    launch: LaunchOptions,
    resume: bool,
    *,
    emit: Emit | None = None,
) -> TrainResult:
    """One training process (module level, so that spawned processes can import it)."""
    from diffris.train.trainer import Trainer

    _set_threads(launch, ctx)
    if launch.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    if not ctx.is_main:  # rank 0 alone logs
        logging.getLogger("diffris").setLevel(logging.WARNING)
    trainer = Trainer(ctx, config, RunFolder(Path(root)), launch, emit)
    return trainer.fit(resume=resume)


def _set_threads(launch: LaunchOptions, ctx: DistContext) -> None:
    # prepare() fixed the count (and config.yaml records it), so a resumed run uses the same
    torch.set_num_threads(launch.threads or default_threads(launch, ctx.world_size))


def train(
    config: TrainConfig | None,
    output: str | os.PathLike[str],
    *,
    launch: LaunchOptions | None = None,
    resume: bool = False,
    overwrite: bool = False,
    on_event: Emit | None = None,
) -> TrainResult:
    """Train DiffRIS's CP-adapter and decoder; the run folder is ``output``.

    Starts ``launch.gpus`` CUDA processes or ``launch.procs`` CPU processes (one runs inline),
    or, under ``torchrun``, runs this process' rank.

    Args:
        config: the recipe (see :class:`TrainConfig`); None with ``resume``.
        output: the run folder (see :mod:`diffris.train.run_folder`).
        launch: processes, workers, threads, state-saving interval; None: the defaults, or with
            ``resume`` the saved ones (see :mod:`diffris.train.resume`).
        resume: continue the state saved in ``output`` exactly where it stopped (from step 0
            if it saved none yet).
        overwrite: replace an existing run in ``output``.
        on_event: receives rank 0's :class:`~diffris.train.events.StepEvent` and
            :class:`~diffris.train.events.EpochEvent` objects in this process.

    Returns:
        How the run ended (rank 0's view; under torchrun, each rank's).

    Raises:
        DiffrisError: a user error (one line), or :class:`TrainingDivergedError` on a NaN loss.
    """
    root = Path(output).expanduser()
    env = torchrun_env()
    if env is not None:
        return _train_torchrun(env, config, root, launch, resume, overwrite, on_event)
    config, run, launch = prepare(config, root, launch, resume=resume, overwrite=overwrite)
    world = launch.world_size
    if world == 1:
        ctx = init_process(0, 1, 0, use_cuda=launch.gpus > 0)
        return run_worker(ctx, config, str(run.root), launch, resume, emit=on_event)
    return spawn(
        run_worker,
        (config, str(run.root), launch, resume),
        nprocs=world,
        use_cuda=launch.gpus > 0,
        on_event=on_event,
    )


def _train_torchrun(
    env: tuple[int, int, int],
    config: TrainConfig | None,
    root: Path,
    launch: LaunchOptions | None,
    resume: bool,
    overwrite: bool,
    on_event: Emit | None,
) -> TrainResult:
    rank, world, local_rank = env
    ctx = init_process(rank, world, local_rank, use_cuda=torch.cuda.is_available())
    try:
        verdict: tuple[str, Any]
        if ctx.is_main:
            try:
                prepared, _, resolved_launch = prepare(
                    config, root, launch, world_size=world, resume=resume, overwrite=overwrite
                )
                verdict = ("ok", (prepared.to_dict(), resolved_launch.to_dict()))
            except DiffrisError as error:
                verdict = ("error", str(error))
                broadcast_from_main(verdict, ctx)
                raise
        verdict = broadcast_from_main(verdict if ctx.is_main else None, ctx)
        if verdict[0] == "error":
            raise DiffrisError(f"rank 0 refused the run: {verdict[1]}")
        resolved = TrainConfig.from_dict(verdict[1][0])
        options = LaunchOptions.from_dict(verdict[1][1])
        return run_worker(
            ctx, resolved, str(root), options, resume, emit=on_event if ctx.is_main else None
        )
    finally:
        shutdown()
