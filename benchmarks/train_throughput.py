"""Training throughput (img/s) of plain eager PyTorch vs dsedge's default training path, in ONE run.

    python benchmarks/train_throughput.py --image-size 128 --batch-size 8 --steps 6 --rounds 3

Each variant trains DS-ResNet50 on a fixed synthetic batch (data loading is not
measured) with Adam + focal loss, exactly the step `dsedge.train.loop` runs:

- eager:    fp32, contiguous tensors, no torch.compile (a plain PyTorch training script)
- eager+amp+cl: bf16 autocast (where `resolve_amp("auto")` enables it) and channels_last
- default:  what `dsedge train` does by default on this device: amp auto, channels_last,
            `compile_scope` auto (fused/compiled SimAM on CPU, the whole model on CUDA) and
            `build_optimizer` (fused Adam)
- full compile (--full-compile): torch.compile of the whole model + amp + channels_last

Variants are warmed up first (the compile time is reported on its own), then
timed in interleaved rounds so that a noisy shared machine affects all of them
alike; the median round is reported. Output: a Markdown table on stdout and,
with --json, the raw numbers — rewritten (atomically) after every warm-up and
every round, with `"complete": false` until the end, so a run stopped by a time
limit (`benchmarks/gpu_check.py` gives each step one) keeps the rounds it did.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import torch


def cpu_name() -> str:
    """CPU model for the results table (same source as `dsedge doctor`)."""
    from dsedge.doctor import cpu_info

    return str(cpu_info()["model"])


def make_variant(name: str, model_name: str, device: torch.device, amp: str, channels_last: bool,
                 scope: str, image_size: int, batch: int, default: bool = False) -> dict[str, Any]:
    """One training step closure; `scope` is 'off', 'simam' or 'model' as in `compile_scope`."""
    from dsedge.config import TrainConfig
    from dsedge.models.zoo import create_model
    from dsedge.train.fused import fuse_simam_for_training
    from dsedge.train.loop import build_optimizer, resolve_amp
    from dsedge.train.loss import FocalLoss

    torch.manual_seed(0)
    model = create_model(model_name, 3).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    # the plain variants use PyTorch's default Adam; dsedge's default path uses its own optimizer setup
    opt = build_optimizer(TrainConfig(), model) if default else torch.optim.Adam(model.parameters(), lr=5e-4)
    if scope == "simam":
        fuse_simam_for_training(model)
    step_model = torch.compile(model) if scope == "model" else model
    amp_dtype = resolve_amp(amp, device)
    crit = FocalLoss([0.3, 0.2, 0.5]).to(device)
    x = torch.randn(batch, 3, image_size, image_size, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 3, (batch,), device=device)

    def step() -> None:
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            out = step_model(x)
        loss = crit(out, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return {"name": name, "step": step, "amp": str(amp_dtype).replace("torch.", "") if amp_dtype else "off",
            "channels_last": channels_last, "compile": scope}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def snapshot(variants: list[dict[str, Any]], dev_name: str, args: argparse.Namespace, complete: bool) -> dict:
    """The JSON of the run so far: each variant's warm-up, rates and median (None before its first round)."""
    rows = []
    for v in variants:
        med = statistics.median(v["rates"]) if v.get("rates") else None
        rows.append({k: v.get(k) for k in ("name", "amp", "channels_last", "compile", "warmup_s")}
                    | {"rates": list(v.get("rates", [])), "median": med})
    return {"device": dev_name, "args": vars(args), "complete": complete, "variants": rows}


def write_json(path: str | None, data: dict) -> None:
    """Write `data` atomically to `path` (nothing when no --json): temp file, then rename."""
    if not path:
        return
    target = Path(path)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2), encoding="utf-8")
    os.replace(tmp, target)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="ds_resnet50")
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--steps", type=int, default=6, help="timed steps per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--full-compile", action="store_true",
                    help="also time torch.compile of the whole model (minutes of compile on small CPUs)")
    ap.add_argument("--json", default=None, help="also write raw results to this file")
    args = ap.parse_args(argv)

    from dsedge.config import TrainConfig
    from dsedge.train.distributed import resolve_device
    from dsedge.train.loop import compile_scope

    device = resolve_device(args.device)
    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    default_scope = compile_scope(TrainConfig(), device)
    specs = [("eager", "off", False, "off", False), ("eager+amp+cl", "auto", True, "off", False),
             (f"default (amp+cl+compile {default_scope}+fused Adam)", "auto", True, default_scope, True)]
    if args.full_compile and default_scope != "model":
        specs.append(("full compile+amp+cl", "auto", True, "model", False))
    variants = []
    for name, amp, cl, comp, default in specs:
        v = make_variant(name, args.model, device, amp, cl, comp, args.image_size, args.batch_size, default)
        t0 = time.perf_counter()
        for _ in range(args.warmup):
            v["step"]()
        sync(device)
        v["warmup_s"] = time.perf_counter() - t0
        v["rates"] = []
        variants.append(v)
        write_json(args.json, snapshot(variants, dev_name, args, complete=False))
        print(f"warmed up {name}: {v['warmup_s']:.1f}s", flush=True)
    for r in range(args.rounds):
        for v in variants:
            sync(device)
            t0 = time.perf_counter()
            for _ in range(args.steps):
                v["step"]()
            sync(device)
            v["rates"].append(args.steps * args.batch_size / (time.perf_counter() - t0))
            write_json(args.json, snapshot(variants, dev_name, args, complete=False))
        print(f"round {r + 1}: " + ", ".join(f"{v['name']} {v['rates'][-1]:.2f}" for v in variants), flush=True)

    base = statistics.median(variants[0]["rates"])
    print(f"\n{args.model}, train step (fwd+bwd+Adam), batch {args.batch_size}, {args.image_size}x{args.image_size}, "
          f"{dev_name}, torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print("| variant | amp | channels_last | compile | warm-up s | img/s (median) | rounds | vs eager |")
    print("|---|---|---|---|---|---|---|---|")
    for v in variants:
        med = statistics.median(v["rates"])
        print(f"| {v['name']} | {v['amp']} | {v['channels_last']} | {v['compile']} | {v['warmup_s']:.1f} | "
              f"{med:.2f} | {' / '.join(f'{x:.1f}' for x in v['rates'])} | {med / base:.2f}x |")
    write_json(args.json, snapshot(variants, dev_name, args, complete=True))


if __name__ == "__main__":
    main()
