"""`dsedge predict BUNDLE INPUT...`: a decision per image (refer / benign class / cannot assess)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from dsedge.cli.app import app, console, err_console
from dsedge.engines import registry

#: `dsedge predict --backend` choices, from the registry's runtime backends (lazy factories: no torch import).
_BACKEND_HELP = " | ".join(["auto", *(b.name for b in registry.runtime_backends())])
_AUTO_HELP = ", then ".join(b.name for b in registry.auto_order())


@app.command("predict")
def predict_command(
    bundle: Path = typer.Argument(..., help="Bundle folder (from `dsedge export`)."),
    inputs: list[str] = typer.Argument(None, help="Image files, folders of images, or globs ('scans/*.jpg')."),
    backend: str = typer.Option("auto", "--backend", "-b", help=f"{_BACKEND_HELP} (auto: {_AUTO_HELP})."),
    precision: str = typer.Option(None, "--precision", "-p",
                                  help="fp32 | fp16 | bf16 | int8 (default: best available)."),
    batch_size: int = typer.Option(None, "--batch-size", min=1, help="Images per inference call."),
    json_out: bool = typer.Option(False, "--json", help="Print results as JSON."),
    csv_out: Path | None = typer.Option(None, "--csv", help="Also write the results to this CSV file."),
    check_vectors: bool = typer.Option(False, "--check-vectors",
                                       help="Check this runtime against the bundle's golden vectors; exit 1 on a mismatch."),
    timings: bool = typer.Option(False, "--timings", help="Also time decode / quality / preprocess / infer / post per image."),
    heatmaps: Path | None = typer.Option(None, "--heatmaps",
                                         help="Write class-activation overlays here (bundle exported with --cam)."),
    no_quality: bool = typer.Option(False, "--no-quality-checks", help="Skip the input-quality checks."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Also say why TensorRT was not used."),
) -> None:
    """Classify images: decision, melanoma risk and calibrated probabilities; exit 1 if any file failed."""
    from dsedge.runtime.predict import Predictor
    from dsedge.runtime.results import expand_inputs, results_csv, run_summary, summary_line
    from dsedge.utils.io import atomic_write_text

    if check_vectors:
        from dsedge.runtime.vectors import check_vectors as run_check

        report = run_check(bundle, backend=backend, precision=precision)
        print(json.dumps(report.to_dict(), indent=2) if json_out else report.summary())
        raise typer.Exit(0 if report.ok else 1)
    if not inputs:
        from dsedge.errors import DataError

        raise DataError("no images given", "pass image files, folders or globs after the bundle")
    paths = expand_inputs(inputs)
    with Predictor(bundle, backend=backend, precision=precision, quality_checks=not no_quality) as predictor:
        results = predictor.predict(paths, batch_size=batch_size, heatmaps=heatmaps)
        if timings:
            from dsedge.runtime.timing import attach_timings, format_timings

            stage_rows = attach_timings(predictor, results, paths)
        info, reason, classes = predictor.info, predictor.fallback_reason, predictor.classes
        policy = predictor.policy
        extra = info.extra or {}
        summary = run_summary(results, classes, predictor.bundle.manifest,
                              artifact=extra.get("file") or extra.get("source"))
    if csv_out is not None:
        atomic_write_text(csv_out, results_csv(results, classes))
    if json_out:
        print(json.dumps({"runner": info.to_dict(), "fallback_reason": reason, "policy": policy.to_dict(),
                          "summary": summary, "results": results}, indent=2))
    else:
        _print_table(bundle, info, classes, results, policy.fitted)
        console.print(summary_line(summary), highlight=False)
        if reason and backend == "auto" and verbose:
            console.print(f"[dim]TensorRT not used: {escape(reason)}[/]", highlight=False)
    if timings and not json_out:
        print(format_timings(stage_rows))
    failed = [r for r in results if r.get("error")]
    for r in failed:
        err_console.print(f"[bold red]error:[/] {escape(r['error'])}", highlight=False)
    if failed:
        raise typer.Exit(1)


def _print_table(bundle: Path, info, classes: list[str], results: list[dict], fitted: bool) -> None:  # noqa: ANN001
    table = Table(title=f"{bundle}  ({info.backend} {info.precision}, {info.device})")
    table.add_column("image", overflow="fold")
    table.add_column("decision", style="bold")
    table.add_column("melanoma risk", justify="right")
    for c in classes:
        table.add_column(c, justify="right")
    table.add_column("notes", overflow="fold")
    for r in results:
        probs = r.get("probabilities") or {}
        risk = r.get("melanoma_risk")
        notes = r.get("error") or ", ".join(r.get("reasons") or []) or ("uncertain" if r.get("uncertain") else "")
        table.add_row(Path(r["image"]).name, r["decision"], "" if risk is None else f"{risk:.3f}",
                      *[f"{probs[c]:.3f}" if c in probs else "" for c in classes], escape(notes))
    console.print(table)
    if not fitted:
        console.print("[yellow]this bundle has no fitted risk calibration: probabilities are raw softmax and "
                      "'refer' means MEL is the top class (run `dsedge risk BUNDLE --data DIR`)[/]", highlight=False)
