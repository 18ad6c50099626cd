"""Progress for every bench phase: a spinner, the phase, a bar where the work is countable, elapsed time.

Export, calibration, torch.compile and the accuracy pass each take seconds to
minutes; a bench that sits silent for 20 seconds looks hung. Every phase runs
inside `BenchProgress.phase(...)`, whose spinner and clock keep moving (rich
refreshes the display ten times a second) even when the work itself cannot
report. The phase names are also kept in `phases`, so tests can check that
nothing ran unannounced.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)


class Phase:
    """What a phase's code gets: `phase(n)` advances the bar, `phase.note(text)` shows the current step."""

    def __init__(self, progress: Progress, task: TaskID, description: str) -> None:
        self._progress, self._task, self._description = progress, task, description

    def __call__(self, n: int = 1) -> None:
        self._progress.advance(self._task, n)

    def note(self, text: str) -> None:
        self._progress.update(self._task, description=escape(f"{self._description}: {text}"))


class BenchProgress:
    """One rich `Progress` for the whole run; `phase(name, total)` yields a `Phase`."""

    def __init__(self, console: Console, enabled: bool = True) -> None:
        self.phases: list[str] = []
        self._progress = Progress(
            SpinnerColumn(), TextColumn("{task.description}"), BarColumn(bar_width=24), MofNCompleteColumn(),
            TimeElapsedColumn(), console=console, transient=False, disable=not enabled,
        )

    def __enter__(self) -> BenchProgress:
        self._progress.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._progress.stop()

    @contextmanager
    def phase(self, description: str, total: int | None = None) -> Iterator[Phase]:
        """Show `description` until the block ends; `total` turns the spinner into a bar."""
        self.phases.append(description)
        task = self._progress.add_task(escape(description), total=total)
        try:
            yield Phase(self._progress, task, description)
        finally:
            done = total if total is not None else 1  # a finished phase shows as complete
            self._progress.update(task, total=done, completed=done)
            self._progress.stop_task(task)
