"""Bad inputs and faults across every command (issue 14): each one is one clear line, loses nothing.

Every case asserts the exit code, exactly one `error:` line plus a `hint:` line
(or click's own usage error for a value outside an option's range), no
traceback and no "internal error", and that the files under the test folder are
the same before and after (a failed command neither deletes nor leaves anything).

Cases stop before any training step or export, so the file runs in seconds; the
few that need a trained run share one module fixture (mobilenet_v2, 32 px, one batch).
"""

from __future__ import annotations

import errno
import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import make_isic_tree
from tiny_bundle import make_tiny_bundle

from dsedge.cli import main

FAST = ["--image-size", "32", "--batch-size", "4", "--no-compile", "--amp", "off", "--workers", "0", "--no-progress"]


def snapshot(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file, plus every folder (files before == files after)."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        out[rel] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "<dir>"
    return out


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        main(args)
    captured = capsys.readouterr()
    code = e.value.code if isinstance(e.value.code, int) else (0 if e.value.code is None else 1)
    return code, captured.out, captured.err


def assert_one_clear_line(code: int, out: str, err: str, message: str, exit_code: int = 2) -> None:
    text = out + err
    assert code == exit_code, text
    assert "Traceback" not in text and "internal error" not in text, text
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, err
    assert message in errors[0], err
    assert any(ln.startswith("hint:") for ln in err.splitlines()), err


def assert_usage_error(code: int, out: str, err: str, message: str) -> None:
    """click's own range check: exit 2, 'Invalid value ... <message>', a --help hint, no traceback."""
    text = " ".join((out + err).split())
    assert code == 2, text
    assert "Traceback" not in text and "internal error" not in text
    assert "Invalid value" in text and message in text and "--help" in text, text


@pytest.fixture
def env(tmp_path: Path) -> Path:
    """A tiny ISIC tree, a file, a .pt pickle and a bundle-like folder under one root."""
    make_isic_tree(tmp_path / "isic", size=40)
    (tmp_path / "afile").write_text("not a folder")
    (tmp_path / "weights.pt").write_bytes(b"\x80\x04pickle")
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "dsedge.json").write_text(json.dumps({"format": "dsedge-bundle", "artifacts": {}}))
    return tmp_path


# ----------------------------------------------------------------------------- train: values


def _toml(env: Path, text: str) -> list[str]:
    (env / "run.toml").write_text(text)
    return ["--config", str(env / "run.toml")]


