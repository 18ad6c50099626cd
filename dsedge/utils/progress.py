"""One progress display for long commands, in a terminal and in a pipe or log file alike.

rich's live displays (spinners, bars) draw nothing when stdout is not a terminal, so `dsedge
calibrate ... | tee log` sat silent for 16 minutes, `export` for 80 s and `models` for 25 s, and
looked hung. `progress(...)` gives a rich bar in a terminal and, anywhere else, plain lines on
stderr (stdout stays clean for `--json`):

    [   0s] export: loading the checkpoint
    [  12s] export: measuring parity 40/150
    [  80s] export: done

Lines are throttled (`interval`, 5 s by default) so a loop of 10,000 steps writes a few lines, not
10,000; a new step (`note`) is always written; and a heartbeat writes "still working" when a
single step runs longer than `interval` without reporting, so a log never goes quiet.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

DEFAULT_INTERVAL = 5.0


class Reporter:
    """What the work gets: `advance(n)` counts done units, `note(text)` names the current step,
    `set_total(n)` sets (or changes) how many units there are."""

    def __init__(self, description: str, total: int | None) -> None:
        self.description, self.total, self.completed, self.step = description, total, 0, ""

    def advance(self, n: int = 1) -> None:
        self.completed += n
        self._changed(step=False)

    def note(self, text: str) -> None:
        self.step = text
        self._changed(step=True)

    def set_total(self, total: int | None) -> None:
        self.total = total
        self._changed(step=False)

    def __call__(self, n: int = 1) -> None:  # usable where a `progress(n)` callback is expected
        self.advance(n)

    def _changed(self, step: bool) -> None:  # overridden by the two displays
        pass

    def text(self) -> str:
        count = f" {self.completed}/{self.total}" if self.total else (f" {self.completed}" if self.completed else "")
        return f"{self.description}{': ' + self.step if self.step else ''}{count}"


class _RichReporter(Reporter):
    def __init__(self, description: str, total: int | None, console: Console) -> None:
        super().__init__(description, total)
        self._bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(bar_width=24),
                             MofNCompleteColumn(), TimeElapsedColumn(), console=console, transient=True)
        self._task = self._bar.add_task(escape(description), total=total)

    def _changed(self, step: bool) -> None:
        label = f"{self.description}: {self.step}" if self.step else self.description
        self._bar.update(self._task, description=escape(label), completed=self.completed, total=self.total)

    def start(self) -> None:
        self._bar.start()

    def stop(self, ok: bool) -> None:  # noqa: ARG002 - same signature as the plain display
        self._bar.stop()


class _PlainReporter(Reporter):
    """Throttled lines on a text stream, with a heartbeat thread for long silent steps."""

    def __init__(self, description: str, total: int | None, stream: TextIO, interval: float) -> None:
        super().__init__(description, total)
        self._stream, self._interval = stream, interval
        self._t0 = self._last = time.monotonic()
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat, daemon=True)

    def _write(self, text: str) -> None:
        with self._lock:
            self._last = time.monotonic()
            self._stream.write(f"[{self._last - self._t0:5.0f}s] {text}\n")
            self._stream.flush()

    def _changed(self, step: bool) -> None:
        if step or time.monotonic() - self._last >= self._interval:
            self._write(self.text())

    def _heartbeat(self) -> None:
        while not self._done.wait(self._interval / 2):
            if time.monotonic() - self._last >= self._interval:
                self._write(f"{self.text()} (still working)")

    def start(self) -> None:
        self._write(self.text())
        self._beat.start()

    def stop(self, ok: bool) -> None:
        self._done.set()
        self._beat.join(timeout=1.0)
        if ok:
            self._write(f"{self.description}: done")


def is_terminal(console: Console | None = None) -> bool:
    """Whether a live display can be drawn (rich's own test: a TTY, not a dumb terminal, not Jupyter)."""
    return (console or Console(stderr=True)).is_terminal


@contextmanager
def progress(description: str, total: int | None = None, *, console: Console | None = None,
             stream: TextIO | None = None, interval: float = DEFAULT_INTERVAL,
             terminal: bool | None = None, enabled: bool = True) -> Iterator[Reporter]:
    """Show progress of a block of work; yields a `Reporter` (see the module docstring).

    `terminal` forces the display (tests); by default it follows `console` (stderr's console when
    none is given). Plain lines go to `stream` (default: stderr). `enabled=False` shows nothing.
    """
    if not enabled:
        yield Reporter(description, total)
        return
    console = console or Console(stderr=True)
    live = is_terminal(console) if terminal is None else terminal
    reporter: _RichReporter | _PlainReporter = (
        _RichReporter(description, total, console) if live
        else _PlainReporter(description, total, stream or sys.stderr, interval))
    reporter.start()
    ok = False
    try:
        yield reporter
        ok = True
    finally:
        reporter.stop(ok)
