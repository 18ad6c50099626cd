"""`dsedge bench [BUNDLE]`: every registered backend x precision x batch size against PyTorch eager FP32."""

from __future__ import annotations

from pathlib import Path

import typer

from dsedge.cli.app import app, console
from dsedge.engines import registry


@app.command("bench")
def bench_command(
    bundle: Path | None = typer.Argument(
        None, help="Bundle to bench. Without one: the shipped DS-ResNet50 (random init when none is shipped), "
        "exported and INT8-calibrated here.",
    ),
    checkpoint: Path | None = typer.Option(
        None, "--checkpoint", help="The checkpoint the bundle was exported from (PyTorch rows use its weights)."
    ),
    backends: str | None = typer.Option(
        None, "--backends",
        help=f"Comma-separated backends (default: every registered one: {', '.join(registry.names())}).",
    ),
    precisions: str = typer.Option("fp32,fp16,bf16,int8", "--precisions", help="Comma-separated precisions."),
    batch_sizes: str = typer.Option("1,8,32", "--batch-sizes", help="Comma-separated batch sizes."),
    reference: str = typer.Option("torch fp32", "--reference", help="Backend and precision every speed-up is relative to."),
    rounds: int = typer.Option(30, "--rounds", min=1, help="Interleaved timing rounds (every row in each, shuffled)."),
    min_rounds: int = typer.Option(5, "--min-rounds", min=1, help="Rounds run even past --time-cap."),
    time_cap: float = typer.Option(200.0, "--time-cap", min=0.0, help="Seconds of timed rounds after which no new round starts."),
    round_ms: float = typer.Option(100.0, "--round-ms", min=0.001, help="Milliseconds per row per round (sets its iterations)."),
    iters: int | None = typer.Option(None, "--iters", min=1, help="Fixed iterations per row per round (overrides --round-ms)."),
    warmup: int = typer.Option(1, "--warmup", min=0, help="Warm-up calls per row before the rounds (reported apart)."),
    gap_ms: float = typer.Option(
        20.0, "--gap-ms", min=0.0,
        help="Idle milliseconds before each row in each round (the previous row's thread pools stop spinning).",
    ),
    settle: int = typer.Option(1, "--settle", min=0, help="Untimed calls at the start of each row of short calls (2+ iterations) in each round."),
    max_spread: float = typer.Option(0.15, "--max-spread", min=0.0, help="IQR/p50 above which a row is unstable."),
    max_other_cpu: float = typer.Option(
        0.15, "--max-other-cpu", min=0.0, max=1.0, help="Share of the CPUs other processes may use before the machine counts as busy."
    ),
    option: list[str] = typer.Option(
        [], "--option", "-o", help="Backend option BACKEND.KEY=VALUE, repeatable (e.g. torch-compile.mode=max-autotune)."
    ),
    threads: int | None = typer.Option(None, "--threads", min=1, help="CPU threads for every backend (default: all cores)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    data: Path | None = typer.Option(
        None, "--data", help="Dataset root: adds accuracy and agreement per row (default job: $DSEDGE_ISIC2017)."
    ),
    split: str = typer.Option("val", "--split", help="Split of --data to evaluate (val|test|train)."),
    out: Path = typer.Option(Path("bench_out"), "--out", help="Folder for bench.json, bench.md and plots."),
    image_size: int = typer.Option(224, "--image-size", min=32, help="Input size of the random-init default job."),
    compile_all: bool | None = typer.Option(
        None, "--compile-all/--quick-compile",
        help="torch.compile every batch size, or the smallest only (default: every, except in the default job on CPU).",
    ),
) -> None:
    """Latency with spread and speed-up intervals from interleaved rounds, and with --data accuracy, per backend."""
    from dsedge.bench.rounds import RoundPlan
    from dsedge.bench.run import run_bench
    from dsedge.bench.stability import GuardLimits
    from dsedge.utils.io import check_output_dir

    check_output_dir(out, "bench output")  # before the run, not after it

    run_bench(
        bundle,
        checkpoint=checkpoint,
        backends=backends,
        precisions=precisions,
        batch_sizes=batch_sizes,
        reference=reference,
        plan=RoundPlan(rounds=rounds, min_rounds=min_rounds, time_cap_s=time_cap, round_ms=round_ms, iters=iters,
                       warmup=warmup, gap_ms=gap_ms, settle=settle),
        limits=GuardLimits(spread=max_spread, other_cpu=max_other_cpu),
        options=option,
        threads=threads,
        device=device,
        data=data,
        split=split,
        out=out,
        image_size=image_size,
        compile_all=compile_all,
        console=console,
    )