TRAIN_CASES: list[tuple[str, Callable[[Path], list[str]], str]] = [
    ("lr-nan", lambda e: ["--lr", "nan"], "invalid lr = nan"),
    ("lr-inf", lambda e: ["--lr", "inf"], "invalid lr = inf"),
    ("lr-negative", lambda e: ["--lr", "-1"], "lr must be > 0"),
    ("plateau-factor-2", lambda e: ["--plateau-factor", "2"], "invalid plateau_factor = 2.0"),
    ("plateau-factor-0", lambda e: ["--plateau-factor", "0"], "invalid plateau_factor = 0.0"),
    ("early-stop-0", lambda e: ["--early-stop-patience", "0"], "invalid early_stop_patience = 0"),
    ("max-val-batches-0", lambda e: ["--max-val-batches", "0"], "invalid max_val_batches = 0"),
    ("max-train-batches-0", lambda e: ["--max-train-batches", "0"], "invalid max_train_batches = 0"),
    ("epochs-0", lambda e: ["--epochs", "0"], "epochs must be > 0"),
    ("batch-size-0", lambda e: ["--batch-size", "0"], "batch_size must be > 0"),
    ("image-size-16", lambda e: ["--image-size", "16"], "too small"),
    ("workers-negative", lambda e: ["--workers", "-1"], "invalid num_workers = -1"),
    ("simam-lambda-0", lambda e: ["--simam-lambda", "0"], "invalid simam_lambda = 0.0"),
    ("simam-lambda-nan", lambda e: ["--simam-lambda", "nan"], "invalid simam_lambda = nan"),
    ("weight-decay-negative", lambda e: ["--weight-decay", "-0.1"], "invalid weight_decay = -0.1"),
    ("warmup-negative", lambda e: ["--warmup-epochs", "-1"], "invalid warmup_epochs = -1.0"),
    ("focal-gamma-negative", lambda e: ["--focal-gamma", "-2"], "invalid focal_gamma = -2.0"),
    ("seed-negative", lambda e: ["--seed", "-1"], "invalid seed = -1"),
    ("ema-1.5", lambda e: ["--ema", "1.5"], "ema_decay must be in (0, 1)"),
    ("grad-clip-0", lambda e: ["--grad-clip", "0"], "grad_clip must be > 0"),
    ("optimizer-unknown", lambda e: ["--optimizer", "rmsprop"], "unknown optimizer"),
    ("amp-unknown", lambda e: ["--amp", "fp8"], "invalid amp = 'fp8'"),
    ("focal-alpha-words", lambda e: ["--focal-alpha", "a,b,c"], "--focal-alpha must be comma-separated numbers"),
    ("focal-alpha-count", lambda e: ["--focal-alpha", "0.5,0.5"], "has 2 values but the data has 3 classes"),
    ("focal-alpha-zero", lambda e: ["--focal-alpha", "0,0.5,0.5"], "invalid focal_alpha.0 = 0.0"),
    ("toml-bool-string", lambda e: _toml(e, 'compile = "no"\n'), "invalid compile = 'no'"),
    ("toml-bool-string-2", lambda e: _toml(e, 'channels_last = "false"\n'), "invalid channels_last = 'false'"),
    ("toml-int-string", lambda e: _toml(e, 'epochs = "ten"\n'), "invalid epochs = 'ten'"),
    ("toml-float-string", lambda e: _toml(e, 'lr = "0.1"\n'), "invalid lr = '0.1'"),
    ("toml-list-string", lambda e: _toml(e, 'focal_alpha = "0.3,0.3,0.4"\n'), "invalid focal_alpha"),
    ("toml-extra-not-table", lambda e: _toml(e, "extra = 5\n"), "invalid extra = 5"),
    ("toml-epochs-float", lambda e: _toml(e, "epochs = 2.5\n"), "invalid epochs = 2.5"),
    ("toml-unknown-key", lambda e: _toml(e, "epochz = 3\n"), "key(s): epochz"),
    ("toml-malformed", lambda e: _toml(e, "epochs = = 3\n"), "is not valid TOML"),
    ("toml-missing", lambda e: ["--config", str(e / "missing.toml")], "config file not found"),
    ("out-under-a-file", lambda e: ["--out", str(e / "afile" / "runs")], "is a file, not a folder"),
    ("data-missing", lambda e: ["--data", str(e / "nope")], "data path not found"),
    ("data-not-csv", lambda e: ["--data", str(e / "afile")], "is a file but not a .csv"),
    ("extra-train-missing", lambda e: ["--extra-train", str(e / "nope.csv")], "data path not found"),
    ("pretrained-missing", lambda e: ["--pretrained", str(e / "nope.pth")], "pretrained weights file not found"),
    ("init-from-pickle", lambda e: ["--init-from", str(e / "weights.pt")], "PyTorch pickle file"),
    ("init-from-bundle", lambda e: ["--init-from", str(e / "bundle")], "is a bundle, not a checkpoint"),
    ("model-unknown", lambda e: ["--model", "resnet9000"], "unknown model"),
    ("compile-scope-bogus", lambda e: ["--compile-scope", "bogus"], "invalid --compile-scope = 'bogus'"),
    ("toml-compile-scope-bogus", lambda e: _toml(e, '[extra]\ncompile_scope = "bogus"\n'),
     "invalid extra.compile_scope = 'bogus'"),
]


@pytest.mark.parametrize("args, message", [c[1:] for c in TRAIN_CASES], ids=[c[0] for c in TRAIN_CASES])
def test_train_bad_values(env: Path, capsys, args, message) -> None:
    extra = args(env)
    base = ["train", "--data", str(env / "isic"), "--out", str(env / "runs"), "--name", "r", *FAST]
    if "--data" in extra:  # the case's own --data wins
        base = ["train", "--out", str(env / "runs"), "--name", "r", *FAST]
    if "--out" in extra:
        base = [a for a in base if a not in ("--out", str(env / "runs"))]
    if "--config" in extra and (env / "run.toml").is_file() and "compile" in (env / "run.toml").read_text():
        base.remove("--no-compile")  # the flag would override the TOML value under test
    before = snapshot(env)
    code, out, err = run([*base, *extra], capsys)
    assert_one_clear_line(code, out, err, message)
    assert snapshot(env) == before  # no run folder, no config-only leftovers


