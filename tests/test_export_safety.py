"""`dsedge export --force` replaces a bundle, never a run folder or any other folder (issue 14, item 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dsedge.cli import main
from dsedge.errors import BundleError, ExportError
from dsedge.export.safety import check_opset, check_replaceable, foreign_entries


def _bundle(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "model.onnx").write_bytes(b"onnx")
    (root / "MODEL_CARD.md").write_text("card")
    (root / "timing.h100.trt10.cache").write_bytes(b"cache")  # a by-product build does not list
    (root / "dsedge.json").write_text(json.dumps({"format": "dsedge-bundle", "artifacts": {"model.onnx": {}}}))
    return root


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_bundle_may_be_replaced(tmp_path: Path) -> None:
    check_replaceable(_bundle(tmp_path / "b"), force=True)
    (tmp_path / "empty").mkdir()
    check_replaceable(tmp_path / "empty", force=True)
    check_replaceable(tmp_path / "new", force=False)


@pytest.mark.parametrize("setup, message", [
    (lambda d: (d.mkdir(), (d / "last.safetensors").write_bytes(b"w"), (d / "history.csv").write_text("e")),
     "is not a dsedge bundle"),
    (lambda d: (_bundle(d), (d / "notes.txt").write_text("mine")), "holds files that are not part of its bundle"),
    (lambda d: (_bundle(d), (d / "eval-val").mkdir()), "eval-val/"),
    (lambda d: (d.mkdir(), (d / "dsedge.json").write_text('{"format": "something-else"}')), "is not a dsedge bundle"),
])
def test_force_refuses_anything_but_a_bundle(tmp_path: Path, setup, message) -> None:
    d = tmp_path / "out"
    setup(d)
    with pytest.raises(BundleError, match=message):
        check_replaceable(d, force=True)


def test_foreign_entries_lists_what_would_be_lost(tmp_path: Path) -> None:
    d = _bundle(tmp_path / "b")
    (d / "keep.txt").write_text("x")
    assert foreign_entries(d) == ["keep.txt"]


def test_cli_export_force_on_a_training_run_loses_nothing(tmp_path: Path, capsys) -> None:
    run = tmp_path / "runs" / "r"
    run.mkdir(parents=True)
    (run / "best.safetensors").write_bytes(b"weights")
    (run / "config.json").write_text("{}")
    before = _files(run)
    with pytest.raises(SystemExit) as e:
        main(["export", "--random-init", "--out", str(run), "--force"])
    err = " ".join(capsys.readouterr().err.split())
    assert e.value.code == 2 and "--force replaces only a dsedge bundle" in err and "hint:" in err
    assert _files(run) == before


@pytest.mark.parametrize("opset", [5, 17, 99])
def test_unsupported_opsets_are_refused(opset: int) -> None:
    with pytest.raises(ExportError, match=f"--opset {opset} is not supported"):
        check_opset(opset)
    check_opset(18)


class _Tiny(__import__("torch").nn.Module):
    """One conv, one SimAM, a head: exports in a second."""

    def __init__(self, num_classes: int = 3) -> None:
        from torch import nn

        from dsedge.models.simam import SimAM

        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.simam = SimAM(1e-4)
        self.fc = nn.Linear(4, num_classes)

    def forward(self, x):  # noqa: ANN001, ANN201
        return self.fc(self.simam(self.conv(x)).mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One export for the module (exports are slow on a busy CPU); tests edit copies."""
    from dsedge.export import export_bundle
    from dsedge.models import zoo

    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(zoo.MODELS, "tiny_test", zoo.ModelSpec("tiny_test", _Tiny, 16))
        return export_bundle(None, tmp_path_factory.mktemp("exported") / "b", model_name="tiny_test",
                             random_init=True)


@pytest.fixture
def tiny_bundle(exported: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(exported, tmp_path / "b"))


@pytest.mark.parametrize("edit, key", [
    (lambda m: m.update(classes=["NV", "MEL", "SK"]), "classes"),
    (lambda m: m["preprocessing"].update(mean=[0.5, 0.5, 0.5]), "preprocessing"),
    (lambda m: m["model"].update(simam_lambda=0.1), "simam_lambda"),
    (lambda m: m["input"].update(shape=["N", 3, 32, 32]), "input_shape"),
])
def test_manifest_edits_that_change_results_are_refused(tiny_bundle: Path, edit, key) -> None:
    """Issue 14 item 8: the facts are sealed in the hashed ONNX files; dsedge.json must agree with them."""
    from dsedge.bundle import load_bundle
    from dsedge.bundle.rules import FACTS_KEY, onnx_metadata

    assert FACTS_KEY in onnx_metadata(tiny_bundle / "model.onnx")
    load_bundle(tiny_bundle)
    path = tiny_bundle / "dsedge.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=f"was edited: .*{key}"):
        load_bundle(tiny_bundle)


@pytest.mark.parametrize("name", ["../other/model.onnx", "/etc/passwd", "sub/model.onnx", "..", ".hidden"])
def test_artifact_paths_must_stay_inside_the_bundle(tiny_bundle: Path, name: str) -> None:
    from dsedge.bundle import load_bundle

    path = tiny_bundle / "dsedge.json"
    manifest = json.loads(path.read_text())
    manifest["artifacts"][name] = manifest["artifacts"].pop("model.onnx")
    path.write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="is not a file inside the bundle"):
        load_bundle(tiny_bundle, verify=False)


@pytest.mark.parametrize("version", ["1", "x", None, 1.5, True, 0])
def test_a_bad_format_version_is_one_clear_error(tiny_bundle: Path, version) -> None:
    from dsedge.bundle import load_bundle

    path = tiny_bundle / "dsedge.json"
    manifest = json.loads(path.read_text())
    manifest["format_version"] = version
    path.write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="format_version must be a whole number"):
        load_bundle(tiny_bundle)


def test_force_accepts_the_temporaries_of_a_killed_dsedge_writer(tmp_path: Path) -> None:
    """Issue 26: `.model.int8.onnx.*.tmp` (old and pid-tagged names) made `export --force` refuse the bundle."""
    d = _bundle(tmp_path / "b")
    for name in (".model.int8.onnx.k2j3h4.tmp", ".model.onnx.p123-ab.tmp", ".roc.png.x1y2z3.tmp",
                 ".MODEL_CARD.md.abc.tmp", ".dsedge.json.p9-q.tmp"):
        (d / name).write_bytes(b"half")
    assert foreign_entries(d) == []
    check_replaceable(d, force=True)
    (d / ".notes.txt.abc.tmp").write_text("not ours")
    assert foreign_entries(d) == [".notes.txt.abc.tmp"]
