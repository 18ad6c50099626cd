"""The reference recipe's pieces: extra training data, cosine schedule, EMA, --init-from, divergence.

Tiny images, no compile, no AMP, no workers: plumbing, not accuracy.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from dsedge.config import TrainConfig
from dsedge.data import load_split
from dsedge.data.samples import concat_splits
from dsedge.errors import CheckpointError, DsedgeError
from dsedge.models.checkpoint import init_from_checkpoint, load_checkpoint
from dsedge.train.loop import resume_config, train
from dsedge.train.schedule import cosine_factor


def tiny_cfg(**kw) -> TrainConfig:
    base = dict(image_size=32, batch_size=4, compile=False, amp="off", num_workers=0, epochs=2)
    return TrainConfig(**(base | kw))


def write_extra_csv(root: Path, labels: list[str], split: str = "train") -> Path:
    """A HAM10000-like `path,label,split` CSV with images beside it."""
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(1)
    with open(root / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "split"])
        for i, label in enumerate(labels):
            name = f"images/ISIC_{9000000 + i}.jpg"
            Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(root / name)
            w.writerow([name, label, split])
    return root / "labels.csv"


def test_extra_training_data_is_added_to_train_only(tiny_isic: Path, tmp_path: Path):
    extra = write_extra_csv(tmp_path / "ham", ["mel", "nv", "nv", "bkl"])
    run = train(tiny_cfg(epochs=1, max_train_batches=1, extra_train=[str(extra)]), tiny_isic, tmp_path,
                run_name="x", show_progress=False)
    counts = json.loads((run / "config.json").read_text())["class_counts"]
    assert counts["train"] == {"MEL": 6, "NV": 8, "SK": 5}  # 5/6/4 ISIC (after the tuning slice) + 1/2/1 HAM
    assert counts["tuning"] == {"MEL": 1, "NV": 2, "SK": 1}  # held out of ISIC train only, never of HAM
    assert counts["val"] == {"MEL": 3, "NV": 4, "SK": 3}  # validation stays ISIC's


def test_concat_refuses_different_class_lists(tiny_isic: Path, tmp_path: Path):
    a = load_split(tiny_isic, "train")
    b = load_split(write_extra_csv(tmp_path / "o", ["x", "y"]), "train")
    with pytest.raises(ValueError, match="class lists differ"):
        concat_splits(a, b)
    c = load_split(write_extra_csv(tmp_path / "h", ["nv"]), "train", classes=a.classes)
    both = concat_splits(a, c)
    assert len(both) == len(a) + 1 and both.samples[-1].label == a.classes.index("NV")


def test_cosine_factor_warms_up_then_decays_to_zero():
    f = [cosine_factor(s, total=100, warmup=10) for s in range(101)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(f[10:], f[11:], strict=False))  # monotone after warmup
    assert f[55] == pytest.approx(0.5, abs=0.02) and f[100] == pytest.approx(0.0)


def test_cosine_ema_run_resumes_to_the_same_weights(tiny_isic: Path, tmp_path: Path):
    cfg = tiny_cfg(epochs=2, max_train_batches=2, scheduler="cosine", warmup_epochs=0.5, ema_decay=0.9,
                   grad_clip=1.0)
    full = train(cfg, tiny_isic, tmp_path, run_name="full", show_progress=False)
    part = train(dataclasses.replace(cfg, epochs=1), tiny_isic, tmp_path, run_name="part", show_progress=False)
    # `epochs` sets the cosine length, so the 1-epoch run differs; resume a copy of the full run instead
    assert (part / "state/raw.safetensors").is_file()
    resumed = train(resume_config(full, {"epochs": 3}), None, resume=full, show_progress=False)
    rows = list(csv.DictReader((resumed / "history.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    last, raw = load_file(full / "last.safetensors"), load_file(full / "state/raw.safetensors")
    # `last` is the EMA, not the raw weights
    assert any(not torch.equal(last[k], raw[k]) for k in last if last[k].is_floating_point())
    lrs = [float(r["lr"]) for r in rows]
    assert lrs[0] > 0 and lrs[-1] < lrs[0]


def test_init_from_keeps_trunk_and_reinitialises_other_head(tiny_isic: Path, tmp_path: Path):
    src = train(tiny_cfg(epochs=1, max_train_batches=1, model="mobilenet_v2"), tiny_isic, tmp_path,
                run_name="src", show_progress=False)
    from dsedge.models.zoo import create_model

    src_model, _ = load_checkpoint(src / "last")
    seven = create_model("mobilenet_v2", 7)
    loaded, skipped = init_from_checkpoint(seven, src / "last")
    assert skipped and all(k.startswith("classifier") for k in skipped)
    assert loaded == len(src_model.state_dict()) - len(skipped)
    name = next(k for k in seven.state_dict() if k.endswith("weight") and "features.0" in k)
    assert torch.equal(seven.state_dict()[name], src_model.state_dict()[name])
    with pytest.raises(CheckpointError, match="no tensor matches"):
        init_from_checkpoint(torch.nn.Linear(3, 3), src / "last")
    # through train(): the 3-class fine-tune starts from the source trunk
    run = train(tiny_cfg(epochs=1, max_train_batches=1, model="mobilenet_v2", init_from=str(src / "last")),
                tiny_isic, tmp_path, run_name="ft", show_progress=False)
    assert (run / "last.safetensors").is_file()
    # src held the same tuning slice out (same fraction and seed): the fine-tune's slice is still unseen
    assert json.loads((run / "last.json").read_text())["init_excludes_tuning"] is True


def test_init_from_a_model_that_saw_the_tuning_slice_is_flagged(tiny_isic: Path, tmp_path: Path):
    from io import StringIO

    from rich.console import Console

    src = train(tiny_cfg(epochs=1, max_train_batches=1, model="mobilenet_v2", tuning_fraction=0.0), tiny_isic,
                tmp_path, run_name="all", show_progress=False)
    out = StringIO()
    run = train(tiny_cfg(epochs=1, max_train_batches=1, model="mobilenet_v2", init_from=str(src / "last")),
                tiny_isic, tmp_path, run_name="ft", show_progress=False, console=Console(file=out, width=400))
    assert json.loads((run / "last.json").read_text())["init_excludes_tuning"] is False
    assert "tuning numbers are in-sample" in out.getvalue()


def test_divergence_stops_with_a_clear_error(tiny_isic: Path, tmp_path: Path, monkeypatch):
    from dsedge.train import loop

    real = loop.FocalLoss.forward

    def nan_loss(self, logits, target):
        return real(self, logits, target) * float("nan")

    monkeypatch.setattr(loop.FocalLoss, "forward", nan_loss)
    with pytest.raises(DsedgeError, match="training diverged at epoch 1, step 1"):
        train(tiny_cfg(epochs=1, max_train_batches=2, model="mobilenet_v2"), tiny_isic, tmp_path,
              run_name="nan", show_progress=False)
    assert not (tmp_path / "nan" / "last.safetensors").exists()  # nothing broken was saved


def _relative_spread(logits: torch.Tensor) -> float:
    """Spread of the logits across images relative to their size: ~0 when the model answers a constant."""
    return float(logits.std(dim=0).mean() / logits.abs().mean().clamp_min(1e-12))


def test_ema_with_recomputed_batchnorm_is_not_constant():
    """MobileNetV2 (Table 3) collapsed to one answer under an EMA whose BatchNorm statistics were averaged.

    Early in a run a 0.998 average holds mostly the initial statistics (mean 0, variance 1) of
    weights that are gone: ReLU6 saturates and every image gets the same logits. Re-estimating
    the statistics for the averaged weights (`recompute_bn`) gives an answer per image.
    """
    from torchvision.models import mobilenet_v2

    from dsedge.train.schedule import build_ema, recompute_bn

    torch.manual_seed(0)
    model = mobilenet_v2(num_classes=3, width_mult=0.25)
    x = torch.randn(32, 3, 32, 32) + (torch.arange(32) % 3).view(32, 1, 1, 1) * 0.5
    y = torch.arange(32) % 3
    ema = build_ema(model, 0.998)
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    for step in range(6):
        batch = slice(8 * (step % 4), 8 * (step % 4) + 8)
        loss = torch.nn.functional.cross_entropy(model.train()(x[batch]), y[batch])
        opt.zero_grad()
        loss.backward()
        opt.step()
        ema.update_parameters(model)
    with torch.no_grad():
        stale = _relative_spread(ema.module.eval()(x))
        assert recompute_bn(ema.module, (x[i:i + 8] for i in range(0, 32, 8))) == 4
        fresh = _relative_spread(ema.module.eval()(x))
    assert stale < 1e-3  # the collapse, as measured in Table 3
    assert fresh > 0.05
    assert not ema.module.training  # recompute_bn leaves the mode as it was


def test_recompute_bn_without_batches_leaves_statistics():
    from dsedge.train.schedule import recompute_bn

    bn = torch.nn.BatchNorm2d(4)
    bn.running_mean.fill_(3.0)
    assert recompute_bn(bn, iter([])) == 0
    assert torch.all(bn.running_mean == 3.0)


def test_training_with_ema_evaluates_and_ships_recomputed_statistics(tiny_isic: Path, tmp_path: Path):
    """Through train(): the EMA checkpoint answers per image (before: one answer for every image)."""
    from dsedge.config import PreprocessConfig
    from dsedge.data.transforms import eval_transform

    run = train(tiny_cfg(epochs=1, max_train_batches=3, ema_decay=0.998, model="mobilenet_v2", lr=1e-3,
                         ema_bn_batches=3), tiny_isic, tmp_path, run_name="ema", show_progress=False)
    model, meta = load_checkpoint(run / "last")
    split = load_split(tiny_isic, "val")
    t = eval_transform(PreprocessConfig.from_dict(meta["preprocessing"]))
    x = torch.stack([t(Image.open(s.path).convert("RGB")) for s in split.samples])
    with torch.no_grad():
        assert _relative_spread(model.eval()(x)) > 0.05


@pytest.mark.parametrize("toml", sorted((Path(__file__).parent.parent / "configs").glob("*.toml")),
                         ids=lambda p: p.name)
def test_committed_recipes_are_valid_configs(toml: Path):
    """Every configs/*.toml loads into a TrainConfig that passes the schema, and says whether it holds a tuning slice."""
    from dsedge.config import load_toml, merge_into
    from dsedge.train.loop import check_config

    raw = load_toml(toml)
    values = raw["train"] if isinstance(raw.get("train"), dict) else raw
    assert "tuning_fraction" in values  # explicit: a recipe states how epochs are selected
    check_config(merge_into(TrainConfig(), values, source=str(toml)))
