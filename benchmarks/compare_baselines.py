"""The paper's Table 3: train DS-ResNet50 and each baseline with the same recipe and budget, compare ACC / AUC.

    python benchmarks/compare_baselines.py --data ../shared/data/isic2017 --out runs/compare \
        --epochs 30 --image-size 224 [--models ds_resnet50,resnet50,...] [--config run.toml]

    # what RESULTS.md reports: the reference recipe, the shipped model's own run reused
    python benchmarks/compare_baselines.py --data $DSEDGE_ISIC2017 --config configs/reference.toml \
        --extra-train ../shared/data/ham10000/labels.csv --models ds_resnet50,resnet50,mobilenet_v2 \
        --reuse ds_resnet50=runs/reference --out runs/compare

Every model gets the same `TrainConfig` (the paper's recipe, plus the overrides
given here), the same data, seed and epoch budget; only `model` differs. Each
run's best-validation-loss checkpoint is then evaluated on the validation split
with `evaluate_checkpoint`. Writes `<out>/table3.md` and `<out>/table3.json`.
Finished models are skipped on a re-run (their eval results are reused), so an
interrupted comparison continues where it stopped. `--reuse MODEL=RUN` takes an
existing run folder (e.g. the shipped model's) instead of training that model again;
its training time is the sum of its history's epoch seconds.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

PAPER_MODELS = ("vgg16", "googlenet", "resnet50", "mobilenet_v2", "shufflenet_v2_x1_0", "inception_v3",
                "ds_resnet50")


def run_model(name: str, base: Any, data: Path, out: Path, native_size: bool,
              reuse: Path | None = None) -> dict[str, Any]:
    from dsedge.models.zoo import count_parameters, create_model, get_spec
    from dsedge.train.evaluate import evaluate_checkpoint
    from dsedge.train.loop import train

    size = get_spec(name).input_size if native_size else base.image_size
    if name == "inception_v3" and size < 75:
        return {"model": name, "skipped": f"inception_v3 needs >= 75 px input, got {size}"}
    run_dir = out / name
    result_file = run_dir / "eval-val" / "metrics.json"
    if reuse is not None:
        run_dir = reuse
        history = (run_dir / "history.csv").read_text().strip().splitlines()
        col = history[0].split(",").index("seconds")
        wall = sum(float(line.split(",")[col]) for line in history[1:])
        res = evaluate_checkpoint(run_dir / "best.safetensors", data, "val", out / name / "eval-val",
                                  num_workers=base.num_workers)
    elif result_file.is_file():
        res = json.loads(result_file.read_text())
        wall = json.loads((run_dir / "compare.json").read_text())["train_seconds"]
    else:
        cfg = dataclasses.replace(base, model=name, image_size=size)
        t0 = time.perf_counter()
        if (run_dir / "state" / "trainer.json").is_file():
            from dsedge.train.loop import resume_config

            train(resume_config(run_dir, {"epochs": cfg.epochs}), None, resume=run_dir)
        else:
            train(cfg, data, out, run_name=name)
        wall = time.perf_counter() - t0
        (run_dir / "compare.json").write_text(json.dumps({"train_seconds": wall}))
        res = evaluate_checkpoint(run_dir / "best.safetensors", data, "val", run_dir / "eval-val",
                                  num_workers=base.num_workers)
    epochs = len((run_dir / "history.csv").read_text().strip().splitlines()) - 1
    return {
        "model": name, "image_size": size, "params_m": count_parameters(create_model(name, 3)) / 1e6,
        "epochs_run": epochs, "best_epoch": res.get("epoch"), "train_seconds": wall,
        "accuracy": res["accuracy"], "balanced_accuracy": res["balanced_accuracy"],
        "mel_auc": res["mel_auc"], "sk_auc": res["sk_auc"], "mean_auc": res["mean_auc"],
        "macro_f1": res["macro_f1"],
    }


def table(rows: list[dict[str, Any]], base: Any, data: Path) -> str:
    def f(v: float | None, pct: bool = False) -> str:
        return "n/a" if v is None else (f"{100 * v:.2f}" if pct else f"{v:.4f}")

    lines = [
        f"Same recipe and budget for every model: {base.epochs} epochs max, batch {base.batch_size}, "
        f"lr {base.lr}, focal gamma {base.focal_gamma}, balance {base.balance}, seed {base.seed}; data {data}"
        + (f" + {', '.join(Path(p).name for p in base.extra_train)}" if base.extra_train else "") + ", "
        "validation split, best-validation-loss checkpoint.",
        "",
        "| model | input | params M | epochs | ACC % | balanced ACC % | macro F1 % | MEL AUC | SK AUC | mean AUC | train s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['model']} | skipped: {r['skipped']} |||||||||")
            continue
        lines.append(
            f"| {r['model']} | {r['image_size']} | {r['params_m']:.1f} | {r['epochs_run']} | {f(r['accuracy'], True)} | "
            f"{f(r['balanced_accuracy'], True)} | {f(r['macro_f1'], True)} | {f(r['mel_auc'])} | {f(r['sk_auc'])} | "
            f"{f(r['mean_auc'])} | {r['train_seconds']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def paired_differences(out: Path, models: list[str], reference: str, classes: list[str],
                       resamples: int = 2000, seed: int = 0) -> str:
    """Reference minus each other model on the same images: mean AUC, MEL AUC, balanced ACC, 95 % CI.

    150 validation images make single-model intervals wide (~+/-0.05 AUC); the
    question "does DS-ResNet50 beat ResNet50 here" is a paired one, so both models
    are scored on the same stratified bootstrap resamples of the same images.
    """
    import numpy as np

    from dsedge.metrics import classification_metrics

    def load(name: str) -> tuple[np.ndarray, np.ndarray]:
        lines = (out / name / "eval-val" / "predictions.csv").read_text().strip().splitlines()
        head = lines[0].split(",")
        rows = sorted(line.split(",") for line in lines[1:])  # by image id: the same order for every model
        labels = np.array([classes.index(r[head.index("label")]) for r in rows])
        probs = np.array([[float(r[head.index(f"p_{c}")]) for c in classes] for r in rows])
        return labels, probs

    def values(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
        m = classification_metrics(labels, probs, classes)
        return np.array([m["mean_auc"], m["mel_auc"], m["balanced_accuracy"]])

    labels, ref = load(reference)
    rng = np.random.default_rng(seed)
    strata = [np.flatnonzero(labels == k) for k in range(len(classes))]
    draws = [np.concatenate([rng.choice(s, len(s)) for s in strata]) for _ in range(resamples)]
    lines = [f"Paired differences, {reference} minus each model, same {len(labels)} images; stratified bootstrap "
             f"95 % interval ({resamples} resamples). An interval that contains 0 is no evidence either way.", "",
             "| model | delta mean AUC | delta MEL AUC | delta balanced ACC (pt) |", "|---|---|---|---|"]
    for name in models:
        if name == reference or not (out / name / "eval-val" / "predictions.csv").is_file():
            continue
        other_labels, other = load(name)
        assert (other_labels == labels).all(), f"{name} was evaluated on other images"
        point = values(labels, ref) - values(labels, other)
        boot = np.array([values(labels[d], ref[d]) - values(labels[d], other[d]) for d in draws])
        lo, hi = np.percentile(boot, [2.5, 97.5], axis=0)
        cells = [f"{point[i] * k:+.3f} [{lo[i] * k:+.3f}, {hi[i] * k:+.3f}]" for i, k in ((0, 1), (1, 1), (2, 100))]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    from dsedge.config import TrainConfig, load_toml, merge_into

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=Path("runs/compare"))
    ap.add_argument("--models", default=",".join(PAPER_MODELS))
    ap.add_argument("--config", type=Path, help="TOML with TrainConfig keys shared by every model")
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--image-size", type=int)
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--max-train-batches", type=int)
    ap.add_argument("--device")
    ap.add_argument("--workers", type=int)
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--extra-train", action="append", default=[], metavar="CSV",
                    help="more training data for every model (path,label[,split] CSV); repeatable")
    ap.add_argument("--paired-reference", default="ds_resnet50",
                    help="model the others are compared with, pairwise on the same images (table3_paired.md)")
    ap.add_argument("--reuse", action="append", default=[], metavar="MODEL=RUN",
                    help="evaluate an existing run folder for MODEL instead of training it")
    ap.add_argument("--native-size", action="store_true", help="each model at its natural input size (299 for Inception)")
    args = ap.parse_args()

    values: dict[str, Any] = load_toml(args.config) if args.config else {}
    values = values.get("train", values)
    for key, attr in (("epochs", "epochs"), ("image_size", "image_size"), ("batch_size", "batch_size"),
                      ("max_train_batches", "max_train_batches"), ("device", "device"), ("num_workers", "workers")):
        if getattr(args, attr) is not None:
            values[key] = getattr(args, attr)
    if args.no_compile:
        values["compile"] = False
    if args.extra_train:
        values["extra_train"] = [str(Path(p).resolve()) for p in args.extra_train]
    reuse = {k: Path(v) for k, v in (item.split("=", 1) for item in args.reuse)}
    base = merge_into(TrainConfig(), values)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        print(f"=== {name}", flush=True)
        rows.append(run_model(name, base, args.data, args.out, args.native_size, reuse.get(name)))
        md = table(rows, base, args.data)
        (args.out / "table3.md").write_text(md)
        (args.out / "table3.json").write_text(json.dumps(rows, indent=2))
    names = [r["model"] for r in rows if "skipped" not in r]
    if args.paired_reference in names and len(names) > 1:
        from dsedge import ISIC2017_CLASSES

        paired = paired_differences(args.out, names, args.paired_reference, list(ISIC2017_CLASSES))
        (args.out / "table3_paired.md").write_text(paired)
        md += "\n" + paired
    print(md)


if __name__ == "__main__":
    main()
