"""Golden vectors: what a bundle must answer on a few fixed images, and the check of a runtime against them.

A bundle's `vectors/` folder (written by `dsedge.export.vectors.write_vectors` at export) holds a
few JPEGs, the input tensor the reference preprocessing makes of each (`<name>.input.npy`), and,
for every ONNX artifact, the logits, calibrated probabilities and decisions the reference runtime
(ONNX Runtime on the CPU) gives. `vectors.json` indexes them with their sha256s, the artifacts'
sha256s and the decision policy they were computed with (so stale vectors are noticed), and the
tolerances. Another implementation — the C++ reference in `examples/cpp`, a device firmware, a
new backend — is right when it reproduces the tensors within the contract's tolerance
(`dsedge.runtime.contract.TENSOR_TOLERANCE`) and the logits within the precision's tolerance, and
makes the same decisions. `check_vectors` does that for this runtime (`dsedge predict
--check-vectors BUNDLE`). Input-quality checks are not part of the vectors: they gate whether the
model runs, not what it answers. Torch-free.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dsedge.bundle import Bundle, load_bundle
from dsedge.errors import BundleError, DsedgeError
from dsedge.runtime.contract import CONTRACT_VERSION
from dsedge.runtime.decision import DecisionPolicy
from dsedge.utils.io import sha256_file

VECTORS_DIR = "vectors"
INDEX = "vectors.json"
FORMAT = "dsedge-vectors"
FORMAT_VERSION = 1
#: Largest |logit difference| per precision, times max(1, max |reference logit|): FP32 differs
#: between CPUs and libraries only in summation order; FP16 and INT8 kernels differ more between
#: backends (ONNX Runtime computes FP16 in FP32 on a CPU, OpenVINO and TensorRT do not).
LOGIT_TOLERANCE = {"fp32": 1e-3, "fp16": 2e-2, "bf16": 5e-2, "int8": 0.1, "int8-fp16": 0.1}
DEFAULT_LOGIT_TOLERANCE = 0.1
HINT = "re-write them with `dsedge.export.vectors.write_vectors(BUNDLE)` (re-export, or re-run the step that changed the bundle)"


def logit_tolerance(precision: str, reference: np.ndarray) -> float:
    """The allowed max |logit diff| for `precision`, scaled like export parity by the largest reference logit."""
    scale = max(1.0, float(np.abs(reference).max())) if reference.size else 1.0
    return LOGIT_TOLERANCE.get(precision, DEFAULT_LOGIT_TOLERANCE) * scale


def artifact_stem(filename: str) -> str:
    """"model.int8.onnx" -> "model.int8": the prefix of that artifact's vector files."""
    return filename[:-5] if filename.endswith(".onnx") else filename


# ------------------------------------------------------------------------------------ computing


def image_tensor(path: Path, preprocessing: dict[str, Any]) -> np.ndarray:
    """The reference input tensor (3 x crop x crop float32) of one image file: load, orient, sRGB, preprocess."""
    from dsedge.runtime.preprocess import preprocess_image
    from dsedge.utils.images import load_rgb

    return preprocess_image(load_rgb(path), preprocessing)


def onnx_artifacts(bundle: Bundle) -> dict[str, str]:
    """{file name: precision} of the bundle's ONNX artifacts (kind "onnx"; the flat FP32 twin is not separate)."""
    return {name: str(entry.get("precision")) for name, entry in sorted(bundle.artifacts.items())
            if entry.get("kind") == "onnx"}


def reference_runner(bundle: Bundle, filename: str, precision: str, output: str | None):  # noqa: ANN201 - a Runner
    """ONNX Runtime on the CPU over one artifact: the runtime the vectors are written with."""
    from dsedge.engines.ort_runner import OrtRunner

    return OrtRunner(bundle.path(filename), precision, providers=["CPUExecutionProvider"], output=output)


def model_answers(runner: Any, batch: np.ndarray, policy: DecisionPolicy, logits_name: str | None) -> dict[str, Any]:
    """Logits, calibrated probabilities and decision fields of `runner` on a preprocessed batch."""
    from dsedge.runtime.backends import all_outputs

    logits = np.asarray(all_outputs(runner, batch, logits_name)["logits"], dtype=np.float32)
    probs = policy.probabilities(logits)
    decided = [policy.decide(p) for p in probs]
    return {"logits": logits, "probs": probs, "decisions": [d["decision"] for d in decided],
            "melanoma_risk": [d["melanoma_risk"] for d in decided], "uncertain": [bool(d["uncertain"]) for d in decided]}


def logits_name(bundle: Bundle) -> str | None:
    outputs = bundle.outputs or [{}]
    return outputs[0].get("name")


# ------------------------------------------------------------------------------------- reading