def test_train_corrupt_image_is_found_before_training(env: Path, capsys) -> None:
    bad = sorted((env / "isic" / "ISIC-2017_Training_Data").glob("*.jpg"))[3]
    bad.write_bytes(b"this is not a JPEG")
    before = snapshot(env)
    code, out, err = run(["train", "--data", str(env / "isic"), "--out", str(env / "runs"), *FAST], capsys)
    assert_one_clear_line(code, out, err, f"1 train image(s) cannot be read: {bad.name}")
    assert snapshot(env) == before


@pytest.mark.parametrize("damage, problem", [
    (lambda p: p.write_bytes(p.read_bytes()[: int(p.stat().st_size * 0.7)]), "corrupt or truncated"),
    (lambda p: __import__("PIL.Image").Image.new("RGB", (1200, 100)).save(p, format="JPEG"),
     "1200x100 image, aspect ratio 12:1 is above the 10:1 limit"),
], ids=["truncated-jpeg", "strip-12-to-1"])
def test_train_truncated_and_thin_images_are_found_before_training(env: Path, capsys, damage, problem) -> None:
    """Issue 26: both passed the header-only check and failed mid-epoch (or never)."""
    bad = sorted((env / "isic" / "ISIC-2017_Training_Data").glob("*.jpg"))[2]
    damage(bad)
    before = snapshot(env)
    code, out, err = run(["train", "--data", str(env / "isic"), "--out", str(env / "runs"), *FAST], capsys)
    assert_one_clear_line(code, out, err, f"1 train image(s) cannot be read: {bad.name} ({problem}")
    assert snapshot(env) == before


def test_train_truncated_images_in_workers_are_one_line(env: Path, capsys) -> None:
    """A fault the up-front check cannot see (simulated: the check is switched off) fails in a DataLoader
    worker: its 28-line traceback becomes one line naming the file."""
    for p in (env / "isic" / "ISIC-2017_Training_Data").glob("*.jpg"):
        p.write_bytes(p.read_bytes()[: int(p.stat().st_size * 0.7)])
    before = snapshot(env)
    args = [a if a != "0" else "2" for a in FAST]  # two workers, the default
    # In a child process: forking DataLoader workers inside the pytest process left it in a state
    # where a later ONNX Runtime session (tests/test_bench_run.py) crashed with SIGSEGV.
    import subprocess
    import sys

    script = ("import sys, dsedge.utils.images as im; im.image_problem = lambda p: None; "
              "from dsedge.cli import main; main(sys.argv[1:])")
    proc = subprocess.run([sys.executable, "-c", script, "train", "--data", str(env / "isic"), "--out",
                           str(env / "runs"), "--name", "w", "--model", "mobilenet_v2", "--max-train-batches", "1",
                           *args], capture_output=True, text=True, timeout=600)
    code, out, err = proc.returncode, proc.stdout, proc.stderr
    assert_one_clear_line(code, out, err, "ISIC_")
    assert "cannot be read" not in err  # the up-front check was off: this is the worker path
    assert snapshot(env) == before


def test_train_empty_class_warns(env: Path, capsys) -> None:
    from dsedge.data import load_split
    from dsedge.train.loop import data_warnings

    root = env / "folders"
    for split in ("train", "val"):
        for cls in ("MEL", "NV"):
            (root / split / cls).mkdir(parents=True)
            for i, p in enumerate(sorted((env / "isic" / "ISIC-2017_Training_Data").glob("*.jpg"))[:3]):
                shutil.copy(p, root / split / cls / f"{i}.jpg")
    train = load_split(root, "train", classes=["MEL", "NV", "SK"])
    val = load_split(root, "val", classes=["MEL", "NV", "SK"])
    warnings = data_warnings(train, val)
    assert any("SK have no training images" in w for w in warnings)
    assert any("SK have no validation images" in w for w in warnings)


def test_train_existing_run_folder_is_kept(env: Path, capsys) -> None:
    (env / "runs" / "x").mkdir(parents=True)
    (env / "runs" / "x" / "notes.txt").write_text("mine")
    before = snapshot(env)
    code, out, err = run(["train", "--data", str(env / "isic"), "--out", str(env / "runs"), "--name", "x", *FAST],
                         capsys)
    assert_one_clear_line(code, out, err, "already exists")
    assert snapshot(env) == before


