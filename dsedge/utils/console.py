"""`make_console`: the one way dsedge creates a rich Console (torch-free, below every stage).

`soft_wrap=True`, and when the console's file is not a terminal (`dsedge
predict ... | cat`, a log file, CI) a width of `PIPE_WIDTH` columns instead of
rich's default 80: off a terminal rich otherwise hard-wraps text and squeezes
tables to 80 columns, which split an error line, a path or a table row over
lines and broke scripts that grep the output (issue 26). A terminal keeps its
real width; `COLUMNS`, when set, wins as rich documents.
"""

from __future__ import annotations

import os
import sys
from typing import IO

from rich.console import Console

#: Columns of a console that is not a terminal: wide enough for any table row or path on one line.
PIPE_WIDTH = 10_000


def make_console(*, stderr: bool = False, file: IO[str] | None = None) -> Console:
    """A rich Console that never wraps lines when its output is not a terminal."""
    stream = file if file is not None else (sys.stderr if stderr else sys.stdout)
    isatty = getattr(stream, "isatty", None)
    terminal = bool(isatty and isatty())
    width = None if terminal or os.environ.get("COLUMNS") else PIPE_WIDTH
    return Console(file=file, stderr=stderr, soft_wrap=True, width=width)
