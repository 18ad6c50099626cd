"""The device install is torch-free: base dependencies, the `train` extra, and the CLI without torch.

CI proves it for real in a second, clean venv (.ci/runtime_only.sh: `pip install .`,
`dsedge predict`, the runtime tests); these tests pin the pieces that make it work.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from dsedge.config import tomllib

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "torchvision", "nvidia-", "triton", "tensorrt", "cuda-python")


def _names(requirements: list[str]) -> list[str]:
    return [re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0].strip().lower() for r in requirements]


def test_base_install_is_the_runtime_and_train_extra_has_the_rest() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = _names(project["dependencies"])
    assert not [n for n in base if n.startswith(HEAVY)], base
    assert {"numpy", "pillow", "onnxruntime", "typer", "rich"} <= set(base)
    train = _names(project["optional-dependencies"]["train"])
    assert {"torch", "torchvision", "onnx", "onnxscript", "safetensors"} <= set(train)
    # `make install` (what `make test` / `make bench` run) installs the training side
    assert re.search(r"pip install -e '\.\[train,[^']*\]'", (ROOT / "Makefile").read_text())
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci and ".ci/runtime_only.sh" in ci


def test_training_command_without_torch_says_which_extra(monkeypatch, tmp_path: Path, capsys) -> None:
    from dsedge.cli import main

    for name in [m for m in sys.modules if m == "torch" or m.startswith("torch.") or m.startswith("dsedge.train")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ModuleNotFoundError
    with pytest.raises(SystemExit) as e:
        main(["eval", str(tmp_path / "ckpt.safetensors"), "--data", str(tmp_path)])
    err = capsys.readouterr().err
    assert e.value.code == 2, err
    assert "'torch' is not installed" in err and "pip install 'dsedge[train]'" in err and "internal error" not in err


def test_dsedge_warnings_print_as_one_line(capsys) -> None:
    from dsedge.cli import _show_warning
    from dsedge.engines.trt_build import TensorRTWarning

    _show_warning(TensorRTWarning("TF32 stays on"), TensorRTWarning, "x.py", 1)
    assert capsys.readouterr().err.strip() == "warning: TF32 stays on"


# ---------------------------------------------------------------------------------------------
# The TensorRT extras and docs/TENSORRT.md's install lines, resolved against PyPI metadata recorded here.
#
# Recorded on 2026-12-07 (issue 25) with pip, the ordinary client: `pip index versions NAME` for the release
# lists, `pip download --no-deps --no-binary :all: NAME==V` for the tensorrt* sdists (their PKG-INFO's
# Requires-Dist) and `pip download --no-deps NAME==V` for cuda-python (wheel METADATA). The test needs no
# network: it proves the extras resolve as intended *given this metadata*, the way pip picks (newest release
# that satisfies every specifier), not that PyPI still says so tomorrow. Re-record it when a new major appears.
RELEASES = {
    "tensorrt": ["11.4.0.106", "11.3.0.99", "11.2.1.2", "11.1.0.106", "11.0.0.114", "10.16.1.11", "10.16.0.72",
                 "10.15.1.29", "10.14.1.48.post1", "10.14.1.48", "10.13.3.9.post1", "10.13.3.9", "10.13.2.6",
                 "10.13.0.35", "10.12.0.36", "10.11.0.33", "10.10.0.31", "10.9.0.34", "10.8.0.43", "10.7.0.post1",
                 "10.7.0", "10.6.0.post2", "10.6.0.post1", "10.6.0", "10.5.0", "10.4.0", "10.3.0", "10.2.0.post1",
                 "10.2.0", "10.1.0", "10.0.1", "8.6.1.post1", "8.6.1"],
    "tensorrt-cu12": ["11.4.0.106", "11.3.0.99", "11.2.1.2", "11.1.0.106", "11.0.0.114", "10.16.1.11", "10.16.0.72",
                      "10.15.1.29", "10.14.1.48.post1", "10.14.1.48", "10.13.3.9.post1", "10.13.3.9", "10.13.2.6",
                      "10.13.0.35", "10.12.0.36", "10.11.0.33", "10.10.0.31", "10.9.0.34", "10.8.0.43",
                      "10.7.0.post1", "10.7.0", "10.6.0.post2", "10.6.0.post1", "10.6.0", "10.5.0", "10.4.0",
                      "10.3.0", "10.2.0.post1", "10.2.0", "10.1.0", "10.0.1"],
    "tensorrt-cu13": ["11.4.0.106", "11.3.0.99", "11.2.1.2", "11.1.0.106", "11.0.0.114", "10.16.1.11", "10.16.0.72",
                      "10.15.1.29", "10.14.1.48.post1", "10.14.1.48", "10.13.3.9.post1", "10.13.3.9", "10.13.2.6"],
    "cuda-python": ["13.4.4", "13.4.1", "13.3.1", "13.3.0", "13.2.0", "13.1.1", "13.1.0", "13.0.3", "13.0.2",
                    "13.0.1", "13.0.0", "12.9.10", "12.9.7", "12.9.6", "12.9.5", "12.9.4", "12.9.3", "12.9.2",
                    "12.9.1", "12.9.0", "12.8.0", "12.6.2.post1", "12.6.0", "12.5.0", "12.4.0", "12.3.0", "12.2.1",
                    "12.2.0", "12.1.0", "11.8.7", "11.8.6", "11.8.5.post1", "11.8.3"],
}
#: Requires-Dist (extras-free) of the releases the resolutions below reach. tensorrt-cu12 10.3.0's sdist has
#: none: its setup.py installs tensorrt-cu12-libs / -bindings 10.3.0 from pypi.nvidia.com itself.
REQUIRES = {
    ("tensorrt", "11.4.0.106"): ["tensorrt_cu13==11.4.0.106"],
    ("tensorrt", "10.16.1.11"): ["tensorrt_cu13==10.16.1.11"],
    ("tensorrt", "10.13.3.9"): ["tensorrt_cu13==10.13.3.9"],
    ("tensorrt", "10.13.0.35"): ["tensorrt_cu12==10.13.0.35"],
    ("tensorrt", "10.3.0"): ["tensorrt-cu12==10.3.0"],
    ("tensorrt-cu12", "11.4.0.106"): ["tensorrt_cu12_libs==11.4.0.106", "tensorrt_cu12_bindings==11.4.0.106"],
    ("tensorrt-cu12", "10.16.1.11"): ["tensorrt_cu12_libs==10.16.1.11", "tensorrt_cu12_bindings==10.16.1.11"],
    ("tensorrt-cu12", "10.3.0"): [],
    ("tensorrt-cu13", "11.4.0.106"): ["tensorrt_cu13_libs==11.4.0.106", "tensorrt_cu13_bindings==11.4.0.106"],
    ("cuda-python", "13.4.4"): ["cuda-bindings~=13.4.4", "cuda-core~=1.2.0", "cuda-pathfinder~=1.1"],
    ("cuda-python", "12.9.10"): ["cuda-bindings~=12.9.10"],
    ("cuda-python", "12.9.0"): ["cuda-bindings~=12.9.0"],
    ("cuda-python", "12.6.2.post1"): ['pywin32 ; sys_platform == "win32"'],
}
LINUX = {"sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64", "python_version": "3.11"}


def _canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _resolve(requirements: list[str]) -> dict[str, str]:
    """{distribution: version} pip would install from the recorded metadata (newest release meeting every pin)."""
    from packaging.requirements import Requirement
    from packaging.version import Version

    pins: dict[str, list] = {}
    todo = [Requirement(r) for r in requirements]
    chosen: dict[str, str] = {}
    while todo:
        req = todo.pop(0)
        if req.marker and not req.marker.evaluate(LINUX):
            continue
        name = _canon(req.name)
        pins.setdefault(name, []).append(req.specifier)
        if name not in RELEASES:  # a leaf we did not record releases for (libs, bindings): its pin is the answer
            chosen[name] = str(req.specifier)
            continue
        ok = [v for v in RELEASES[name] if all(Version(v) in spec for spec in pins[name])]
        assert ok, f"nothing satisfies {name} {pins[name]}"
        best = max(ok, key=Version)
        if chosen.get(name) != best:
            chosen[name] = best
            assert (name, best) in REQUIRES, f"record the Requires-Dist of {name} {best}"
            todo += [Requirement(r) for r in REQUIRES[(name, best)]]
    return chosen


def _cuda_major(chosen: dict[str, str]) -> int:
    """The CUDA major the resolution commits to: tensorrt_cuNN wheels and cuda-python's major must agree."""
    majors = {int(m) for n in chosen for m in re.findall(r"^tensorrt-cu(\d+)", n)}
    if "cuda-python" in chosen:
        majors.add(int(chosen["cuda-python"].split(".")[0]))
    assert len(majors) == 1, (chosen, majors)
    return majors.pop()