def test_train_reuses_a_config_only_folder_of_a_failed_start(env: Path) -> None:
    from dsedge.train.loop import _unstarted

    run_dir = env / "runs" / "y"
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text("{}")
    assert _unstarted(run_dir)
    (run_dir / "last.json").write_text("{}")
    assert not _unstarted(run_dir)


@pytest.mark.parametrize("target, message", [
    (lambda e: e / "nope", "is not a dsedge run folder"),
    (lambda e: e / "afile", "is not a dsedge run folder"),
])
def test_train_resume_bad_folder(env: Path, capsys, target, message) -> None:
    before = snapshot(env)
    code, out, err = run(["train", "--resume", str(target(env)), "--no-progress"], capsys)
    assert_one_clear_line(code, out, err, message)
    assert snapshot(env) == before


# ----------------------------------------------------------------------------- train: runs and resume


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(data, run folder) of a one-epoch, one-batch mobilenet_v2 run; tests copy it."""
    from dsedge.config import TrainConfig
    from dsedge.train.loop import train

    root = tmp_path_factory.mktemp("trained")
    data = make_isic_tree(root / "isic", size=40)
    cfg = TrainConfig(model="mobilenet_v2", image_size=32, batch_size=4, compile=False, amp="off", num_workers=0,
                      epochs=1, max_train_batches=1, max_val_batches=1)
    return data, train(cfg, data, root / "runs", run_name="r", show_progress=False)


@pytest.fixture
def run_copy(trained: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path]:
    data, run_dir = trained
    return Path(shutil.copytree(data, tmp_path / "isic")), Path(shutil.copytree(run_dir, tmp_path / "run"))


def test_every_part_of_an_epoch_is_listed_in_the_commit(run_copy: tuple[Path, Path]) -> None:
    _, run_dir = run_copy
    trainer = json.loads((run_dir / "state" / "trainer.json").read_text())
    assert set(trainer["parts"]) == {"last.safetensors", "last.json", "best.safetensors", "best.json",
                                     "state/optimizer.safetensors"}
    assert not (run_dir / "state" / ".epoch-commit").exists()


def test_resume_refuses_other_data(run_copy: tuple[Path, Path], capsys) -> None:
    data, run_dir = run_copy
    other = make_isic_tree(data.parent / "other", size=40, seed=5)  # same names, other pixels
    before = snapshot(run_dir.parent)
    code, out, err = run(["train", "--resume", str(run_dir), "--data", str(other), "--epochs", "2",
                          "--no-progress"], capsys)
    assert_one_clear_line(code, out, err, "is not what the run was trained on")
    assert snapshot(run_dir.parent) == before


def test_resume_refuses_a_part_changed_after_the_commit(run_copy: tuple[Path, Path], capsys) -> None:
    _, run_dir = run_copy
    shutil.copy(run_dir / "last.safetensors", run_dir / "best.safetensors")
    shutil.copy(run_dir / "last.json", run_dir / "best.json")
    (run_dir / "best.json").write_text((run_dir / "best.json").read_text().replace('"epoch": 1', '"epoch": 1 '))
    before = snapshot(run_dir.parent)
    code, out, err = run(["train", "--resume", str(run_dir), "--epochs", "2", "--no-progress"], capsys)
    assert_one_clear_line(code, out, err, "best.json is not the file saved with epoch 1")
    assert snapshot(run_dir.parent) == before


def test_interrupted_commit_is_completed_and_unfinished_one_dropped(run_copy: tuple[Path, Path]) -> None:
    """A kill after the commit marker: the parts are moved into place; before it: the old epoch stays."""
    from dsedge.train.state import COMMIT_MARKER, STAGING_DIR, recover

    _, run_dir = run_copy
    staging = run_dir / "state" / STAGING_DIR
    before = snapshot(run_dir)
    staging.mkdir()
    (staging / "last.json").write_text("half written epoch 2")
    assert recover(run_dir) == "discarded"
    assert snapshot(run_dir) == before
    staging.mkdir()
    shutil.copy(run_dir / "last.json", staging / "last.json")
    (staging / "last.json").write_text((staging / "last.json").read_text() + " ")
    (staging / COMMIT_MARKER).write_text("{}")
    assert recover(run_dir) == "completed"
    assert (run_dir / "last.json").read_text().endswith(" ") and not staging.exists()


def test_legacy_run_killed_between_files_is_refused_not_trained_twice(run_copy: tuple[Path, Path]) -> None:
    from dsedge.errors import CheckpointError
    from dsedge.train.state import check_parts

    _, run_dir = run_copy
    trainer = json.loads((run_dir / "state" / "trainer.json").read_text())
    trainer.pop("parts")  # a run folder written before the commit marker
    check_parts(run_dir, trainer, last_epoch=1)
    with pytest.raises(CheckpointError, match="last.json is epoch 2 but the trainer state is epoch 1"):
        check_parts(run_dir, trainer, last_epoch=2)


def test_disk_full_while_saving_keeps_the_last_epoch(run_copy: tuple[Path, Path], capsys, monkeypatch) -> None:
    import dsedge.models.checkpoint as ckpt

    _, run_dir = run_copy

    def full(*_a, **_k):  # noqa: ANN002, ANN003, ANN202
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt, "save_checkpoint", full)
    keep = {p: (run_dir / p).read_bytes() for p in ("last.safetensors", "last.json", "state/trainer.json",
                                                     "state/optimizer.safetensors")}
    code, out, err = run(["train", "--resume", str(run_dir), "--epochs", "2", "--no-progress"], capsys)
    assert_one_clear_line(code, out, err, "no space left on the device while saving epoch 2")
    assert "the run is intact at epoch 1" in err
    assert {p: (run_dir / p).read_bytes() for p in keep} == keep
    assert not (run_dir / "state" / ".epoch-commit").exists()


def test_diverged_training_names_the_epoch(run_copy: tuple[Path, Path], capsys, monkeypatch) -> None:
    """A NaN validation pass ends in 'training diverged at epoch N', not scikit-learn's 'Input contains NaN'."""
    import numpy as np

    import dsedge.train.loop as loop

    _, run_dir = run_copy
    real = loop.predict

    def nan_predict(*a, **k):  # noqa: ANN002, ANN003, ANN202
        loss, labels, probs = real(*a, **k)
        return loss, labels, np.full_like(probs, np.nan)

    monkeypatch.setattr(loop, "predict", nan_predict)
    keep = {p: (run_dir / p).read_bytes() for p in ("last.safetensors", "last.json", "best.safetensors",
                                                     "state/trainer.json", "state/optimizer.safetensors")}
    code, out, err = run(["train", "--resume", str(run_dir), "--epochs", "2", "--no-progress"], capsys)
    assert_one_clear_line(code, out, err, "training diverged at epoch 2")
    assert {p: (run_dir / p).read_bytes() for p in keep} == keep  # the last good epoch is intact


