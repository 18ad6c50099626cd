"""`dsedge bench [BUNDLE]`: every backend x precision x batch size against PyTorch eager FP32."""

from __future__ import annotations

from pathlib import Path

import typer

from dsedge.cli.app import app, console


@app.command("bench")
def bench_command(
    bundle: Path | None = typer.Argument(
        None, help="Bundle to bench. Without one: a random-init DS-ResNet50 bundle, synthetic INT8, latency only."
    ),
    checkpoint: Path | None = typer.Option(
        None, "--checkpoint", help="The checkpoint the bundle was exported from (PyTorch rows use its weights)."
    ),
    backends: str = typer.Option(
        "torch,torch-compile,onnxruntime,openvino,tensorrt", "--backends", help="Comma-separated backends."
    ),
    precisions: str = typer.Option("fp32,fp16,bf16,int8", "--precisions", help="Comma-separated precisions."),
    batch_sizes: str = typer.Option("1,8,32", "--batch-sizes", help="Comma-separated batch sizes."),
    warmup: int = typer.Option(1, "--warmup", help="Warm-up calls per row (compile time is reported apart)."),
    iters: int | None = typer.Option(None, "--iters", help="Fixed timed iterations per row (overrides --duration)."),
    duration: float = typer.Option(1.0, "--duration", help="Seconds of timed iterations per row (>= 3 iterations)."),
    threads: int | None = typer.Option(None, "--threads", help="CPU threads for every backend (default: all cores)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    data: Path | None = typer.Option(None, "--data", help="Dataset root: adds accuracy and agreement per row."),
    split: str = typer.Option("val", "--split", help="Split of --data to evaluate (val|test|train)."),
    out: Path = typer.Option(Path("bench_out"), "--out", help="Folder for bench.json, bench.md and plots."),
    image_size: int = typer.Option(224, "--image-size", help="Input size of the default random-init job."),
    compile_all: bool | None = typer.Option(
        None, "--compile-all/--quick-compile",
        help="torch.compile every precision and batch size (default: yes, except in the default job on CPU).",
    ),
) -> None:
    """Latency (mean/p50/p90/p99, throughput, speed-up) and, with --data, accuracy of every backend here."""
    from dsedge.bench.run import run_bench

    run_bench(
        bundle,
        checkpoint=checkpoint,
        backends=backends,
        precisions=precisions,
        batch_sizes=batch_sizes,
        warmup=warmup,
        iters=iters,
        duration=duration,
        threads=threads,
        device=device,
        data=data,
        split=split,
        out=out,
        image_size=image_size,
        compile_all=compile_all,
        console=console,
    )