def _tensorrt_major(chosen: dict[str, str]) -> int | None:
    versions = [v for n, v in chosen.items() if re.fullmatch(r"tensorrt(-cu\d+)?", n)]
    return int(versions[0].split(".")[0]) if versions else None


def _extras() -> dict[str, list[str]]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]


def _install_lines() -> dict[str, list[str]]:
    """docs/TENSORRT.md's install block: {comment: [the commands after it]}."""
    text = (ROOT / "docs" / "TENSORRT.md").read_text()
    block = text.split("## Install lines", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    lines: dict[str, list[str]] = {}
    current = ""
    for line in block.strip().splitlines():
        if line.startswith("#"):
            current = line
            lines[current] = []
        else:
            lines[current].append(line.strip())
    return lines


def _requirements_of(command: str) -> list[str]:
    """What `pip install ...` asks for: the base dependencies, each extra's list, and explicit requirements."""
    import shlex

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    args = shlex.split(command)[2:]
    reqs: list[str] = []
    for arg in args:
        if arg.startswith("."):
            reqs += project["dependencies"]
            for extra in re.findall(r"\[(.*)\]", arg)[0].split(",") if "[" in arg else []:
                reqs += _extras()[extra]
        else:
            reqs.append(arg)
    return [r for r in reqs if _canon(re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0]) in RELEASES]