# ----------------------------------------------------------------------------- eval, export, predict, bench, data


OTHER_CASES: list[tuple[str, Callable[[Path], list[str]], str]] = [
    ("eval-pickle", lambda e: ["eval", str(e / "weights.pt"), "--data", str(e / "isic")], "PyTorch pickle file"),
    # a bundle is checked claim by claim now (`dsedge eval BUNDLE`); a broken one says what is wrong with it
    ("eval-bundle", lambda e: ["eval", str(e / "bundle"), "--data", str(e / "isic")], "format_version must be"),
    ("eval-missing", lambda e: ["eval", str(e / "nope.safetensors"), "--data", str(e / "isic")],
     "checkpoint not found"),
    ("eval-out-under-file", lambda e: ["eval", str(e / "weights.pt"), "--data", str(e / "isic"), "--out",
                                        str(e / "afile" / "ev")], "is a file, not a folder"),
    ("export-opset-5", lambda e: ["export", "--random-init", "--out", str(e / "b2"), "--opset", "5"],
     "--opset 5 is not supported"),
    ("export-force-run-folder", lambda e: ["export", "--random-init", "--out", str(e / "isic"), "--force"],
     "--force replaces only a dsedge bundle"),
    ("export-force-bundle-with-notes", lambda e: (
        (e / "bundle" / "notes.txt").write_text("mine"),
        ["export", "--random-init", "--out", str(e / "bundle"), "--force"])[1],
     "holds files that are not part of its bundle"),
    ("export-exists", lambda e: ["export", "--random-init", "--out", str(e / "bundle")], "already exists"),
    ("export-out-is-file", lambda e: ["export", "--random-init", "--out", str(e / "afile")], "is not a folder"),
    ("export-pickle", lambda e: ["export", str(e / "weights.pt"), "--out", str(e / "b3")], "PyTorch pickle file"),
    ("export-missing", lambda e: ["export", str(e / "nope.safetensors"), "--out", str(e / "b3")],
     "checkpoint not found"),
    ("export-no-source", lambda e: ["export", "--out", str(e / "b3")], "no checkpoint given"),
    ("bench-out-under-file", lambda e: ["bench", "--out", str(e / "afile" / "b")], "is a file, not a folder"),
    ("data-check-missing", lambda e: ["data", "check", str(e / "nope")], "data path not found"),
    ("data-check-file", lambda e: ["data", "check", str(e / "afile")], "is a file but not a .csv"),
    ("predict-missing-bundle", lambda e: ["predict", str(e / "nope"), str(e / "afile")], "bundle not found"),
]


