"""`dsedge export CHECKPOINT --out BUNDLE`: ONNX (FP32 + FP16) bundle with a verified manifest."""

from __future__ import annotations

from pathlib import Path

import typer

from dsedge.cli.app import app, console


@app.command("export")
def export_command(
    checkpoint: Path | None = typer.Argument(
        None, help="Checkpoint (.safetensors or .json of a training run). Omit with --random-init."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Bundle folder to create."),
    model: str | None = typer.Option(
        None, "--model", help="Registry model name (with --random-init; with a checkpoint it must match)."
    ),
    random_init: bool = typer.Option(False, "--random-init", help="Export random weights (latency work)."),
    image_size: int | None = typer.Option(
        None, "--image-size", help="Input size H=W (default: the checkpoint's crop, else the model's)."
    ),
    data: Path | None = typer.Option(
        None, "--data", help="Dataset for the parity check on real images (else random inputs)."
    ),
    split: str = typer.Option("val", "--split", help="Split of --data used for parity."),
    parity_images: int = typer.Option(150, "--parity-images", min=1, help="Images for the parity check."),
    probs: bool = typer.Option(False, "--probs", help="Add a softmax output `probs` next to `logits`."),
    cam: bool = typer.Option(False, "--cam", help="Add a class-activation-map output `cam` (predict --heatmaps)."),
    inline_simam: bool = typer.Option(
        False, "--inline-simam", help="Also write model.inline.onnx with SimAM as plain ops (OpenVINO)."
    ),
    opset: int = typer.Option(18, "--opset", help="ONNX opset of the default domain."),
    force: bool = typer.Option(False, "--force", help="Replace an existing bundle folder (refused for a folder that holds anything but a dsedge bundle)."),
) -> None:
    """Export to ONNX with every SimAM as one dsedge::SimAM node, plus FP16, into a bundle."""
    from dsedge.bundle import load_bundle
    from dsedge.export import export_bundle
    from dsedge.export.safety import check_opset, check_replaceable
    from dsedge.utils.progress import progress

    check_opset(opset)
    check_replaceable(out, force)  # --force replaces a bundle, never a run folder or any other folder

    with progress("export", console=console) as shown:  # plain lines on stderr when piped
        path = export_bundle(
            checkpoint, out, model_name=model, random_init=random_init, image_size=image_size,
            data=data, split=split, parity_images=parity_images, probs=probs, cam=cam,
            inline_simam=inline_simam, force=force, opset=opset,
            progress=shown.note,
        )
    bundle = load_bundle(path)
    parity = bundle.parity
    src = parity["inputs"]
    where = (f"{src['count']} {src['split']} images" if src["kind"] == "images"
             else f"{src['count']} random inputs")
    console.print(f"[green]bundle[/] {path}  ({bundle.model_name}, "
                  f"{bundle.simam.get('calls')} dsedge::SimAM nodes)", highlight=False)
    console.print(f"parity vs PyTorch on {where}:", highlight=False)
    for name, entry in bundle.artifacts.items():
        if name not in parity["artifacts"]:
            console.print(f"  {name:<18} {entry['kind']}", highlight=False)  # MODEL_CARD.md
            continue
        p = parity["artifacts"].get(name, {})
        diff = p.get("max_abs_logit_diff")
        extra = f"  [yellow]{p['nonfinite_outputs']} non-finite outputs[/]" if p.get("nonfinite_outputs") else ""
        console.print(
            f"  {name:<18} {entry['precision']:<4} {entry['bytes'] / 1e6:6.1f} MB  "
            f"max|dlogit| {'n/a' if diff is None else f'{diff:.1e}'}  "
            f"top-1 {100 * p.get('top1_agreement', float('nan')):.1f}%{extra}",
            highlight=False,
        )
