"""`Predictor` / `dsedge predict`: backend choice, probabilities on full-size ISIC images, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fake_tensorrt import install
from lesion_images import save_lesions
from PIL import Image
from tiny_bundle import CLASSES, make_tiny_bundle, reference_logits

from dsedge.engines.base import softmax
from dsedge.engines.trt_build import build_engine
from dsedge.errors import BundleError, DsedgeError, EngineError, MissingDependencyError
from dsedge.runtime import Predictor, load_bundle, predict, preprocess_files

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    return make_tiny_bundle(tmp_path / "bundle")


@pytest.fixture
def images(tmp_path: Path) -> list[Path]:
    # lesion-like images pass every quality check (pixel noise is "not a dermoscopy image")
    return save_lesions(tmp_path, [(200, 160), (140, 230), (150, 150)])


def _expected(bundle: Path, paths: list[Path]) -> np.ndarray:
    return softmax(reference_logits(preprocess_files(paths, load_bundle(bundle).preprocessing)))


def _cli(args: list[str], capsys) -> tuple[int, str, str]:  # noqa: ANN001
    from dsedge.cli import main

    with pytest.raises(SystemExit) as e:
        main(args)
    out = capsys.readouterr()
    return int(e.value.code), out.out, out.err


def test_onnxruntime_probabilities(bundle: Path, images: list[Path]) -> None:
    with Predictor(bundle) as p:  # no tensorrt here: auto -> ONNX Runtime fp32
        assert p.info.backend == "onnxruntime" and p.info.precision == "fp32"
        results = p.predict(images, batch_size=2)
    expected = _expected(bundle, images)
    assert [r["image"] for r in results] == [str(x) for x in images]
    for r, e in zip(results, expected, strict=True):
        probs = np.array([r["probabilities"][c] for c in CLASSES])
        np.testing.assert_allclose(probs, e, atol=1e-5)
        assert abs(probs.sum() - 1) < 1e-5 and r["top_class"] == CLASSES[int(e.argmax())]
    fp16 = predict(bundle, images, backend="onnxruntime", precision="fp16")
    assert [r["top_class"] for r in fp16] == [r["top_class"] for r in results]


def test_predict_images_in_memory(bundle: Path, images: list[Path]) -> None:
    with Predictor(bundle, backend="onnxruntime") as p:
        from_files = p.predict(images[:1])[0]["probabilities"]
        from_pil = p.predict_images([Image.open(images[0])], names=["frame"])[0]
    assert from_pil["image"] == "frame"
    for c in CLASSES:
        assert from_pil["probabilities"][c] == pytest.approx(from_files[c], abs=1e-6)


def test_tensorrt_is_preferred_when_an_engine_matches(monkeypatch, bundle: Path, images: list[Path]) -> None:
    env = install(monkeypatch, "11.4.0")
    build_engine(bundle, "fp16", max_batch=2, opt_batch=2)
    with Predictor(bundle) as p:
        assert p.info.backend == "tensorrt" and p.info.precision == "fp16" and p.fallback_reason is None
        results = p.predict(images)  # 3 images > engine max 2: the runner splits
    assert len(env.find("execute_async_v3")) == 2
    probs = np.array([[r["probabilities"][c] for c in CLASSES] for r in results])
    np.testing.assert_allclose(probs, _expected(bundle, images), atol=1e-3)


def test_fallback_to_onnxruntime_and_explicit_tensorrt(monkeypatch, bundle: Path, images: list[Path]) -> None:
    install(monkeypatch, "10.3.0.30")
    build_engine(bundle, "fp16")
    install(monkeypatch, "10.3.0.30", gpu_name="NVIDIA L4", cc=(8, 9))  # the bundle moved to another device
    with Predictor(bundle) as p:
        assert p.info.backend == "onnxruntime"
        assert "compute capability 9.0" in p.fallback_reason
    with pytest.raises(EngineError, match="compute capability"):
        Predictor(bundle, backend="tensorrt")
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with Predictor(bundle) as p:
        assert p.info.backend == "onnxruntime" and "'tensorrt' is not installed" in p.fallback_reason
    with pytest.raises(MissingDependencyError):
        Predictor(bundle, backend="tensorrt")


def test_bad_inputs_fail_clearly(bundle: Path, images: list[Path], tmp_path: Path) -> None:
    with pytest.raises(DsedgeError, match="unknown precision 'fp8'"):
        Predictor(bundle, precision="fp8")
    with pytest.raises(DsedgeError, match="unknown backend 'tpu'"):
        Predictor(bundle, backend="tpu")
    with pytest.raises(BundleError, match="no onnx int8 artifact") as e:
        Predictor(bundle, precision="int8")
    assert "dsedge calibrate" in e.value.hint
    with pytest.raises(BundleError, match="bundle not found"):
        Predictor(tmp_path / "nope")
    bad = tmp_path / "corrupt.jpg"
    bad.write_bytes(images[0].read_bytes()[:200])  # truncated JPEG
    with Predictor(bundle) as p:  # one bad file is one error entry, not a lost batch
        good, broken, missing = p.predict([images[0], bad, tmp_path / "absent.jpg"])
    assert good["error"] is None and good["top_class"] in CLASSES
    assert "corrupt.jpg" in broken["error"] and broken["decision"] == "cannot assess"
    assert broken["probabilities"] is None and "image not found" in missing["error"]
    # a manifest that disagrees with the model's outputs
    b = load_bundle(bundle)
    b.manifest["classes"] = ["MEL", "NV", "SK", "BCC"]
    b.save()
    with Predictor(bundle) as p, pytest.raises(BundleError, match="4 classes"):
        p.predict(images[:1])


def test_corrupt_engine_is_refused(monkeypatch, bundle: Path, images: list[Path], capsys) -> None:
    install(monkeypatch, "10.3.0.30")
    plan = build_engine(bundle, "fp16")
    plan.write_bytes(plan.read_bytes()[:-10])  # truncated engine
    with pytest.raises(BundleError, match="does not match its manifest sha256"):
        Predictor(bundle)
    code, _, err = _cli(["predict", str(bundle), str(images[0])], capsys)
    assert code == 2 and "does not match its manifest sha256" in err and "Traceback" not in err


def test_cli_errors_exit_2(bundle: Path, images: list[Path], tmp_path: Path, capsys) -> None:
    code, _, err = _cli(["predict", str(bundle), str(images[0]), "--precision", "int4"], capsys)
    assert code == 2 and "unknown precision 'int4'" in err
    code, _, err = _cli(["predict", str(bundle), str(images[0]), "--precision", "int8"], capsys)
    assert code == 2 and "no onnx int8 artifact" in err
    code, out, err = _cli(["predict", str(bundle), str(images[0]), str(tmp_path / "missing.jpg")], capsys)
    assert code == 1 and "image not found" in out + err and images[0].name in out


@pytest.mark.slow
def test_cli_on_fullres_images(fullres_dir: Path, tmp_path: Path, capsys) -> None:
    bundle = make_tiny_bundle(tmp_path / "b224", crop=224, resize=256)
    paths = sorted(fullres_dir.glob("*.jpg"))
    code, out, _ = _cli(["predict", str(bundle), *map(str, paths), "--json"], capsys)
    assert code == 0
    report = json.loads(out)
    assert report["runner"]["backend"] == "onnxruntime" and len(report["results"]) == 7
    expected = _expected(bundle, paths)
    for r, e in zip(report["results"], expected, strict=True):
        # 224x224 average pool in float32: ORT and NumPy sum in different orders
        np.testing.assert_allclose([r["probabilities"][c] for c in CLASSES], e, atol=1e-4)
    code, out, _ = _cli(["predict", str(bundle), *map(str, paths[:2])], capsys)
    assert code == 0 and paths[0].name in out and "top class" in out


def test_embedding_example(bundle: Path, images: list[Path]) -> None:
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "embed.py"), str(bundle), *map(str, images)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0].startswith("runner: onnxruntime fp32") and len(lines) == 1 + len(images)
    bad = subprocess.run([sys.executable, str(ROOT / "examples" / "embed.py"), str(bundle), "missing.jpg"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "image not found" in bad.stderr


@pytest.mark.slow
def test_real_ds_resnet50_bundle(fullres_dir: Path, tmp_path: Path) -> None:
    """The exported DS-ResNet50 (32 dsedge::SimAM function calls) through the torch-free Predictor.

    Exporting needs torch: in the runtime-only venv (.ci/runtime_only.sh) this test skips, the
    tiny-bundle tests above cover the torch-free path there.
    """
    pytest.importorskip("torch", reason="exporting the bundle needs the training extra")
    from dsedge.engines.ort_runner import OrtRunner
    from dsedge.export import export_bundle

    bundle = export_bundle(None, tmp_path / "ds", model_name="ds_resnet50", random_init=True, image_size=32,
                           parity_images=2)
    paths = sorted(fullres_dir.glob("*.jpg"))[:3]
    with Predictor(bundle) as p:
        results = p.predict(paths)
    x = preprocess_files(paths, load_bundle(bundle).preprocessing)
    assert x.shape == (3, 3, 32, 32)
    ref = softmax(OrtRunner(Path(bundle) / "model.onnx", providers="CPUExecutionProvider").infer(x))
    got = np.array([[r["probabilities"][c] for c in load_bundle(bundle).classes] for r in results])
    np.testing.assert_allclose(got, ref, atol=1e-6)
    fp16 = predict(bundle, paths, precision="fp16")
    assert max(abs(a["top_probability"] - b["top_probability"]) for a, b in zip(fp16, results, strict=True)) < 0.05


# -- nothing silent, nothing mangled (issue 26) -------------------------------------------------------


def test_glob_matching_nothing_and_empty_folder_are_errors(bundle: Path, tmp_path: Path, capsys) -> None:
    code, out, err = _cli(["predict", str(bundle), str(tmp_path / "scans" / "*.jpg")], capsys)
    assert code == 2 and "no image file matches" in err and "*.jpg" in err and "Traceback" not in err
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not an image")
    code, out, err = _cli(["predict", str(bundle), str(tmp_path / "empty")], capsys)
    assert code == 2 and "no image files in folder" in err and out == ""


def test_dangling_symlink_in_a_folder_is_reported(bundle: Path, images: list[Path], tmp_path: Path, capsys) -> None:
    folder = tmp_path / "scans"
    folder.mkdir()
    (folder / "good.jpg").write_bytes(images[0].read_bytes())
    (folder / "gone.jpg").symlink_to(tmp_path / "deleted.jpg")
    code, out, err = _cli(["predict", str(bundle), str(folder), "--json"], capsys)
    report = json.loads(out)
    broken = next(r for r in report["results"] if r["image"].endswith("gone.jpg"))
    assert code == 1 and "broken symbolic link" in broken["error"] and "deleted.jpg" in broken["error"]
    assert report["summary"]["counts"]["errors"] == 1 and report["summary"]["images"] == 2


@pytest.mark.parametrize("url", ["https://example.org/scans/a.jpg", "http://host/x.png"])
def test_urls_are_refused_not_mangled(bundle: Path, url: str, capsys) -> None:
    code, _, err = _cli(["predict", str(bundle), url], capsys)
    assert code == 2 and "URLs are not supported" in err and url in err  # not "https:/example.org"


def test_heatmaps_path_that_is_a_file_fails_before_inference(monkeypatch, images: list[Path], tmp_path: Path,
                                                           capsys) -> None:
    pytest.importorskip("torch", reason="the heat-map bundle is exported with the training extra")
    from cam_bundle import make_cam_bundle

    bundle = make_cam_bundle(tmp_path / "cam")
    afile = tmp_path / "afile"
    afile.write_text("x")

    def no_inference(*_a, **_k):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("inference ran before the heat-map folder was checked")

    monkeypatch.setattr(Predictor, "infer", no_inference)
    code, _, err = _cli(["predict", str(bundle), str(images[0]), "--heatmaps", str(afile)], capsys)
    assert code == 2 and "is a file, not a folder" in err and str(afile) in err and "Traceback" not in err


def test_tensorrt_notice_only_with_verbose(monkeypatch, bundle: Path, images: list[Path], capsys) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    code, out, _ = _cli(["predict", str(bundle), str(images[0])], capsys)
    assert code == 0 and "TensorRT not used" not in out
    code, out, _ = _cli(["predict", str(bundle), str(images[0]), "-v"], capsys)
    assert code == 0 and "TensorRT not used" in out


CLAIM = {"class": "MEL", "threshold": 0.077,
         "sensitivity": {"value": 0.9, "ci": [0.74, 0.98], "split": "val", "method": "bootstrap", "n": 30},
         "specificity": {"value": 0.42, "ci": [0.33, 0.51], "split": "val", "n": 120}}


def test_claim_line_reads_the_operating_point_defensively() -> None:
    from dsedge.runtime.decision import clinical_claim_line

    line = clinical_claim_line({"clinical": {"operating_point": CLAIM}})
    assert line == ("refer when P(MEL) >= 0.077; claimed melanoma sensitivity 0.90 (95 % CI 0.74-0.98, val split, "
                    "bootstrap, n=30); specificity 0.42 (95 % CI 0.33-0.51, val split, n=120)")
    only_threshold = clinical_claim_line({"clinical": {"operating_point": {"threshold": 0.5}}})
    assert only_threshold == "refer when P(MEL) >= 0.500"  # no claim is invented
    broken = {"threshold": 0.5, "sensitivity": {"value": "high"}, "specificity": [0.4]}
    assert clinical_claim_line({"clinical": {"operating_point": broken}}) == "refer when P(MEL) >= 0.500"
    for manifest in ({}, {"clinical": None}, {"clinical": {"operating_point": {"threshold": "high"}}},
                     {"clinical": {"operating_point": []}}):
        assert clinical_claim_line(manifest) is None


def test_summary_counts_and_operating_point_after_the_table(bundle: Path, images: list[Path], tmp_path: Path,
                                                            capsys) -> None:
    from dsedge.bundle import load_bundle as load

    dark = tmp_path / "dark.png"
    Image.new("RGB", (200, 200)).save(dark)
    code, out, _ = _cli(["predict", str(bundle), *map(str, images), str(dark)], capsys)
    summary = next(line for line in out.splitlines() if line.startswith("4 images: refer "))
    assert code == 0 and summary.endswith("cannot assess 1, errors 0")
    assert "P(MEL) >=" not in out  # no fitted operating point: no claim
    b = load(bundle)
    b.manifest["clinical"] = {"temperature": 1.0, "operating_point": CLAIM}
    b.save()
    code, out, _ = _cli(["predict", str(bundle), *map(str, images)], capsys)
    assert code == 0 and "(refer when P(MEL) >= 0.077; claimed melanoma sensitivity 0.90 (95 % CI 0.74-0.98" in out
    code, out, _ = _cli(["predict", str(bundle), *map(str, images), "--json"], capsys)
    summary = json.loads(out)["summary"]
    assert summary["images"] == 3 and sum(summary["counts"].values()) == 3
    assert set(summary["counts"]) == {"refer", "NV", "SK", "cannot assess", "errors"}
    assert summary["operating_point"].startswith("refer when P(MEL) >= 0.077")


def test_noise_is_not_classified(bundle: Path, tmp_path: Path) -> None:
    noise = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (300, 400, 3), dtype=np.uint8)).save(noise)
    with Predictor(bundle) as p:
        (r,) = p.predict([noise])
    assert r["decision"] == "cannot assess" and r["quality"]["flags"] == ["not_dermoscopy"]
    assert r["probabilities"] is None and "not a dermoscopy image" in r["quality"]["notes"][0]