@pytest.mark.parametrize("args, message", [c[1:] for c in OTHER_CASES], ids=[c[0] for c in OTHER_CASES])
def test_other_commands_bad_inputs(env: Path, capsys, args, message) -> None:
    argv = args(env)
    before = snapshot(env)
    code, out, err = run(argv, capsys)
    assert_one_clear_line(code, out, err, message)
    assert snapshot(env) == before


@pytest.mark.parametrize("args, message", [
    (["predict", "B", "I", "--batch-size", "-1"], "--batch-size"),
    (["predict", "B", "I", "--batch-size", "0"], "--batch-size"),
    (["bench", "--iters", "0"], "--iters"),
    (["bench", "--round-ms", "0"], "--round-ms"),
    (["bench", "--max-spread", "-1"], "--max-spread"),
    (["bench", "--max-other-cpu", "2"], "--max-other-cpu"),
    (["bench", "--rounds", "0"], "--rounds"),
    (["bench", "--threads", "0"], "--threads"),
    (["bench", "--warmup", "-1"], "--warmup"),
    (["eval", "C", "--data", "D", "--batch-size", "0"], "--batch-size"),
], ids=["predict-batch-minus-1", "predict-batch-0", "bench-iters-0", "bench-round-ms-0", "bench-max-spread-minus-1",
        "bench-max-other-cpu-2", "bench-rounds-0", "bench-threads-0", "bench-warmup-minus-1", "eval-batch-0"])
def test_out_of_range_options_are_usage_errors(env: Path, capsys, args, message) -> None:
    before = snapshot(env)
    code, out, err = run(args, capsys)
    assert_usage_error(code, out, err, message)
    assert snapshot(env) == before


@pytest.mark.parametrize("edit, message", [
    (lambda m: m["artifacts"].update({"../other/model.onnx": m["artifacts"].pop("model.onnx")}),
     "is not a file inside the bundle"),
    (lambda m: m.update(format_version="x"), "format_version must be a whole number"),
    (lambda m: m.update(classes="MEL"), "classes must be a list"),
    (lambda m: m.update(clinical={"operating_point": {"class": "MEL", "threshold": 0.99}}),
     "was edited after dsedge wrote it: clinical added"),
    (lambda m: m["artifacts"].pop("model.fp16.onnx"), "was edited after dsedge wrote it: artifacts changed"),
    (lambda m: m.pop("seal"), "has no seal"),
], ids=["artifact-outside", "format-version-text", "classes-not-a-list", "clinical-threshold", "artifact-removed",
        "seal-removed"])
def test_predict_refuses_an_edited_manifest(env: Path, capsys, edit, message) -> None:
    bundle = make_tiny_bundle(env / "tb")
    (env / "other").mkdir()
    shutil.copy(bundle / "model.onnx", env / "other" / "model.onnx")
    manifest = json.loads((bundle / "dsedge.json").read_text())
    edit(manifest)
    (bundle / "dsedge.json").write_text(json.dumps(manifest))
    before = snapshot(env)
    code, out, err = run(["predict", str(bundle), str(env / "afile")], capsys)
    assert_one_clear_line(code, out, err, message)
    assert snapshot(env) == before


