"""The C++ reference (examples/cpp) against the golden vectors and the Python runtime (issue 23).

Builds examples/cpp with cmake into a temporary folder (OpenVINO's C++ runtime from the `openvino`
wheel; libjpeg, libexif and nlohmann-json from `.ci/cpp_deps.sh`) and checks: the input tensors of
the bundle's vector images within the contract's tolerance (bit-exact in practice), the same
decisions for every artifact, all eight EXIF orientations, a clear refusal of what the reference does
not implement (ICC, CMYK), and on ISIC 2017 val (DSEDGE_ISIC2017) the Python runtime's decision on
every image. Skipped with the reason when a tool or header is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms
from tiny_bundle import make_tiny_bundle

from dsedge.export.vectors import write_vectors
from dsedge.runtime.contract import TENSOR_TOLERANCE
from dsedge.runtime.preprocess import preprocess_image
from dsedge.runtime.vectors import logit_tolerance
from dsedge.utils.images import load_rgb

pytestmark = pytest.mark.slow  # the cmake build alone takes 20-60 s on a 2-core machine

SOURCE = Path(__file__).resolve().parents[1] / "examples" / "cpp"
HEADERS = ("jpeglib.h", "libexif/exif-data.h", "nlohmann/json.hpp")


def _missing_tools() -> str | None:
    for tool in ("cmake", "g++", "make"):
        if shutil.which(tool) is None:
            return f"{tool} not found (run .ci/cpp_deps.sh)"
    for header in HEADERS:
        if not any((Path(d) / header).is_file() for d in ("/usr/include", "/usr/local/include")):
            return f"{header} not found (run .ci/cpp_deps.sh)"
    try:
        import openvino
    except ImportError:
        return "the openvino wheel is not installed (pip install 'dsedge[openvino]')"
    if not (Path(openvino.__file__).parent / "cmake" / "OpenVINOConfig.cmake").is_file():
        return "this openvino wheel ships no CMake config"
    return None


@pytest.fixture(scope="module")
def exe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    why = _missing_tools()
    if why:
        pytest.skip(why)
    import openvino

    build = tmp_path_factory.mktemp("cpp-build")
    ov_dir = Path(openvino.__file__).parent / "cmake"
    for cmd in (["cmake", "-S", str(SOURCE), "-B", str(build), f"-DOpenVINO_DIR={ov_dir}"],
                ["cmake", "--build", str(build), "-j", "2"]):
        done = subprocess.run(cmd, capture_output=True, text=True)
        assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return build / "dsedge_ref"


def run_ref(exe: Path, bundle: Path, images: list[Path], model: Path | None = None,
            dump: Path | None = None) -> tuple[int, list[dict]]:
    cmd = [str(exe), str(bundle), *map(str, images), "--json"]
    if model is not None:
        cmd += ["--model", str(model)]
    if dump is not None:
        dump.mkdir(parents=True, exist_ok=True)
        cmd += ["--dump-dir", str(dump)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def dumped(dump: Path, image: Path, crop: int) -> np.ndarray:
    return np.fromfile(dump / f"{image.stem}.f32", dtype="<f4").reshape(3, crop, crop)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_tiny_bundle(tmp_path_factory.mktemp("cpp") / "bundle", crop=112, resize=128)
    write_vectors(root)
    return root


def test_golden_vectors(exe: Path, bundle: Path, tmp_path: Path) -> None:
    index = json.loads((bundle / "vectors" / "vectors.json").read_text())
    images = [bundle / "vectors" / im["file"] for im in index["images"]]
    for name, entry in index["artifacts"].items():
        rc, out = run_ref(exe, bundle, images, model=bundle / name, dump=tmp_path / name)
        assert rc == 0, out
        for im, path in zip(index["images"], images, strict=True):
            expected = np.load(bundle / "vectors" / im["tensor"])
            assert np.abs(dumped(tmp_path / name, path, 112) - expected).max() <= TENSOR_TOLERANCE, im["name"]
        assert [r["decision"] for r in out] == entry["decisions"], name
        ref = np.load(bundle / "vectors" / entry["logits"])
        got = np.array([r["logits"] for r in out], dtype=np.float32)
        assert np.abs(got - ref).max() <= logit_tolerance(entry["precision"], ref), name
        assert all(set(r["timings_ms"]) == {"decode", "preprocess", "infer", "post"} for r in out)


def test_all_eight_exif_orientations(exe: Path, bundle: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    pixels = np.clip(rng.normal(128, 50, (151, 233, 3)), 0, 255).astype(np.uint8)  # asymmetric: a wrong turn shows
    paths = []
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        path = tmp_path / f"o{orientation}.jpg"
        Image.fromarray(pixels).save(path, quality=92, exif=exif.tobytes())
        paths.append(path)
    rc, out = run_ref(exe, bundle, paths, dump=tmp_path / "dump")
    assert rc == 0 and [r["exif_orientation"] for r in out] == list(range(1, 9))
    pre = json.loads((bundle / "dsedge.json").read_text())["preprocessing"]
    tensors = [dumped(tmp_path / "dump", p, 112) for p in paths]
    for path, tensor in zip(paths, tensors, strict=True):
        assert np.abs(tensor - preprocess_image(load_rgb(path), pre)).max() <= TENSOR_TOLERANCE, path.name
    assert len({t.tobytes() for t in tensors}) == 8  # eight different pictures, each matched


def test_refuses_what_it_does_not_implement(exe: Path, bundle: Path, tmp_path: Path) -> None:
    pixels = np.full((64, 80, 3), 140, np.uint8)
    icc = tmp_path / "icc.jpg"
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(pixels).save(icc, icc_profile=srgb)
    cmyk = tmp_path / "cmyk.jpg"
    Image.fromarray(pixels).convert("CMYK").save(cmyk)
    png = tmp_path / "lesion.png"
    Image.fromarray(pixels).save(png)
    rc, out = run_ref(exe, bundle, [icc, cmyk, png])
    assert rc == 1
    assert ["ICC" in out[0]["error"], "CMYK" in out[1]["error"], "not a JPEG" in out[2]["error"]] == [True] * 3


@pytest.fixture(scope="module")
def shipped_bundle(tmp_path_factory: pytest.TempPathFactory, isic_root: Path) -> Path:
    pytest.importorskip("torch")
    from dsedge.export.bundle import export_bundle
    from dsedge.models.weights import reference_checkpoint

    ckpt = reference_checkpoint()
    if ckpt is None:
        pytest.skip("the shipped isic2017 weights are not in this install")
    return export_bundle(ckpt, tmp_path_factory.mktemp("shipped") / "bundle", parity_images=2, inline_simam=True)


def test_isic_val_decisions_match_the_python_runtime(exe: Path, shipped_bundle: Path, isic_root: Path) -> None:
    from dsedge.data import load_split
    from dsedge.runtime.predict import Predictor

    paths = [s.path for s in load_split(isic_root, "val").samples]
    with Predictor(shipped_bundle, backend="onnxruntime", precision="fp32", quality_checks=False) as p:
        expected = [r["decision"] for r in p.predict(paths)]
    # OpenVINO's ONNX reader needs the dsedge::SimAM functions inlined: the bundle's model.inline.onnx
    rc, out = run_ref(exe, shipped_bundle, paths, model=shipped_bundle / "model.inline.onnx")
    assert rc == 0, [r for r in out if "error" in r][:3]
    got = [r["decision"] for r in out]
    assert len(got) == len(expected) == 150
    assert [i for i, (a, b) in enumerate(zip(got, expected, strict=True)) if a != b] == []
    assert os.environ.get("DSEDGE_ISIC2017")
