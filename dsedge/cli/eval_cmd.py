"""`dsedge eval CHECKPOINT|BUNDLE --data DIR --split val|test`: Table 2 and AUCs of a checkpoint, or a
bundle's claims checked claim by claim on labelled data."""

from __future__ import annotations

from pathlib import Path

import typer

from dsedge.cli.app import app, console


@app.command("eval")
def eval_command(
    checkpoint: Path = typer.Argument(..., help="A checkpoint (.safetensors or .json, or `isic2017`), or a bundle "
                                      "folder: then every claim in its dsedge.json is checked on --split."),
    data: Path = typer.Option(..., "--data", help="Dataset folder or CSV."),
    split: str = typer.Option("val", "--split", help="val | test | train | tuning (the slice a checkpoint held out of training: choose there, report on val)."),
    out: Path | None = typer.Option(None, "--out", help="Output folder (default: ./runs/eval-<name>-<split>/)."),
    model: str | None = typer.Option(None, "--model", help="Refuse a checkpoint of any other model."),
    batch_size: int = typer.Option(32, "--batch-size", min=1),
    device: str = typer.Option("auto", "--device"),
    workers: int = typer.Option(2, "--workers", min=0),
    json_out: bool = typer.Option(False, "--json", help="Print the metrics as JSON."),
    bundle: Path | None = typer.Option(None, "--bundle",
                                       help="Use this bundle's fitted temperature + melanoma threshold (dsedge risk)."),
    target_sensitivity: float = typer.Option(0.90, "--target-sensitivity", min=0.01, max=1.0,
                                             help="Without --bundle: choose the threshold on this split for it."),
    resamples: int = typer.Option(1000, "--resamples", min=10, help="Bootstrap resamples for the 95 % intervals."),
    tta: bool = typer.Option(False, "--tta", help="Average each image's probabilities over its 8 dihedral views."),
) -> None:
    """Evaluate a checkpoint: per-class P/R/F1, ACC, balanced ACC, MEL/SK AUC with bootstrap 95 % CIs, melanoma
    sensitivity/specificity at the operating point; writes JSON, Markdown, confusion and ROC PNGs.

    Given a bundle folder instead, checks every claim in its dsedge.json on --split (your own labelled
    test set): measured value and interval, claimed value, holds / does not hold (docs/CLAIMS.md)."""
    import json

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
    from rich.table import Table

    from dsedge.utils.io import check_output_dir

    out = out or default_out(checkpoint, split + ("-tta" if tta else ""))
    check_output_dir(out, "eval output")  # before the evaluation, not after it
    if (checkpoint / "dsedge.json").is_file():
        _eval_bundle(checkpoint, data, split, out, json_out)
        return
    from dsedge.train.evaluate import evaluate_checkpoint

    with Progress(TextColumn("evaluating"), BarColumn(), MofNCompleteColumn(), console=console,
                  transient=True, disable=json_out) as bar:
        task = bar.add_task("eval", total=None)
        res = evaluate_checkpoint(
            checkpoint, data, split, out, batch_size=batch_size, device=device, num_workers=workers,
            expect_model=model, progress=lambda n: bar.advance(task, n),
            on_total=lambda n: bar.update(task, total=n), bundle=bundle,
            target_sensitivity=target_sensitivity, resamples=resamples, tta=tta,
        )
    if json_out:
        console.print_json(json.dumps(res))
        return
    t = Table(title=f"{res['model']} on {split} ({res['n']} images)")
    for col in ("class", "precision %", "recall %", "F1 %", "AUC", "support"):
        t.add_column(col, justify="left" if col == "class" else "right")
    for c, m in res["per_class"].items():
        auc = res["auc"].get(c)
        t.add_row(c, f"{100 * m['precision']:.2f}", f"{100 * m['recall']:.2f}", f"{100 * m['f1']:.2f}",
                  "n/a" if auc is None else f"{auc:.4f}", str(m["support"]))
    console.print(t)

    def f(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.4f}"

    iv = res.get("intervals") or {}

    def ci(key: str, scale: float = 100.0) -> str:
        lo_hi = iv.get(key)
        return f" [{scale * lo_hi[0]:.2f}, {scale * lo_hi[1]:.2f}]" if lo_hi else ""

    console.print(f"95 % CI: ACC{ci('accuracy')}  balanced ACC{ci('balanced_accuracy')}  "
                  f"MEL AUC{ci('auc_MEL', 1)}  mean AUC{ci('mean_auc', 1)}", highlight=False)
    op = res.get("operating_point")
    if op:
        s_, p_ = op["sensitivity"], op["specificity"]
        console.print(f"melanoma operating point ({op['source']}): P(MEL) >= {op['threshold']:.4f}: "
                      f"sensitivity {100 * s_['value']:.1f} %{_pair(s_['ci95'])}, "
                      f"specificity {100 * p_['value']:.1f} %{_pair(p_['ci95'])}", highlight=False)
    console.print(
        f"ACC {100 * res['accuracy']:.2f} %   balanced ACC {100 * res['balanced_accuracy']:.2f} %   "
        f"MEL AUC {f(res['mel_auc'])}   SK AUC {f(res['sk_auc'])}   mean AUC {f(res['mean_auc'])}", highlight=False)
    for k, v in res["outputs"].items():
        console.print(f"  {k}: {v}", highlight=False)


def _pair(ci: list[float] | None) -> str:
    return f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else ""


def default_out(target: Path, split: str) -> Path:
    """./runs/eval-<name>-<split>: never inside the installed package or the bundle."""
    name = target.name if target.is_dir() else (target.parent.name if target.stem in ("best", "last") else target.stem)
    return Path("runs") / f"eval-{name or 'model'}-{split}"


def _eval_bundle(bundle: Path, data: Path, split: str, out: Path, json_out: bool) -> None:
    """`dsedge eval BUNDLE`: every claim measured again on `split`, with holds / does not hold."""
    import json

    from dsedge.clinical.claims import check_bundle_claims, claims_markdown
    from dsedge.utils.io import atomic_write_json, atomic_write_text
    from dsedge.utils.progress import progress

    with progress("checking claims", console=console, enabled=not json_out) as shown:  # stderr lines when piped
        res = check_bundle_claims(bundle, data, split, progress=shown.advance, on_total=shown.set_total)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "claims.json", res)
    md = claims_markdown(res)
    atomic_write_text(out / "claims.md", md)
    if json_out:
        print(json.dumps(res, indent=2))
        return
    console.print(md, highlight=False, markup=False)
    verdict = "[green]every claim holds[/]" if res["all_hold"] else "[red]some claims do not hold[/]"
    console.print(f"{verdict}; written {out}/claims.json, claims.md", highlight=False)
