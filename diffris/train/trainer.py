"""The training loop of one process: steps, validation, model folders and the resumable state.

One optimiser step consumes one global batch: each process runs ``micro_batches`` forward passes
of ``device_batch`` samples (its chunks, see :mod:`diffris.train.sampler`), each seeded from
(seed, step, chunk); the loss of a micro-batch is the *sum* of its per-sample losses times
``world / global_batch``, so after DDP's average over processes the gradient is exactly that of
the global-batch mean, whatever the split. Only the CP-adapter and the decoder are optimised; the
backbone stays frozen and in eval mode (:class:`~diffris.models.diffris.backbone.FrozenBackbone`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, DistributedSampler

from diffris.data.transforms import ResizeToModel, collate
from diffris.devices import Precision, autocast
from diffris.errors import TrainingDivergedError
from diffris.eval.evaluate import evaluation_loader, score_model
from diffris.eval.metrics import MetricAccumulator, merge_accumulators
from diffris.models.checkpoint import save_trained
from diffris.models.interface import ImageFeatures, ReferringModel, map_tensors
from diffris.models.registry import build_for_training
from diffris.train import state as state_io
from diffris.train.averaging import WeightAverage
from diffris.train.config import LaunchOptions, TrainConfig
from diffris.train.data import open_split
from diffris.train.distributed import (
    DistContext,
    all_sum,
    broadcast_from_main,
    gather_to_main,
    wrap_heads,
)
from diffris.train.events import EpochEvent, StepEvent, TrainResult
from diffris.train.latents import LatentCache, build_latent_cache, refuse_uncacheable
from diffris.train.losses import segmentation_loss
from diffris.train.run_folder import MetricsLog, RunFolder
from diffris.train.sampler import StepShardSampler
from diffris.train.schedule import chunk_seed, make_schedule

logger = logging.getLogger(__name__)


def build_model(config: TrainConfig) -> ReferringModel:
    """The untrained model of ``config``: preset backbone, heads seeded with ``config.seed``."""
    return build_for_training(config)


class Trainer:
    """Train one process' share of a run (rank 0 also writes the run folder).

    Args:
        ctx: this process.
        config: the run's config, ``device_batch`` resolved.
        run: the run folder (already created by the launcher).
        launch: process-independent run options.
        emit: rank 0's progress sink (None elsewhere).
    """

    def __init__(
        self,
        ctx: DistContext,
        config: TrainConfig,
        run: RunFolder,
        launch: LaunchOptions,
        emit: Callable[[Any], None] | None = None,
    ) -> None:
        assert config.device_batch is not None  # resolved by the launcher, not user input
        self.ctx, self.config, self.run, self.launch, self.emit = ctx, config, run, launch, emit
        self.device = ctx.device
        self.precision = config.precision
        self.model = build_model(config).to(self.device).train()
        if config.cache_latents:  # prepare() refused it already; a direct Trainer too
            refuse_uncacheable(config.preset, frozen=self.model.image_features_frozen)
        transform = ResizeToModel(config.image_size)
        self.train_set = open_split(config.dataset, config.data_root, config.train_split, transform)
        self.val_set = (
            open_split(config.dataset, config.data_root, config.val_split, transform)
            if config.val_split
            else None
        )
        self.sampler = StepShardSampler(
            self.train_set,
            global_batch=config.batch_size,
            device_batch=config.device_batch,
            num_replicas=ctx.world_size,
            rank=ctx.rank,
            seed=config.seed,
        )
        self.steps_per_epoch = self.sampler.steps_per_epoch
        self.total_steps = config.epochs * self.steps_per_epoch
        self.schedule = make_schedule(config, self.steps_per_epoch)
        # the validation score that picks best/ (the recipe's: DiffRIS oIoU, RSRefSeg mIoU)
        self.select_by = config.select_by.value  # type: ignore[union-attr]
        self.optimizer = torch.optim.AdamW(
            self.model.trainable_parameters(),
            lr=config.lr,
            betas=config.betas,
            eps=config.eps,
            weight_decay=config.weight_decay,
        )
        self.scaler = torch.amp.GradScaler(
            self.device.type, enabled=config.precision is Precision.FP16
        )
        self.cache: LatentCache | None = None
        self.metrics: MetricsLog | None = None
        # position and bookkeeping, all part of the saved state
        self.epoch = 0
        self.step_in_epoch = 0
        self.global_step = 0
        self.best: dict[str, Any] | None = None
        self.epoch_loss = [0.0, 0]  # sum of step losses, steps, in the current epoch
        self.saved_step: int | None = None
        self.average = WeightAverage()  # stays empty without config.average_from

    # -- the run --------------------------------------------------------------------------------

    def fit(self, *, resume: bool) -> TrainResult:
        """Train to the end (or ``launch.max_steps``), validating and saving on the way.

        With ``resume``, continue from the saved state (from step 0 if there is none yet).
        """
        started = time.perf_counter()
        # a run killed before its first save has no state: it starts again from step 0
        keep_bytes = self._restore() if resume and state_io.has_state(self.run.root) else None
        if self.ctx.is_main:
            self.metrics = MetricsLog(self.run.metrics, keep_bytes=keep_bytes)
        net = wrap_heads(self.model, self.ctx)
        if self.config.cache_latents:
            self.cache = build_latent_cache(
                self.model,
                self.train_set,
                self.ctx,
                size=self.config.image_size,
                precision=self.precision,
                batch_size=self.config.device_batch or 1,
                workers=self.launch.workers,
                file=self.run.latents,
            )
        stopped = False
        last_loss: float | None = None
        timer = _StepTimer(self.config.batch_size)
        try:
            while self.epoch < self.config.epochs and not stopped:
                batches = self._batches()
                while self.step_in_epoch < self.steps_per_epoch:
                    last_loss = self._step(net, batches, timer)
                    done = self.step_in_epoch == self.steps_per_epoch
                    stopped = self.launch.max_steps is not None and (
                        self.global_step >= self.launch.max_steps
                    )
                    if done:
                        break
                    if stopped or (
                        self.launch.save_every and self.global_step % self.launch.save_every == 0
                    ):
                        self._save_state()
                    if stopped:
                        break
                if self.step_in_epoch == self.steps_per_epoch:
                    self._finish_epoch()
                    timer.restart()  # validation is not a training step
        finally:
            if self.metrics is not None:
                self.metrics.close()
        return TrainResult(
            run=str(self.run.root),
            steps=self.global_step,
            epochs=self.epoch,
            best=self.best,
            last_loss=last_loss,
            seconds=round(time.perf_counter() - started, 2),
            finished=self.epoch >= self.config.epochs,
        )

    def _batches(self) -> Iterator[dict[str, Any]]:
        self.sampler.set_position(self.epoch, self.step_in_epoch)
        loader = DataLoader(
            self.train_set,  # type: ignore[arg-type]
            batch_size=self.config.device_batch,
            sampler=self.sampler,
            collate_fn=collate,
            num_workers=self.launch.workers,
            persistent_workers=False,
        )
        return iter(loader)

    def _step(
        self, net: torch.nn.Module, batches: Iterator[dict[str, Any]], timer: _StepTimer
    ) -> float:
        """One optimiser step over one global batch; returns its mean loss."""
        config, ctx = self.config, self.ctx
        lr = self.schedule.lr(self.global_step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        micro_batches = self.sampler.micro_batches
        for micro in range(micro_batches):
            batch = next(batches)
            torch.manual_seed(chunk_seed(config.seed, self.global_step, self.sampler.chunk(micro)))
            masks = batch["mask"].to(self.device)
            inputs, encoded = self._image_inputs(batch)
            tokens = self.model.tokenize(list(batch["sentence"]))
            last = micro == micro_batches - 1
            sync = contextlib.nullcontext() if last or not ctx.distributed else net.no_sync()  # type: ignore[operator]
            with sync:
                with autocast(self.device, self.precision):
                    logits = net(inputs, tokens, encoded=encoded)
                losses = segmentation_loss(
                    logits, masks, bce_weight=config.bce_weight, dice_weight=config.dice_weight
                )
                scaled = losses.sum() * (ctx.world_size / config.batch_size)
                self.scaler.scale(scaled).backward()
            total += losses.detach().sum().double()
        loss = float(all_sum(total, ctx).item()) / config.batch_size
        if not math.isfinite(loss):
            self.optimizer.zero_grad(set_to_none=True)
            self._save_state()
            raise TrainingDivergedError(
                f"the loss became {loss} at step {self.global_step + 1} (epoch {self.epoch + 1}); "
                f"training stopped. The last good state (before this step) is in "
                f"{self.run.root}/state; lower --lr or use --precision fp32 or bf16 in a new run"
            )
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.global_step += 1
        self.step_in_epoch += 1
        self.epoch_loss[0] += loss
        self.epoch_loss[1] += 1
        rate, eta = timer.tick(self.total_steps - self.global_step)
        if ctx.is_main:
            event = StepEvent(
                epoch=self.epoch + 1,
                epochs=config.epochs,
                step=self.global_step,
                total_steps=self.total_steps,
                loss=loss,
                lr=lr,
                samples_per_s=rate,
                eta_s=eta,
            )
            if self.metrics is not None and self.global_step % self.launch.log_every == 0:
                self.metrics.write({"type": "step", **dataclasses.asdict(event)})
            if self.emit is not None:
                self.emit(event)
        return loss

    def _image_inputs(self, batch: dict[str, Any]) -> tuple[torch.Tensor | ImageFeatures, bool]:
        """What the heads take for ``batch``: image features, or the pixels to encode.

        Frozen image features (DiffRIS's latent) come from the cache or are computed here, in
        float32 as the cache holds them; trainable ones (RSRefSeg's LoRA encoders) are computed
        inside the (DDP-wrapped) heads so that their gradients are reduced.
        """
        if self.cache is not None:
            return self.cache.get(batch["index"]).to(self.device), True
        pixels = batch["pixels"].to(self.device)
        if not self.model.image_features_frozen:
            return pixels, False
        with autocast(self.device, self.precision):
            features = self.model.encode_image(pixels)
        return map_tensors(features, lambda part: part.float()), True

    # -- epoch end ------------------------------------------------------------------------------

    def _finish_epoch(self) -> None:
        """Average (if due), validate, write ``last/`` (and ``best/``), log, save the state.

        Validation and the model folders see the weight average once averaging has begun;
        training goes on from the model's own weights.
        """
        finished_epoch = self.epoch + 1
        start = self.config.average_from
        if start is not None and finished_epoch >= start:
            self.average.add(self.model, finished_epoch)
        with self.average.applied(self.model):
            self._validate_and_save(finished_epoch)
        self.epoch += 1
        self.step_in_epoch = 0
        self.epoch_loss = [0.0, 0]
        self._save_state()

    def _validate_and_save(self, finished_epoch: int) -> None:
        scores = self._validate() if self._validation_due() else None
        train_loss = self.epoch_loss[0] / max(self.epoch_loss[1], 1)
        averaged = self.average.epochs
        improved = False
        key = self.select_by
        if scores is not None and (self.best is None or scores[key] > self.best["scores"][key]):
            improved = True
            self.best = {"epoch": finished_epoch, "step": self.global_step, "scores": scores}
        if not self.ctx.is_main:
            return
        metadata = {
            "training": {
                "dataset": self.config.dataset,
                "data_root": self.config.data_root,
                "epoch": finished_epoch,
                "step": self.global_step,
                "train_loss": train_loss,
                "averaged_epochs": list(averaged) if averaged else None,
                "config": self.config.to_dict(),
            },
            "metrics": {"split": self.config.val_split, **(scores or {})},
        }
        save_trained(self.model, self.run.last, metadata=metadata, overwrite=True)
        if improved:
            save_trained(self.model, self.run.best, metadata=metadata, overwrite=True)
        event = EpochEvent(
            epoch=finished_epoch,
            epochs=self.config.epochs,
            step=self.global_step,
            train_loss=train_loss,
            val=scores,
            best_epoch=self.best["epoch"] if self.best else None,
            averaged_epochs=averaged,
        )
        if self.metrics is not None:
            self.metrics.write({"type": "epoch", **dataclasses.asdict(event)})
        if self.emit is not None:
            self.emit(event)

    def _validation_due(self) -> bool:
        finished = self.epoch + 1
        return self.val_set is not None and (
            finished % self.config.val_every == 0 or finished == self.config.epochs
        )

    def _validate(self) -> dict[str, Any]:
        """Scores of the validation split, every rank scoring its shard; the same on all ranks."""
        assert self.val_set is not None
        sampler = (
            DistributedSampler(
                self.val_set,
                num_replicas=self.ctx.world_size,
                rank=self.ctx.rank,
                shuffle=False,
            )
            if self.ctx.distributed
            else None
        )
        loader = evaluation_loader(
            self.val_set,
            batch_size=self.config.device_batch or 1,
            workers=self.launch.workers,
            sampler=sampler,
        )
        accumulator = score_model(self.model, loader, device=self.device, precision=self.precision)
        gathered = gather_to_main(accumulator.to_dict(), self.ctx)
        scores = None
        if gathered is not None:
            merged = merge_accumulators(MetricAccumulator.from_dict(part) for part in gathered)
            scores = merged.result().to_dict()
        return broadcast_from_main(scores, self.ctx)

    # -- state ----------------------------------------------------------------------------------

    def _save_state(self) -> None:
        """Collect every rank's RNG and write the state (rank 0); a collective call."""
        rng_tensors, rng_plain = state_io.capture_rng(self.device)
        gathered = gather_to_main((rng_tensors, rng_plain), self.ctx)
        if gathered is None:
            return
        tensors = {
            f"model/{name}": t.detach().cpu().contiguous().clone()
            for name, t in self.model.trainable_state_dict().items()
        }
        optimizer_tensors, optimizer_plain = state_io.flatten_optimizer(self.optimizer.state_dict())
        tensors.update({f"optimizer/{k}": v.clone() for k, v in optimizer_tensors.items()})
        tensors.update({f"average/{k}": v for k, v in self.average.state_tensors().items()})
        plain_rng = {}
        for rank, (rank_tensors, rank_plain) in enumerate(gathered):
            tensors.update({f"rng/{rank}/{k}": v.contiguous() for k, v in rank_tensors.items()})
            plain_rng[str(rank)] = rank_plain
        meta = {
            "global_step": self.global_step,
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "world_size": self.ctx.world_size,
            "best": self.best,
            "average": self.average.state_meta(),
            "epoch_loss": self.epoch_loss,
            "metrics_bytes": self.metrics.size() if self.metrics is not None else 0,
            "optimizer": optimizer_plain,
            "scaler": self.scaler.state_dict(),
            "schedule": self.schedule.state_dict(),
            "rng": plain_rng,
        }
        state_io.save_state(self.run.root, tensors, meta)
        self.saved_step = self.global_step

    def _restore(self) -> int:
        """Load the saved state into this process; returns the metrics file's length then."""
        tensors, meta = state_io.load_state(self.run.root)
        self.model.load_trainable_state_dict(
            state_io.select(tensors, "model"), source=str(self.run.root / "state")
        )
        optimizer_state = state_io.unflatten_optimizer(
            state_io.select(tensors, "optimizer"), meta["optimizer"]
        )
        self.optimizer.load_state_dict(optimizer_state)
        if meta["scaler"]:
            self.scaler.load_state_dict(meta["scaler"])
        self.global_step = int(meta["global_step"])
        self.epoch = int(meta["epoch"])
        self.step_in_epoch = int(meta["step_in_epoch"])
        self.best = meta["best"]
        self.average.restore(
            state_io.select(tensors, "average"), meta.get("average"), device=self.device
        )
        self.epoch_loss = [float(meta["epoch_loss"][0]), int(meta["epoch_loss"][1])]
        self.saved_step = self.global_step
        rank = str(self.ctx.rank)
        if int(meta["world_size"]) == self.ctx.world_size and rank in meta["rng"]:
            state_io.restore_rng(
                state_io.select(tensors, f"rng/{rank}"), meta["rng"][rank], self.device
            )
        else:
            logger.info(
                "resuming %d process(es) from a state of %d: RNG states not restored (training "
                "randomness is re-seeded per micro-batch, so the losses are unaffected)",
                self.ctx.world_size,
                meta["world_size"],
            )
        logger.info(
            "resumed %s at epoch %d, step %d (%d of this epoch)",
            self.run.root,
            self.epoch + 1,
            self.global_step,
            self.step_in_epoch,
        )
        return int(meta["metrics_bytes"])


class _StepTimer:
    """Samples per second over recent steps, and the time left at that pace."""

    def __init__(self, global_batch: int, smoothing: float = 0.8) -> None:
        self.global_batch = global_batch
        self.smoothing = smoothing
        self.last = time.perf_counter()
        self.seconds_per_step: float | None = None

    def restart(self) -> None:
        """Measure the next step from now."""
        self.last = time.perf_counter()

    def tick(self, steps_left: int) -> tuple[float, float]:
        """Close a step; (samples per second, seconds left for ``steps_left`` steps)."""
        now = time.perf_counter()
        took, self.last = now - self.last, now
        if self.seconds_per_step is None:
            self.seconds_per_step = took
        else:
            self.seconds_per_step = (
                self.smoothing * self.seconds_per_step + (1 - self.smoothing) * took
            )
        pace = max(self.seconds_per_step, 1e-9)
        return self.global_batch / pace, steps_left * pace
