"""Training progress: a rich bar (epoch, step, loss, lr, samples/s, ETA) on a terminal, plain
log lines otherwise (every 30 s, and one per epoch with the validation scores)."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from diffris.train.events import EpochEvent, StepEvent
from diffris_cli.console import err_console

log = logging.getLogger("diffris.progress")

#: Seconds between plain progress lines when stderr is not a terminal.
LOG_EVERY_SECONDS = 30.0


def _eta(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


def _epoch_line(event: EpochEvent) -> str:
    scores = event.val
    text = f"epoch {event.epoch}/{event.epochs} done (step {event.step}): "
    text += f"train loss {event.train_loss:.4f}"
    if scores is not None:
        text += (
            f", val oIoU {scores['oIoU']:.2f}, mIoU {scores['mIoU']:.2f}, "
            f"Pr@0.5 {scores['Pr@0.5']:.2f} (n={scores['n']}); best epoch {event.best_epoch}"
        )
    if event.averaged_epochs is not None:
        first, last = event.averaged_epochs
        text += (
            f"; weights: mean of epochs {first}-{last}"
            if last > first
            else f"; weights: epoch {first}'s, averaging from here"
        )
    return text


@contextlib.contextmanager
def training_progress(*, quiet: bool = False) -> Iterator[Callable[[Any], None] | None]:
    """Yield the ``on_event`` callback for :func:`diffris.train.train` (None when quiet)."""
    if quiet:
        yield None
        return
    if err_console.is_terminal:
        columns = (
            TextColumn("[bold]epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("steps  loss {task.fields[loss]}  lr {task.fields[lr]}"),
            TextColumn("{task.fields[rate]} samples/s"),
            TimeElapsedColumn(),
            TextColumn("ETA {task.fields[eta]}"),
        )
        with Progress(*columns, console=err_console, transient=False) as bars:
            task = bars.add_task(
                "train", total=None, epoch="-", loss="-", lr="-", rate="-", eta="-"
            )

            def on_terminal(event: Any) -> None:
                if isinstance(event, StepEvent):
                    bars.update(
                        task,
                        completed=event.step,
                        total=event.total_steps,
                        epoch=f"{event.epoch}/{event.epochs}",
                        loss=f"{event.loss:.4f}",
                        lr=f"{event.lr:.2e}",
                        rate=f"{event.samples_per_s:.1f}",
                        eta=_eta(event.eta_s),
                    )
                elif isinstance(event, EpochEvent):
                    bars.console.print(_epoch_line(event), highlight=False)

            yield on_terminal
        return

    last = [0.0]

    def on_plain(event: Any) -> None:
        if isinstance(event, EpochEvent):
            log.info("%s", _epoch_line(event))
            return
        if not isinstance(event, StepEvent):
            return
        now = time.monotonic()
        if now - last[0] >= LOG_EVERY_SECONDS or event.step == event.total_steps:
            last[0] = now
            log.info(
                "epoch %d/%d step %d/%d: loss %.4f, lr %.2e, %.1f samples/s, ETA %s",
                event.epoch,
                event.epochs,
                event.step,
                event.total_steps,
                event.loss,
                event.lr,
                event.samples_per_s,
                _eta(event.eta_s),
            )

    yield on_plain
