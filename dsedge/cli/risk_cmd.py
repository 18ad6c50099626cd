"""`dsedge risk BUNDLE --data DIR`: fit calibrated melanoma risk and the operating point into a bundle."""

from __future__ import annotations

from pathlib import Path

import typer

from dsedge.cli.app import app, console


@app.command("risk")
def risk_command(
    bundle: Path = typer.Argument(..., help="Bundle folder (from `dsedge export`)."),
    data: Path = typer.Option(..., "--data", help="Labelled dataset (the split to fit on)."),
    split: str = typer.Option("val", "--split", help="Split to fit on (never the test split)."),
    target_sensitivity: float = typer.Option(0.90, "--target-sensitivity", min=0.01, max=1.0,
                                             help="Melanoma sensitivity the operating point must reach."),
    uncertain_margin: float = typer.Option(0.15, "--uncertain-margin", min=0.0, max=1.0,
                                           help="Top-2 probability margin below which a result is 'uncertain'."),
    resamples: int = typer.Option(1000, "--resamples", min=10, help="Bootstrap resamples for the 95 % intervals."),
    backend: str = typer.Option("onnxruntime", "--backend", help="Engine that computes the logits."),
    precision: str = typer.Option("fp32", "--precision", help="Artifact precision that computes the logits."),
    json_out: bool = typer.Option(False, "--json", help="Print the clinical block as JSON."),
) -> None:
    """Temperature scaling + melanoma threshold on a split, with ECE, bootstrap CIs and plots, into the bundle."""
    import json

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from dsedge.clinical.fit import fit_bundle_risk

    with Progress(TextColumn("fitting risk"), BarColumn(), MofNCompleteColumn(), console=console,
                  transient=True, disable=json_out) as bar:
        task = bar.add_task("risk", total=None)
        block = fit_bundle_risk(bundle, data, split, target_sensitivity=target_sensitivity,
                                uncertain_margin=uncertain_margin, resamples=resamples, backend=backend,
                                precision=precision, progress=lambda n: bar.advance(task, n),
                                on_total=lambda n: bar.update(task, total=n))
    if json_out:
        print(json.dumps(block, indent=2))
        return
    op, cal = block["operating_point"], block["calibration"]

    def ci(entry: dict) -> str:
        lo, hi = entry["ci95"] or (float("nan"), float("nan"))
        return f"{100 * entry['value']:.1f} % (95 % CI {100 * lo:.1f}–{100 * hi:.1f})"

    console.print(f"temperature {block['temperature']:.3f}: ECE {cal['ece_before']:.3f} -> {cal['ece_after']:.3f}, "
                  f"NLL {cal['nll_before']:.3f} -> {cal['nll_after']:.3f}", highlight=False)
    console.print(f"refer when P(MEL) >= {op['threshold']:.4f} (target sensitivity {op['target_sensitivity']:.2f}): "
                  f"sensitivity {ci(op['sensitivity'])}, specificity {ci(op['specificity'])} "
                  f"on {op['positives']} melanomas / {op['negatives']} others", highlight=False)
    console.print(f"uncertain (top-2 margin < {block['uncertain_margin']}): {100 * block['uncertain_rate']:.1f} % "
                  f"of {block['fitted_on']['images']} images; quality-flagged: {block['fitted_on']['quality_flagged']}",
                  highlight=False)
    for warning in block.get("warnings", []):
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    console.print(f"[green]written[/] {bundle}/dsedge.json (clinical), reliability.png, roc.png, MODEL_CARD.md",
                  highlight=False)
