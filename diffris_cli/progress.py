"""Progress for long runs: a rich bar on a terminal, plain periodic log lines otherwise."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from diffris_cli.console import err_console

log = logging.getLogger("diffris.progress")

#: ``factory(label, total_hint)`` → ``update(done, total)``
ProgressFactory = Callable[[str, int], Callable[[int, int], None]]
LOG_EVERY_SECONDS = 30.0


class _Rate(TextColumn):
    """Items per second since the task started."""

    def __init__(self, unit: str) -> None:
        super().__init__("")
        self.unit = unit

    def render(self, task):  # type: ignore[no-untyped-def]
        from rich.text import Text

        speed = task.completed / task.elapsed if task.elapsed else 0.0
        return Text(f"{speed:.2f} {self.unit}/s", style="progress.data.speed")


@contextlib.contextmanager
def progress_bars(unit: str, *, quiet: bool = False) -> Iterator[ProgressFactory]:
    """Yield a factory of per-item progress callbacks (one bar or log stream per label)."""
    if quiet:
        yield lambda label, total: lambda done, total_: None
        return
    if err_console.is_terminal:
        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(unit),
            _Rate(unit),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=err_console, transient=False) as bars:

            def factory(label: str, total: int) -> Callable[[int, int], None]:
                task = bars.add_task(label, total=total or None)
                return lambda done, total_: bars.update(task, completed=done, total=total_)

            yield factory
        return

    def plain(label: str, total: int) -> Callable[[int, int], None]:
        started = time.monotonic()
        last = [started]

        def update(done: int, total_: int) -> None:
            now = time.monotonic()
            if now - last[0] >= LOG_EVERY_SECONDS or done == total_:
                last[0] = now
                rate = done / max(now - started, 1e-9)
                eta = (total_ - done) / rate if rate else float("nan")
                log.info(
                    "%s: %d/%d %s, %.2f %s/s, ETA %.0f s",
                    label,
                    done,
                    total_,
                    unit,
                    rate,
                    unit,
                    eta,
                )

        return update

    yield plain