def test_predict_refuses_a_threshold_of_the_wrong_type(env: Path, capsys) -> None:
    """A sealed manifest (a buggy writer) with threshold "high": exit 2 naming the key, not an internal error."""
    from dsedge.runtime.bundle import write_manifest

    bundle = make_tiny_bundle(env / "tb")
    manifest = json.loads((bundle / "dsedge.json").read_text())
    manifest["clinical"] = {"temperature": 1.0, "operating_point": {"class": "MEL", "threshold": "high"}}
    write_manifest(bundle, manifest)
    before = snapshot(env)
    code, out, err = run(["predict", str(bundle), str(env / "afile")], capsys)
    assert_one_clear_line(code, out, err, "clinical.operating_point.threshold must be a number in [0, 1], got 'high'")
    assert snapshot(env) == before


def test_error_lines_are_not_wrapped_under_a_long_path(env: Path, capsys) -> None:
    """Off a terminal rich wrapped at 80 columns: a long path split the error line (a clone under a long path)."""
    deep = env / ("a-very-long-folder-name-" * 4) / ("and-another-long-one-" * 4) / "missing-data"
    code, out, err = run(["train", "--data", str(deep), *FAST], capsys)
    assert_one_clear_line(code, out, err, f"data path not found: {deep}")


def test_version(capsys) -> None:
    from dsedge import __version__

    code, out, _ = run(["--version"], capsys)
    assert code == 0 and out.strip() == f"dsedge {__version__}"


def test_library_warnings_are_one_line(capsys) -> None:
    import warnings

    from dsedge.cli import _show_warning

    _show_warning(UserWarning("Palette images with Transparency\nexpressed in bytes"), UserWarning, "/x/PIL/Image.py",
                  1000)
    _show_warning(UserWarning("Palette images with Transparency\nexpressed in bytes"), UserWarning, "/x/PIL/Image.py",
                  1000)
    err = capsys.readouterr().err
    assert err.count("warning:") == 1 and "PIL/Image.py" not in err and len(err.strip().splitlines()) == 1
    assert warnings is not None


def test_resume_with_an_unknown_toml_key(run_copy: tuple[Path, Path], capsys) -> None:
    _, run_dir = run_copy
    (run_dir.parent / "more.toml").write_text("epochz = 3\n")
    before = snapshot(run_dir.parent)
    code, out, err = run(["train", "--resume", str(run_dir), "--config", str(run_dir.parent / "more.toml"),
                          "--no-progress"], capsys)
    assert_one_clear_line(code, out, err, "key(s): epochz")
    assert snapshot(run_dir.parent) == before


# ----------------------------------------------------------------------------- issue 26: exits, Ctrl-C, debug, disks


def _raise_in_data_check(monkeypatch, exc: BaseException) -> None:
    import dsedge.data.check as check

    def boom(*_a, **_k):  # noqa: ANN002, ANN003, ANN202
        raise exc

    monkeypatch.setattr(check, "check_data", boom)


def test_ctrl_c_says_interrupted_and_what_to_do(env: Path, capsys, monkeypatch) -> None:
    """typer turned Ctrl-C into a silent exit 130 (only a blank line)."""
    _raise_in_data_check(monkeypatch, KeyboardInterrupt())
    code, out, err = run(["data", "check", str(env / "isic")], capsys)
    assert code == 130 and "interrupted:" in err and "--resume" in err and "Traceback" not in out + err


@pytest.mark.parametrize("value, shows_traceback", [("0", False), ("false", False), ("", False), ("no", False),
                                                    ("1", True), ("yes", True), ("TRUE", True)])
def test_dsedge_debug_takes_only_yes_values(env: Path, capsys, monkeypatch, value: str, shows_traceback: bool) -> None:
    """DSEDGE_DEBUG=0 turned tracebacks on and made exit 3 into 1."""
    monkeypatch.setenv("DSEDGE_DEBUG", value)
    _raise_in_data_check(monkeypatch, RuntimeError("a bug"))
    if shows_traceback:
        with pytest.raises(RuntimeError, match="a bug"):
            main(["data", "check", str(env / "isic")])
        return
    code, out, err = run(["data", "check", str(env / "isic")], capsys)
    assert code == 3 and "internal error: RuntimeError: a bug" in err and "Traceback" not in err


