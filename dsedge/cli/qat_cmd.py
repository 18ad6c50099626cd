"""`dsedge qat CHECKPOINT --data DIR --out DIR`: quantization-aware fine-tuning when PTQ misses the budget."""

from __future__ import annotations

from pathlib import Path

import typer

from dsedge.cli.app import app, console


@app.command("qat")
def qat_command(
    checkpoint: Path = typer.Argument(..., help="The float checkpoint to fine-tune (a run folder's best.safetensors, "
                                      "or `isic2017`)."),
    data: Path = typer.Option(..., "--data", help="Dataset with a train split (its images drive the fine-tune; "
                              "the checkpoint's tuning slice is left out)."),
    out: Path = typer.Option(..., "--out", help="Where to write the fine-tuned float checkpoint."),
    bundle: Path | None = typer.Option(None, "--bundle", help="The checkpoint's exported bundle: activation scales "
                                       "start from dsedge's PTQ ranges (else max calibration)."),
    epochs: int = typer.Option(1, "--epochs", min=1),
    max_batches: int | None = typer.Option(None, "--max-batches", min=1, help="Batches per epoch (default: all)."),
    batch_size: int = typer.Option(16, "--batch-size", min=1),
    lr: float = typer.Option(1e-5, "--lr", min=0.0),
    loss: str = typer.Option("kd", "--loss", help="kd (match FP32's softmax: no labels) | logits (match FP32's "
                             "logits: weighs near-ties like sure images) | ce | kd+ce."),
    mixup: float = typer.Option(0.0, "--mixup", min=0.0,
                                help="Train on mixup blends of two images, Beta(a, a) weights (0 = off; 1 = uniform): "
                                "inputs the FP32 model is unsure of, where INT8 flips its decisions."),
    calib_images: int = typer.Option(
        512, "--calib-images", min=1,
        help="Images for the activation ranges; keep it equal to `dsedge calibrate --num-images` (512) so the INT8 "
        "file is made with the ranges QAT trained with."),
    method: str = typer.Option("percentile", "--method", help="PTQ range method with --bundle."),
    fake_quant: str = typer.Option("auto", "--fake-quant",
                                   help="auto (NVIDIA ModelOpt when installed, else torch) | modelopt | torch."),
    keep_float: str | None = typer.Option(
        None, "--keep-float",
        help="Layers without fake quantization (comma-separated: depthwise, head). Default: what `dsedge calibrate` "
        "keeps float by default (depthwise, head); 'none' fake-quantizes every Conv / Linear."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Fine-tune a checkpoint under INT8 fake quantization in TensorRT's form (symmetric, per-channel weights,
    per-tensor inputs of every Conv / Linear, SimAM float), distilling its own FP32 softmax.

    The result is the recipe of the bundle's INT8 file, not a new FP32 model (its float weights drift):
    `dsedge calibrate BUNDLE --data DIR --weights OUT` quantizes it with the bundle's ranges and measures
    every claim against the bundle's FP32 model (docs/CALIBRATION.md, "When PTQ cannot meet the budget")."""
    from dsedge.calibration.qat import QatConfig, qat_checkpoint
    from dsedge.errors import DsedgeError
    from dsedge.utils.progress import progress

    if loss not in ("kd", "logits", "ce", "kd+ce"):
        raise DsedgeError(f"--loss must be kd, logits, ce or kd+ce, not {loss!r}")
    if fake_quant not in ("auto", "modelopt", "torch"):
        raise DsedgeError(f"--fake-quant must be auto, modelopt or torch, not {fake_quant!r}")
    if keep_float is None:
        keep = QatConfig().keep_float
    else:
        keep = () if keep_float.strip() == "none" else tuple(t.strip() for t in keep_float.split(",") if t.strip())
    if set(keep) - {"depthwise", "head"}:
        raise DsedgeError(f"--keep-float takes depthwise, head or none, not {keep_float!r}")
    cfg = QatConfig(keep_float=keep, epochs=epochs, lr=lr, batch_size=batch_size, max_batches=max_batches, loss=loss,
                    mixup=mixup,
                    calib_images=calib_images, method=method, seed=seed, fake_quant=fake_quant)
    with progress("QAT", console=console) as shown:
        path = qat_checkpoint(checkpoint, data, out, cfg, bundle, on_step=shown.note)
    where = bundle if bundle is not None else "BUNDLE"
    console.print(f"wrote {path}; next: dsedge calibrate {where} --data {data} --weights {path}", highlight=False)