def read_index(bundle_root: Path, verify: bool = True) -> dict[str, Any]:
    """`vectors/vectors.json` of a bundle, with every file it lists sha256-checked; `BundleError` otherwise."""
    folder = Path(bundle_root) / VECTORS_DIR
    path = folder / INDEX
    if not path.is_file():
        raise BundleError(f"bundle {bundle_root} has no golden vectors ({VECTORS_DIR}/{INDEX})",
                          "bundles exported before vectors existed: " + HINT)
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BundleError(f"{path} is not valid JSON: {e}", HINT) from e
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise BundleError(f"{path} is not a dsedge vectors index", HINT)
    if int(index.get("format_version", 0)) > FORMAT_VERSION:
        raise BundleError(f"{path} has format_version {index.get('format_version')}, newer than this dsedge reads",
                          "upgrade dsedge")
    if verify:
        for name, digest in (index.get("files") or {}).items():
            p = folder / name
            if "/" in name or "\\" in name or not p.is_file() or sha256_file(p) != digest:
                raise BundleError(f"golden vector {p} is missing or does not match its sha256 in {INDEX}", HINT)
    return index


def is_vectors_dir(folder: Path) -> bool:
    """True when `folder` holds only what `write_vectors` wrote (its index and the files it lists).

    `dsedge export --force` may replace such a folder; anything else in it is a user's and is kept.
    """
    try:
        index = json.loads((folder / INDEX).read_text(encoding="utf-8"))
        listed = set(index.get("files") or {}) | {INDEX}
        return index.get("format") == FORMAT and all(
            p.name in listed and p.is_file() and not p.is_symlink() for p in folder.iterdir())
    except (OSError, ValueError, AttributeError, TypeError):
        return False


# ------------------------------------------------------------------------------------ checking


@dataclass
class ArtifactCheck:
    """One artifact's result against its vectors."""

    artifact: str
    precision: str
    backend: str
    max_abs_logit_diff: float | None = None
    tolerance: float | None = None
    decisions_expected: list[str] = field(default_factory=list)
    decisions_got: list[str] = field(default_factory=list)
    problem: str | None = None  # why it failed or was skipped
    skipped: bool = False

    @property
    def ok(self) -> bool:
        return self.skipped or (self.problem is None and self.decisions_got == self.decisions_expected
                                and self.max_abs_logit_diff is not None and self.tolerance is not None
                                and self.max_abs_logit_diff <= self.tolerance)


@dataclass
class VectorReport:
    """Everything `check_vectors` compared; `ok` is what `dsedge predict --check-vectors` exits on."""

    bundle: str
    tensor_max_abs_diff: dict[str, float]
    tensor_tolerance: float
    artifacts: list[ArtifactCheck]
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        tensors_ok = all(d <= self.tensor_tolerance for d in self.tensor_max_abs_diff.values())
        checked = [a for a in self.artifacts if not a.skipped]
        return tensors_ok and bool(checked) and all(a.ok for a in self.artifacts)

    def to_dict(self) -> dict[str, Any]:
        return {"bundle": self.bundle, "ok": self.ok, "tensor_tolerance": self.tensor_tolerance,
                "tensor_max_abs_diff": self.tensor_max_abs_diff,
                "artifacts": [{**asdict(a), "ok": a.ok} for a in self.artifacts], "notes": self.notes}

    def summary(self) -> str:
        """Plain-text lines for the terminal: one per image tensor and per artifact, then notes."""
        lines = [f"golden vectors of {self.bundle}:"]
        for name, d in self.tensor_max_abs_diff.items():
            verdict = "ok" if d <= self.tensor_tolerance else "MISMATCH"
            lines.append(f"  input {name}: max |diff| {d:.3g} (tolerance {self.tensor_tolerance:g}) {verdict}")
        for a in self.artifacts:
            if a.skipped:
                lines.append(f"  {a.artifact} ({a.precision}, {a.backend}): skipped: {a.problem}")
                continue
            diff = "n/a" if a.max_abs_logit_diff is None else f"{a.max_abs_logit_diff:.3g}"
            tol = "n/a" if a.tolerance is None else f"{a.tolerance:.3g}"
            same = "same decisions" if a.decisions_got == a.decisions_expected else (
                f"decisions {a.decisions_got} != {a.decisions_expected}")
            verdict = "ok" if a.ok else "MISMATCH" + (f": {a.problem}" if a.problem else "")
            lines.append(f"  {a.artifact} ({a.precision}, {a.backend}): max |logit diff| {diff} "
                         f"(tolerance {tol}), {same}: {verdict}")
        lines += [f"  note: {n}" for n in self.notes]
        lines.append("vectors: " + ("all match" if self.ok else "MISMATCH"))
        return "\n".join(lines)


RunnerFactory = Callable[[Bundle, str, str, str | None], Any]