def test_a_full_disk_reported_by_a_library_is_exit_2(env: Path, capsys, monkeypatch) -> None:
    """safetensors' SafetensorError('... No space left on device ...') was an internal error (exit 3)."""
    from safetensors import SafetensorError

    _raise_in_data_check(monkeypatch, SafetensorError('IoError(Os { code: 28, message: "No space left on device" })'))
    code, out, err = run(["data", "check", str(env / "isic")], capsys)
    assert_one_clear_line(code, out, err, "no space left on the device")


@pytest.mark.parametrize("command", ["calibrate", "risk"])
def test_a_read_only_bundle_fails_before_any_work(env: Path, capsys, monkeypatch, command: str) -> None:
    """calibrate ran to the end on a read-only bundle, then exited 3; now exit 2 at once, naming the bundle."""
    import errno
    import tempfile

    import dsedge.calibration.int8 as int8
    import dsedge.clinical.fit as fit

    bundle = make_tiny_bundle(env / "tb")
    real = tempfile.mkstemp

    def read_only(*a, **k):  # noqa: ANN002, ANN003, ANN202
        if Path(k.get("dir", "")) == bundle:
            raise OSError(errno.EROFS, "Read-only file system")
        return real(*a, **k)

    def no_work(*_a, **_k):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("the work started")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    monkeypatch.setattr(int8, "calibrate_bundle", no_work)
    monkeypatch.setattr(fit, "fit_bundle_risk", no_work)
    before = snapshot(env)
    code, out, err = run([command, str(bundle), "--data", str(env / "isic")], capsys)
    assert_one_clear_line(code, out, err, f"cannot write into folder {bundle}: Read-only file system")
    assert snapshot(env) == before


def test_train_refuses_a_label_typo(env: Path, capsys) -> None:
    """'melanomaa' trained a 4-class model with 'no problems found'."""
    images = sorted((env / "isic" / "ISIC-2017_Training_Data").glob("*.jpg"))
    rows = [f"{p},{lab},{split}" for p, lab, split in zip(images, ["MEL", "NV", "SK", "melanomaa", "MEL", "NV"],
                                                         ["train"] * 4 + ["val"] * 2, strict=False)]
    (env / "data.csv").write_text("path,label,split\n" + "\n".join(rows) + "\n")
    before = snapshot(env)
    code, out, err = run(["train", "--data", str(env / "data.csv"), "--out", str(env / "runs"), *FAST], capsys)
    assert_one_clear_line(code, out, err, "did you mean 'melanoma (MEL)'?")
    assert str(env / "data.csv") in err  # the user's CSV, by name
    assert snapshot(env) == before


def test_tables_are_not_wrapped_when_piped(monkeypatch) -> None:
    """`dsedge predict ... | cat` split paths over lines: off a terminal rich squeezed tables to 80 columns."""
    import io

    from rich.table import Table

    from dsedge.cli.app import make_console

    monkeypatch.delenv("COLUMNS", raising=False)
    path = "/data/" + "a-long-folder-name/" * 8 + "lesion.jpg"
    table = Table("image", "decision", "melanoma risk", "MEL", "NV", "SK")
    table.add_row(path, "refer", "0.512", "0.512", "0.301", "0.187")
    piped = io.StringIO()
    make_console(file=piped).print(table)
    assert any(path in line for line in piped.getvalue().splitlines()), piped.getvalue()
    assert make_console().width > 1000 and make_console(stderr=True).width > 1000  # pytest's output is not a tty


def test_resume_after_a_kill_at_the_commit_rewrites_history_and_plot(run_copy: tuple[Path, Path], capsys) -> None:
    """Issue 26: the commit was completed but history.csv / loss.png (written after it) missed the epoch."""
    _, run_dir = run_copy
    header = (run_dir / "history.csv").read_text().splitlines()[0]
    (run_dir / "history.csv").write_text(header + "\n")  # killed after the commit, before history.csv
    (run_dir / "loss.png").unlink()
    code, out, err = run(["train", "--resume", str(run_dir), "--no-progress"], capsys)
    assert code == 0, err
    rows = (run_dir / "history.csv").read_text().splitlines()
    assert len(rows) == 2 and rows[1].startswith("1,")
    assert (run_dir / "loss.png").stat().st_size > 0
