"""`dsedge eval`: all outputs from a tiny trained checkpoint, and clear errors for bad checkpoints."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, roc_auc_score

from dsedge.cli import main
from dsedge.config import TrainConfig
from dsedge.errors import CheckpointError
from dsedge.train.evaluate import evaluate_checkpoint
from dsedge.train.loop import train


@pytest.fixture(scope="module")
def checkpoint(tiny_isic_session: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = TrainConfig(image_size=32, batch_size=4, epochs=1, max_train_batches=2, compile=False, amp="off",
                      num_workers=0)
    run = train(cfg, tiny_isic_session, tmp_path_factory.mktemp("runs"), run_name="r", show_progress=False)
    return run / "best.safetensors"


def run_cli(args: list[str]) -> int:
    with pytest.raises(SystemExit) as e:
        main(args)
    return e.value.code


def flat(text: str) -> str:
    return " ".join(text.split())


def test_eval_cli_writes_all_outputs(checkpoint: Path, tiny_isic_session: Path, tmp_path: Path, capsys):
    out = tmp_path / "eval"
    assert run_cli(["eval", str(checkpoint), "--data", str(tiny_isic_session), "--split", "val",
                    "--out", str(out), "--workers", "0", "--model", "ds_resnet50"]) == 0
    printed = flat(capsys.readouterr().out)
    assert "ACC" in printed and "MEL AUC" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == 10 and metrics["split"] == "val" and metrics["model"] == "ds_resnet50"
    for key in ("accuracy", "balanced_accuracy", "mel_auc", "sk_auc", "mean_auc", "per_class", "confusion_matrix"):
        assert key in metrics
    md = (out / "metrics.md").read_text()
    assert "| MEL |" in md and "melanoma AUC" in md and "Confusion matrix" in md
    assert (out / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    assert len(rows) == 10 and set(rows[0]) == {"image", "label", "prediction", "p_MEL", "p_NV", "p_SK"}
    # the written metrics follow from the written predictions (scikit-learn)
    labels = np.array([["MEL", "NV", "SK"].index(r["label"]) for r in rows])
    probs = np.array([[float(r[f"p_{c}"]) for c in ("MEL", "NV", "SK")] for r in rows])
    assert metrics["accuracy"] == pytest.approx(accuracy_score(labels, probs.argmax(1)))
    assert metrics["mel_auc"] == pytest.approx(roc_auc_score(labels == 0, probs[:, 0]), abs=1e-4)
    assert sum(map(sum, metrics["confusion_matrix"])) == 10
    # clinical additions: every metric's bootstrap interval, the melanoma operating point, the ROC plot
    assert set(metrics["intervals"]) >= {"accuracy", "balanced_accuracy", "auc_MEL", "mean_auc", "f1_NV"}
    op = metrics["operating_point"]
    assert op["source"] == "chosen on this split" and op["sensitivity"]["value"] >= 0.9
    assert (out / "roc.png").read_bytes()[:4] == b"\x89PNG" and "Melanoma operating point" in md
    assert "melanoma operating point" in printed and "95 % CI" in printed


def test_evaluate_default_out_dir(checkpoint: Path, tiny_isic_session: Path):
    res = evaluate_checkpoint(checkpoint.with_suffix(".json"), tiny_isic_session, "train", num_workers=0)
    assert res["n"] == 19
    assert Path(res["outputs"]["json"]).parent == checkpoint.parent / "eval-train"


def test_checkpoint_of_another_model(checkpoint: Path, tiny_isic_session: Path, capsys):
    assert run_cli(["eval", str(checkpoint), "--data", str(tiny_isic_session), "--model", "resnet50"]) == 2
    assert "is a 'ds_resnet50' checkpoint, expected 'resnet50'" in flat(capsys.readouterr().err)


def test_corrupt_checkpoints(checkpoint: Path, tiny_isic_session: Path, tmp_path: Path, capsys):
    weights = tmp_path / "c.safetensors"
    shutil.copy(checkpoint, weights)
    shutil.copy(checkpoint.with_suffix(".json"), tmp_path / "c.json")
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])  # truncated download
    assert run_cli(["eval", str(weights), "--data", str(tiny_isic_session)]) == 2
    assert "corrupt" in flat(capsys.readouterr().err)

    (tmp_path / "c.json").write_text("{not json")
    assert run_cli(["eval", str(weights), "--data", str(tiny_isic_session)]) == 2
    assert "c.json is corrupt" in flat(capsys.readouterr().err)

    # a weights file without its sha256 record and with garbage content: still a clean error
    meta = json.loads(checkpoint.with_suffix(".json").read_text())
    meta.pop("weights_sha256")
    (tmp_path / "c.json").write_text(json.dumps(meta))
    weights.write_bytes(b"garbage" * 10)
    with pytest.raises(CheckpointError, match="cannot read"):
        evaluate_checkpoint(weights, tiny_isic_session, num_workers=0)

    assert run_cli(["eval", str(tmp_path / "missing.safetensors"), "--data", str(tiny_isic_session)]) == 2
    assert "checkpoint not found" in flat(capsys.readouterr().err)


def test_missing_split(checkpoint: Path, tiny_isic_session: Path, capsys):
    assert run_cli(["eval", str(checkpoint), "--data", str(tiny_isic_session), "--split", "test"]) == 2
    assert "has no 'test' split" in flat(capsys.readouterr().err)


@pytest.mark.slow
def test_eval_on_real_isic_validation(checkpoint: Path, isic_root: Path, tmp_path: Path):
    """The tiny checkpoint on the real 150 validation images: the pipeline handles real files."""
    res = evaluate_checkpoint(checkpoint, isic_root, "val", tmp_path, num_workers=0)
    assert res["n"] == 150
    assert [res["per_class"][c]["support"] for c in ("MEL", "NV", "SK")] == [30, 78, 42]


def test_eval_applies_a_bundles_operating_point(checkpoint: Path, tiny_isic_session: Path, tmp_path: Path):
    from tiny_bundle import make_tiny_bundle

    from dsedge.bundle import load_bundle
    from dsedge.errors import DataError

    bundle = make_tiny_bundle(tmp_path / "bundle")
    with pytest.raises(DataError, match="no fitted operating point"):
        evaluate_checkpoint(checkpoint, tiny_isic_session, "val", tmp_path / "e0", num_workers=0, bundle=bundle)
    b = load_bundle(bundle)
    b.manifest["clinical"] = {"temperature": 1.5, "operating_point": {"threshold": 0.25, "target_sensitivity": 0.9}}
    b.save()
    res = evaluate_checkpoint(checkpoint, tiny_isic_session, "val", tmp_path / "e1", num_workers=0, bundle=bundle,
                              resamples=50)
    op = res["operating_point"]
    assert op["source"] == "bundle" and op["threshold"] == 0.25 and op["temperature"] == 1.5
    assert "ece_calibrated" in res


def test_eval_tta_averages_probabilities_over_the_8_views(checkpoint: Path, tiny_isic_session: Path, tmp_path: Path):
    import torch

    from dsedge.config import PreprocessConfig
    from dsedge.data import load_split
    from dsedge.data.transforms import eval_transform
    from dsedge.models.checkpoint import load_checkpoint
    from dsedge.runtime.preprocess import dihedral_views

    out = tmp_path / "tta"
    assert run_cli(["eval", str(checkpoint), "--data", str(tiny_isic_session), "--split", "val", "--tta",
                    "--workers", "0", "--batch-size", "4", "--resamples", "10", "--json", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["tta"] is True
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    model, meta = load_checkpoint(checkpoint)
    t = eval_transform(PreprocessConfig.from_dict(meta["preprocessing"]))
    from PIL import Image

    x = torch.stack([t(Image.open(s.path).convert("RGB")) for s in load_split(tiny_isic_session, "val").samples])
    with torch.no_grad():
        views = torch.from_numpy(dihedral_views(x.numpy()))
        expected = torch.softmax(model.eval()(views), 1).reshape(len(x), 8, 3).mean(1).numpy()
        single = torch.softmax(model(x), 1).numpy()
    got = np.array([[float(r[f"p_{c}"]) for c in ("MEL", "NV", "SK")] for r in rows])
    np.testing.assert_allclose(got, expected, atol=2e-6)
    assert np.abs(got - single).max() > 1e-4  # TTA changed the answers
    no_tta = evaluate_checkpoint(checkpoint, tiny_isic_session, "val", tmp_path / "plain", num_workers=0, resamples=10)
    assert no_tta["tta"] is False
    again = evaluate_checkpoint(checkpoint, tiny_isic_session, "val", num_workers=0, resamples=10, tta=True)
    assert Path(again["outputs"]["json"]).parent.name == "eval-val-tta"  # beside eval-val, not over it


def test_eval_on_the_checkpoints_tuning_slice(checkpoint: Path, tiny_isic_session: Path, tmp_path: Path, capsys):
    """`--split tuning`: the images the run held out of training, by the ids its checkpoint recorded."""
    from dsedge.models.checkpoint import load_checkpoint

    _, meta = load_checkpoint(checkpoint)
    record = meta["tuning_split"]
    res = evaluate_checkpoint(checkpoint, tiny_isic_session, "tuning", tmp_path / "t", resamples=20)
    with open(res["outputs"]["predictions"], newline="") as f:
        rows = list(csv.DictReader(f))
    assert res["split"] == "tuning" and len(rows) == record["n"]
    assert sorted(Path(r[next(iter(r))]).stem for r in rows) == sorted(record["ids"])
    untuned = meta | {"tuning_split": None}
    from dsedge.train.evaluate import _eval_split

    with pytest.raises(Exception, match="held no tuning slice"):
        _eval_split(tiny_isic_session, "tuning", meta["classes"], untuned["tuning_split"])
