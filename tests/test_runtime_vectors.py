"""`check_vectors` / `dsedge predict --check-vectors`: a runtime against a bundle's golden vectors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tiny_bundle import make_tiny_bundle
from typer.testing import CliRunner

from dsedge.bundle import load_bundle
from dsedge.cli import app, main
from dsedge.errors import BundleError
from dsedge.export.vectors import write_vectors
from dsedge.runtime.vectors import check_vectors, is_vectors_dir, write_index


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    root = make_tiny_bundle(tmp_path / "bundle", crop=112, resize=128)
    write_vectors(root)
    return root


def _rewrite(bundle: Path, name: str, array: np.ndarray) -> None:
    """Change one vector file and re-seal the index (a consistent but wrong set of vectors)."""
    folder = bundle / "vectors"
    np.save(folder / name, array)
    index = json.loads((folder / "vectors.json").read_text())
    write_index(folder, index, list(index["files"]))


def test_the_runtime_matches_its_own_vectors(bundle: Path) -> None:
    report = check_vectors(bundle)
    assert report.ok, report.summary()
    assert set(report.tensor_max_abs_diff) == {"fullsize", "odd_aspect", "grayscale"}
    assert max(report.tensor_max_abs_diff.values()) <= 1e-6
    assert {a.artifact for a in report.artifacts} == {"model.onnx", "model.fp16.onnx"}
    assert [a.precision for a in check_vectors(bundle, precision="fp16").artifacts] == ["fp16"]


def test_wrong_logits_are_a_mismatch(bundle: Path) -> None:
    logits = np.load(bundle / "vectors" / "model.logits.npy")
    _rewrite(bundle, "model.logits.npy", logits + 0.01)
    report = check_vectors(bundle)
    assert not report.ok
    bad = next(a for a in report.artifacts if a.artifact == "model.onnx")
    assert bad.max_abs_logit_diff == pytest.approx(0.01, abs=1e-5) and bad.max_abs_logit_diff > bad.tolerance
    assert "MISMATCH" in report.summary()


def test_a_different_tensor_is_a_mismatch(bundle: Path) -> None:
    tensor = np.load(bundle / "vectors" / "grayscale.input.npy")
    tensor[0, 0, 0] += 0.02  # about one 8-bit level: what a plain bilinear resize or half-up crop gives
    _rewrite(bundle, "grayscale.input.npy", tensor)
    report = check_vectors(bundle)
    assert not report.ok and report.tensor_max_abs_diff["grayscale"] == pytest.approx(0.02, abs=1e-6)


def test_a_tampered_vector_file_is_refused(bundle: Path) -> None:
    (bundle / "vectors" / "model.probs.npy").write_bytes(b"x")
    with pytest.raises(BundleError, match="does not match its sha256"):
        check_vectors(bundle)


def test_stale_vectors_after_an_artifact_changed(bundle: Path) -> None:
    b = load_bundle(bundle)
    b.manifest["artifacts"]["model.fp16.onnx"]["sha256"] = "0" * 64  # as if calibrate replaced the file
    from dsedge.runtime.vectors import _check_artifact  # the comparison that notices it

    index = json.loads((bundle / "vectors" / "vectors.json").read_text())
    check = _check_artifact(b, "model.fp16.onnx", index["artifacts"]["model.fp16.onnx"],
                            np.zeros((3, 3, 112, 112), np.float32), None, "onnxruntime")  # type: ignore[arg-type]
    assert not check.ok and "stale" in check.problem


def test_a_bundle_without_vectors_says_how_to_make_them(tmp_path: Path) -> None:
    root = make_tiny_bundle(tmp_path / "old")
    with pytest.raises(BundleError, match="no golden vectors"):
        check_vectors(root)


def test_is_vectors_dir_only_for_indexed_files(bundle: Path) -> None:
    assert is_vectors_dir(bundle / "vectors")
    (bundle / "vectors" / "extra.bin").write_bytes(b"1")
    assert not is_vectors_dir(bundle / "vectors")
    assert not is_vectors_dir(bundle)


def test_cli_exit_codes(bundle: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runner = CliRunner()
    ok = runner.invoke(app, ["predict", str(bundle), "--check-vectors"])
    assert ok.exit_code == 0, ok.output
    assert "vectors: all match" in ok.output
    data = json.loads(runner.invoke(app, ["predict", str(bundle), "--check-vectors", "--json"]).output)
    assert data["ok"] is True and len(data["artifacts"]) == 2
    logits = np.load(bundle / "vectors" / "model.fp16.logits.npy")
    _rewrite(bundle, "model.fp16.logits.npy", logits[:, ::-1].copy())  # swapped classes: other decisions
    bad = runner.invoke(app, ["predict", str(bundle), "--check-vectors"])
    assert bad.exit_code == 1 and "MISMATCH" in bad.output
    with pytest.raises(SystemExit) as e:
        main(["predict", str(bundle)])
    assert e.value.code == 2 and "no images given" in capsys.readouterr().err
