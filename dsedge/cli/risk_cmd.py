"""`dsedge risk BUNDLE --data DIR`: fit calibrated melanoma risk and the operating point into a bundle."""

from __future__ import annotations

from pathlib import Path

import typer

from dsedge.cli.app import app, console


@app.command("risk")
def risk_command(
    bundle: Path = typer.Argument(..., help="Bundle folder (from `dsedge export`)."),
    data: Path = typer.Option(..., "--data", help="Labelled dataset (the tuning split, and the reporting split if any)."),
    split: str = typer.Option("val", "--split", help="Without a tuning slice held out at training: the split that "
                              "tunes (its claims are cross-fitted). With one: the split that reports."),
    report_split: str | None = typer.Option(None, "--report-split",
                                            help="Report the claims on this split instead (disjoint from tuning)."),
    folds: int = typer.Option(5, "--folds", min=2, max=20, help="Folds for the cross-fitted claim."),
    target_sensitivity: float = typer.Option(0.90, "--target-sensitivity", min=0.01, max=1.0,
                                             help="Melanoma sensitivity the operating point must reach."),
    uncertain_margin: float = typer.Option(0.15, "--uncertain-margin", min=0.0, max=1.0,
                                           help="Top-2 probability margin below which a result is 'uncertain'."),
    resamples: int = typer.Option(1000, "--resamples", min=10, help="Bootstrap resamples for the 95 % intervals."),
    backend: str = typer.Option("onnxruntime", "--backend", help="Engine that computes the logits."),
    precision: str = typer.Option("fp32", "--precision", help="Artifact precision that computes the logits."),
    json_out: bool = typer.Option(False, "--json", help="Print the clinical block as JSON."),
) -> None:
    """Temperature scaling + melanoma operating point into the bundle, fitted on a tuning split, with
    sensitivity / specificity claimed on images the fit never saw (exact 95 % intervals).

    Tuning split: the slice of training data the checkpoint held out (`dsedge train --tuning-fraction`)
    when it has one, else --split (then the claims are cross-fitted over --folds folds)."""
    import json

    from dsedge.clinical.fit import fit_bundle_risk
    from dsedge.utils.io import ensure_writable

    ensure_writable(bundle, need_bytes=16 * 2**20)  # read-only bundle / full disk: exit 2 before the fit
    from dsedge.utils.progress import progress

    with progress("fitting risk", console=console, enabled=not json_out) as shown:  # stderr lines when piped
        block = fit_bundle_risk(bundle, data, split, report_split=report_split, folds=folds,
                                target_sensitivity=target_sensitivity,
                                uncertain_margin=uncertain_margin, resamples=resamples, backend=backend,
                                precision=precision, progress=shown.advance,
                                on_total=shown.set_total)
    if json_out:
        print(json.dumps(block, indent=2))
        return
    op, cal = block["operating_point"], block["calibration"]

    def ci(entry: dict) -> str:
        lo, hi = entry.get("ci") or entry.get("ci95") or (float("nan"), float("nan"))
        counts = f" = {entry['k']}/{entry['n']}" if entry.get("k") is not None else ""
        return f"{100 * entry['value']:.1f} %{counts} (95 % CI {100 * lo:.1f}–{100 * hi:.1f})"

    fit, on = block["fitted_on"], op["measured_on"]
    console.print(f"fitted on '{fit['split']}' ({fit['images']} images, {fit['source']}); "
                  f"claims measured on '{on['split']}' ({on['images']} images, {on['method']})", highlight=False)
    if fit.get("note"):
        console.print(f"[yellow]note:[/] {fit['note']}", highlight=False)
    console.print(f"temperature {block['temperature']:.3f}: ECE {cal['ece_before']:.3f} -> {cal['ece_after']:.3f}, "
                  f"NLL {cal['nll_before']:.3f} -> {cal['nll_after']:.3f}", highlight=False)
    t_ci = op.get("threshold_ci95") or [float("nan")] * 2
    console.print(f"refer when P(MEL) >= {op['threshold']:.4f} (bootstrap 95 % range of the threshold "
                  f"{t_ci[0]:.4f}–{t_ci[1]:.4f}; target sensitivity {op['target_sensitivity']:.2f})", highlight=False)
    console.print(f"claim: sensitivity {ci(op['sensitivity'])}, specificity {ci(op['specificity'])} "
                  f"[{op['claim_method']}, exact intervals]", highlight=False)
    ins = op["in_sample"]
    console.print(f"[dim]in-sample (not a claim): sensitivity {100 * ins['sensitivity']['value']:.1f} %, "
                  f"specificity {100 * ins['specificity']['value']:.1f} %[/]", highlight=False)
    console.print(f"uncertain (top-2 margin < {block['uncertain_margin']}): {100 * block['uncertain_rate']:.1f} % "
                  f"of {fit['images']} images; quality-flagged: {fit['quality_flagged']}", highlight=False)
    for warning in block.get("warnings", []):
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    console.print(f"[green]written[/] {bundle}/dsedge.json (clinical, claims), reliability.png, roc.png, MODEL_CARD.md",
                  highlight=False)