def test_old_tensorrt_extra_resolved_to_cuda_13_which_is_why_the_extras_are_per_cuda_major() -> None:
    """The evidence for issue 25 item 2: `tensorrt>=10.0` + `cuda-python>=12.6` pick TensorRT 11 for CUDA 13."""
    chosen = _resolve(["tensorrt>=10.0", "cuda-python>=12.6"])
    assert chosen["tensorrt"] == "11.4.0.106" and "tensorrt-cu13" in chosen and _cuda_major(chosen) == 13
    assert _resolve(["tensorrt==10.3.0"])["tensorrt-cu12"] == "10.3.0"  # the meta package moved to cu13 in 10.13.3


@pytest.mark.parametrize("extra,cuda,trt_majors", [
    ("tensorrt-cu12", 12, {10, 11}), ("tensorrt-cu13", 13, {10, 11}), ("tensorrt", 12, {10, 11})])
def test_tensorrt_extras_resolve_to_one_cuda_major(extra: str, cuda: int, trt_majors: set) -> None:
    chosen = _resolve(_extras()[extra])
    assert _cuda_major(chosen) == cuda and _tensorrt_major(chosen) in trt_majors
    assert "tensorrt" not in chosen  # never the meta package, whose CUDA major changes under us
    assert all(re.sub(r"\d+", "N", n) in ("tensorrt-cuN", "tensorrt-cuN-libs", "tensorrt-cuN-bindings",
                                          "cuda-python", "cuda-bindings", "cuda-core", "cuda-pathfinder")
               for n in chosen), chosen
    assert all(n.startswith(f"tensorrt-cu{cuda}") for n in chosen if n.startswith("tensorrt"))
    # the oldest release each extra allows: JetPack's 10.3 for CUDA 12, the first cu13 wheel (10.13.2) for CUDA 13
    from packaging.requirements import Requirement
    from packaging.version import Version

    (trt,) = [Requirement(r) for r in _extras()[extra] if r.startswith("tensorrt")]
    oldest = min((v for v in RELEASES[_canon(trt.name)] if Version(v) in trt.specifier), key=Version)
    assert oldest == {12: "10.3.0", 13: "10.13.2.6"}[cuda]
    assert _extras()["tensorrt"] == _extras()["tensorrt-cu12"]  # the old name stays, meaning CUDA 12