def _runner_factory(backend: str) -> RunnerFactory:
    """(bundle, file, precision, logits name) -> a runner, for the backend being checked."""
    if backend in ("auto", "onnxruntime"):
        return reference_runner

    def make(bundle: Bundle, filename: str, precision: str, output: str | None) -> Any:
        from dsedge.runtime.backends import select_runner

        return select_runner(bundle, backend, precision, output=output)[0]

    return make


def _check_artifact(bundle: Bundle, name: str, entry: dict[str, Any],
                    tensors: np.ndarray, policy: DecisionPolicy, backend: str) -> ArtifactCheck:
    precision = str(entry["precision"])
    label = "onnxruntime" if backend == "auto" else backend
    check = ArtifactCheck(name, precision, label, decisions_expected=list(entry["decisions"]))
    current = bundle.artifacts.get(name)
    if current is None or current.get("sha256") != entry.get("artifact_sha256"):
        check.problem = (f"{name} is no longer in the bundle" if current is None
                         else f"{name} changed since the vectors were written (stale vectors)")
        return check
    try:
        runner = _runner_factory(backend)(bundle, name, precision, logits_name(bundle))
    except DsedgeError as e:
        if backend in ("auto", "onnxruntime"):
            raise
        check.skipped, check.problem = True, e.message
        return check
    try:
        got = model_answers(runner, tensors, policy, logits_name(bundle))
    finally:
        runner.close()
    expected = np.load(Path(bundle.root) / VECTORS_DIR / entry["logits"])
    check.max_abs_logit_diff = float(np.abs(got["logits"] - expected).max())
    check.tolerance = logit_tolerance(precision, expected)
    check.decisions_got = got["decisions"]
    return check


def check_vectors(bundle: str | Path | Bundle, backend: str = "onnxruntime", precision: str | None = None) -> VectorReport:
    """Re-run this runtime on a bundle's golden vectors: preprocessing of each image, and each ONNX artifact
    (or only those of `precision`) on `backend`, against the stored tensors, logits and decisions.

    Raises `BundleError` for a bundle without (intact) vectors; mismatches are in the report, not raised.
    """
    b = bundle if isinstance(bundle, Bundle) else load_bundle(bundle, verify=True)
    index = read_index(b.root)
    if not contract_version_ok(index):
        raise BundleError(f"the vectors of {b.root} follow a newer preprocessing contract than this dsedge implements",
                          "upgrade dsedge")
    folder = Path(b.root) / VECTORS_DIR
    policy = DecisionPolicy.from_manifest(b)
    notes: list[str] = []
    if index.get("policy") != policy.to_dict():
        notes.append("the bundle's decision policy changed since the vectors were written: "
                     "decisions are compared with the policy in force now")
    diffs: dict[str, float] = {}
    stored = []
    for image in index["images"]:
        expected = np.load(folder / image["tensor"])
        stored.append(expected)
        got = image_tensor(folder / image["file"], b.preprocessing)
        diffs[image["name"]] = float(np.abs(got - expected).max()) if got.shape == expected.shape else float("inf")
    tensors = np.stack(stored).astype(np.float32)
    checks = []
    for name, entry in index["artifacts"].items():
        if precision is not None and entry.get("precision") != precision:
            continue
        if index.get("policy") != policy.to_dict():  # decisions under today's policy, from the stored logits
            entry = {**entry, "decisions": _decisions(policy, np.load(folder / entry["logits"]))}
        checks.append(_check_artifact(b, name, entry, tensors, policy, backend))
    uncovered = sorted(set(onnx_artifacts(b)) - set(index["artifacts"]))
    if uncovered:
        notes.append(f"no vectors for {', '.join(uncovered)} (written before it was added): " + HINT)
    if precision is not None and not checks:
        raise BundleError(f"the vectors of {b.root} cover no {precision} artifact",
                          f"they cover: {', '.join(sorted({e['precision'] for e in index['artifacts'].values()}))}")
    return VectorReport(str(b.root), diffs, float(index["tolerances"]["tensor_max_abs"]), checks, notes)


def _decisions(policy: DecisionPolicy, logits: np.ndarray) -> list[str]:
    return [policy.decide(p)["decision"] for p in policy.probabilities(logits)]


def contract_version_ok(index: dict[str, Any]) -> bool:
    """Whether the vectors were written under a contract this runtime implements."""
    return int(index.get("contract_version", CONTRACT_VERSION)) <= CONTRACT_VERSION


def write_index(folder: Path, index: dict[str, Any], files: Sequence[str]) -> None:
    """Fill in the sha256 of every listed file and write `vectors.json` (atomically)."""
    from dsedge.utils.io import atomic_write_json

    index["files"] = {name: sha256_file(folder / name) for name in sorted(files)}
    atomic_write_json(folder / INDEX, index)
