"""Training progress in a log file: throttled plain lines instead of a rich bar that draws nothing."""

from __future__ import annotations

import io

from dsedge.train.report import PlainProgress


def test_plain_progress_writes_the_first_the_last_and_throttled_lines_between() -> None:
    out = io.StringIO()
    with PlainProgress(interval=3600.0, stream=out) as bars:
        task = bars.add_task("epoch 1/3", total=10, loss="-", speed="-")
        for i in range(10):
            bars.update(task, completed=i + 1, loss=f"{1.0 / (i + 1):.4f}", speed="12.5")
        bars.remove_task(task)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2  # the first update and the completed one; the hour-long interval drops the rest
    assert "epoch 1/3 1/10 loss 1.0000 12.5 img/s" in lines[0]
    assert "epoch 1/3 10/10 loss 0.1000" in lines[1]


def test_plain_progress_with_no_interval_writes_every_update() -> None:
    out = io.StringIO()
    bars = PlainProgress(interval=0.0, stream=out)
    task = bars.add_task("epoch 2/3", total=4, loss="-", speed="-")
    for i in range(4):
        bars.update(task, completed=i + 1)
    assert len(out.getvalue().splitlines()) == 4