def test_docs_install_lines_resolve_to_the_intended_tensorrt_and_cuda() -> None:
    lines = _install_lines()
    x86_12 = next(cmds for c, cmds in lines.items() if "CUDA 12 driver" in c)
    x86_13 = next(cmds for c, cmds in lines.items() if "CUDA 13 driver" in c)
    jetpack = next(cmds for c, cmds in lines.items() if "JetPack 6" in c)
    for commands, cuda in ((x86_12, 12), (x86_13, 13)):
        (pip,) = [c for c in commands if c.startswith("pip install")]
        chosen = _resolve(_requirements_of(pip))
        assert _cuda_major(chosen) == cuda and _tensorrt_major(chosen) in (10, 11), (pip, chosen)
    # JetPack: TensorRT from apt through --system-site-packages, nothing TensorRT from pip, cuda-python for CUDA 12.6
    assert any("apt install python3-libnvinfer" in c for c in jetpack)
    assert any("venv --system-site-packages" in c for c in jetpack)
    (pip,) = [c for c in jetpack if c.startswith("pip install")]
    chosen = _resolve(_requirements_of(pip))
    assert _tensorrt_major(chosen) is None and chosen["cuda-python"].startswith("12.6."), chosen
    assert _cuda_major(chosen) == 12


def test_gpu_extra_is_documented_as_a_replacement_of_onnxruntime() -> None:
    """ONNX Runtime: onnxruntime and onnxruntime-gpu are one module; both installed lose the CUDA provider."""
    assert _names(_extras()["gpu"]) == ["onnxruntime-gpu"]
    text = (ROOT / "docs" / "TENSORRT.md").read_text()
    block = text.split("## ONNX Runtime on the GPU", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    steps = [line.strip() for line in block.strip().splitlines()]
    assert steps[0] == "pip install '.[gpu]'"
    assert steps[1] == "pip uninstall -y onnxruntime onnxruntime-gpu"  # both: the files are shared
    assert steps[2].startswith("pip install 'onnxruntime-gpu")


def test_runtime_only_check_catches_cuda_wheels_without_the_nvidia_prefix() -> None:
    """Issue 25 item 8: .ci/runtime_only.sh looked for `nvidia-` only; cuda-toolkit and cuda-bindings passed."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("heavy_wheels", ROOT / ".ci" / "heavy_wheels.py")
    heavy_wheels = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(heavy_wheels)
    names = ["numpy", "Pillow", "onnxruntime", "typer", "cuda-toolkit", "cuda_bindings", "cuda-python",
             "nvidia-cublas-cu12", "tensorrt_cu12_libs", "onnxruntime-gpu", "torch", "rich", "coloredlogs"]
    assert heavy_wheels.heavy(names) == ["cuda-bindings", "cuda-python", "cuda-toolkit", "nvidia-cublas-cu12",
                                         "onnxruntime-gpu", "tensorrt-cu12-libs", "torch"]
    assert ".ci/heavy_wheels.py" in (ROOT / ".ci" / "runtime_only.sh").read_text()
