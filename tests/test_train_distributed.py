"""Scale-out: the sharded sampler, and a real 2-process gloo DDP run under torchrun on CPU."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

from dsedge.models.checkpoint import load_checkpoint
from dsedge.train.distributed import ShardedSampler, setup

LABELS = [0] * 6 + [1] * 8 + [2] * 5


def test_shards_are_disjoint_cover_and_equal_length():
    shards = [list(ShardedSampler(LABELS, r, 2, seed=1)) for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == 10  # 19 padded to 20
    assert set(shards[0]) | set(shards[1]) == set(range(19))
    ev = [list(ShardedSampler(LABELS, r, 2, shuffle=False, pad=False)) for r in range(2)]
    assert sorted(ev[0] + ev[1]) == list(range(19))  # evaluation: every sample exactly once


def test_order_depends_only_on_seed_and_epoch():
    a, b = ShardedSampler(LABELS, seed=7), ShardedSampler(LABELS, seed=7)
    a.set_epoch(3)
    b.set_epoch(3)
    assert list(a) == list(b)
    b.set_epoch(4)
    assert list(a) != list(b)
    assert list(ShardedSampler(LABELS, seed=8)) != list(ShardedSampler(LABELS, seed=7))


def test_balanced_sampler_draws_classes_equally():
    labels = [0] * 900 + [1] * 90 + [2] * 10
    s = ShardedSampler(labels, seed=0, balanced=True)
    counts = Counter(labels[i] for e in range(3) for i in (s.set_epoch(e), list(s))[1])
    assert all(abs(counts[c] / 3000 - 1 / 3) < 0.05 for c in range(3))


def test_sqrt_sampler_draws_classes_by_square_root_of_count():
    labels = [0] * 900 + [1] * 100
    s = ShardedSampler(labels, seed=0, balanced=True, balance_power=0.5)
    counts = Counter(labels[i] for e in range(4) for i in (s.set_epoch(e), list(s))[1])
    assert abs(counts[0] / 4000 - 30 / 40) < 0.04  # sqrt(900) : sqrt(100) = 30 : 10


def test_single_process_context(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    ctx = setup("cpu")
    assert ctx.world_size == 1 and ctx.is_main and not ctx.distributed and ctx.device.type == "cpu"


def test_two_process_gloo_ddp_run(tiny_isic: Path, tmp_path: Path):
    out = tmp_path / "runs"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        "-m", "dsedge", "train", "--data", str(tiny_isic), "--out", str(out),
        "--model", "ds_resnet50", "--image-size", "32", "--batch-size", "2", "--epochs", "2",
        "--max-train-batches", "2", "--no-compile", "--amp", "off", "--workers", "0", "--no-progress",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    runs = list(out.iterdir())
    assert len(runs) == 1, runs  # both ranks agreed on one run folder
    run = runs[0]
    resolved = json.loads((run / "config.json").read_text())["resolved"]
    assert resolved["world_size"] == 2 and resolved["backend"] == "gloo"
    rows = list(csv.DictReader((run / "history.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"]  # rank 0 wrote each epoch once
    _, meta = load_checkpoint(run / "last.safetensors")
    assert meta["metrics"]["n"] == 10  # validation gathered from both ranks, each image once
    assert "error" not in proc.stderr.lower()
