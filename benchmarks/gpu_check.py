"""One GPU check, ready for a machine with an NVIDIA GPU and PyTorch (TensorRT optional), in < 8 minutes.

    python benchmarks/gpu_check.py --out gpu_check/             # on the GPU machine
    python benchmarks/gpu_check.py --dry-run --out /tmp/gc      # anywhere: CPU, tiny settings, same steps
    python benchmarks/gpu_check.py --constraints keep-torch.txt # pins of the machine's PyTorch stack

On a machine whose PyTorch came with it (a cloud image, an NGC container),
`pip install -e '.[train]'` would upgrade torch (a newer torchvision needs a
newer torch) and pull another CUDA major's wheels. The documented install
(docs/TENSORRT.md) keeps it: a venv with `--system-site-packages` and the
constraints this script writes (`torch==<installed>`, torchvision, triton and
the nvidia-* wheels, as installed).

Steps (each a subprocess with its own time limit inside one overall deadline,
so a hang or a crash in one step still leaves the others' results):

1. doctor      `dsedge doctor --json`: GPU, driver, CUDA, TensorRT, packages
2. train       `benchmarks/train_throughput.py`: train-step img/s of plain eager vs dsedge's
               default CUDA path (AMP + channels_last + torch.compile of the whole model)
3. export      a random-init DS-ResNet50 bundle (ONNX FP32 + FP16)
4. build       `dsedge build --precision fp16` — only where `tensorrt` imports
5. bench       `dsedge bench --device cuda` at batch 1, 8, 32: torch eager (its rows carry the
               CUDA-graph replay timing), torch.compile, and TensorRT where it imports

Results: `gpu_check.json` (every step: command, exit code, seconds, output tail, parsed
numbers) and `gpu_check.md` (the two tables a reviewer wants), plus each step's own files.
Both are rewritten after every step (atomically), so a step that hangs or hits its
time limit — or a check killed from outside — never loses the earlier steps' numbers;
`train_throughput.py` likewise rewrites its JSON after every round.
The bench compiles torch.compile rows at every batch size (1, 8, 32: `--compile-all`).
The engine profile is min 1, opt min(8, largest batch), max the largest batch.
`--dry-run` runs the very same steps on the CPU with tiny sizes and without
torch.compile rows, to prove the script end to end where no GPU exists.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BUDGET_S = 470.0  # the whole check: under 8 minutes with room for Python start-up


@dataclass
class Settings:
    """Sizes of one check: the GPU defaults, or tiny CPU ones for --dry-run."""

    device: str = "cuda"
    image_size: int = 224
    train_batch: int = 32
    train_steps: int = 8
    train_rounds: int = 3
    train_warmup: int = 3
    batch_sizes: str = "1,8,32"
    backends: tuple[str, ...] = ("torch", "torch-compile")
    precisions: str = "fp16"  # one precision keeps torch.compile to three compiles inside the budget
    bench_flags: tuple[str, ...] = ("--reference", "torch fp16", "--rounds", "5", "--min-rounds", "3",
                                    "--time-cap", "60", "--compile-all")
    parity_images: int = 8
    budgets: dict[str, float] = field(default_factory=lambda: {
        "doctor": 30, "train": 120, "export": 50, "build": 90, "bench": 260})

    def profile(self) -> tuple[int, int, int]:
        """(min, opt, max) of the engine: batch 1 to the largest bench batch, tuned for min(8, largest)."""
        largest = max(int(b) for b in self.batch_sizes.split(","))
        return 1, min(8, largest), largest

    @classmethod
    def dry_run(cls) -> Settings:
        return cls(device="cpu", image_size=32, train_batch=2, train_steps=1, train_rounds=1, train_warmup=1,
                   batch_sizes="1,2", backends=("torch", "onnxruntime"), precisions="fp32",
                   bench_flags=("--rounds", "1", "--min-rounds", "1", "--iters", "1", "--time-cap", "5"),
                   parity_images=2,
                   budgets={"doctor": 60, "train": 300, "export": 300, "build": 60, "bench": 300})


@dataclass
class Step:
    name: str
    argv: list[str]
    timeout_s: float
    skip_reason: str | None = None


def have_tensorrt() -> bool:
    """Whether `import tensorrt` works here (the TensorRT steps and rows run only then)."""
    if importlib.util.find_spec("tensorrt") is None:
        return False
    try:
        import tensorrt  # type: ignore[import-not-found]  # noqa: F401
    except (ImportError, OSError):
        return False
    return True


def plan(out: Path, s: Settings, tensorrt: bool, bundle: Path | None = None) -> list[Step]:
    """The steps of one check, in order (pure: tests inspect it without running anything)."""
    py, dsedge = sys.executable, [sys.executable, "-m", "dsedge"]
    bundle_dir = bundle or out / "bundle"
    backends = list(s.backends) + (["tensorrt"] if tensorrt else [])
    lo, opt, hi = s.profile()
    if not 1 <= lo <= opt <= hi:  # the rule `dsedge build` enforces; checked here even where build is skipped
        raise ValueError(f"invalid engine profile min={lo} opt={opt} max={hi}")
    steps = [
        Step("doctor", [*dsedge, "doctor", "--json"], s.budgets["doctor"]),
        Step("train", [py, str(ROOT / "benchmarks" / "train_throughput.py"), "--device", s.device,
                       "--image-size", str(s.image_size), "--batch-size", str(s.train_batch),
                       "--steps", str(s.train_steps), "--rounds", str(s.train_rounds),
                       "--warmup", str(s.train_warmup), "--json", str(out / "train.json")], s.budgets["train"]),
        Step("export", [*dsedge, "export", "--model", "ds_resnet50", "--random-init", "--image-size",
                        str(s.image_size), "--parity-images", str(s.parity_images), "--out", str(bundle_dir),
                        "--force"], s.budgets["export"],
             skip_reason="using --bundle" if bundle else None),
        Step("build", [*dsedge, "build", str(bundle_dir), "--precision", "fp16", "--min-batch", str(lo),
                       "--opt-batch", str(opt), "--max-batch", str(hi),
                       "--opt-level", "3", "--force", "--json"], s.budgets["build"],
             skip_reason=None if tensorrt else "tensorrt does not import here"),
        Step("bench", [*dsedge, "bench", str(bundle_dir), "--device", s.device, "--backends", ",".join(backends),
                       "--precisions", s.precisions + (",fp16" if tensorrt and "fp16" not in s.precisions else ""),
                       "--batch-sizes", s.batch_sizes, *s.bench_flags, "--out", str(out / "bench")],
             s.budgets["bench"]),
    ]
    return steps


def run_step(step: Step, deadline: float, log_dir: Path) -> dict[str, Any]:
    """Run one step within min(its budget, time left); never raises."""
    result: dict[str, Any] = {"name": step.name, "command": " ".join(step.argv)}
    left = deadline - time.monotonic()
    if step.skip_reason or left < 5:
        result.update(status="skipped", reason=step.skip_reason or "out of time (overall budget)")
        return result
    timeout = min(step.timeout_s, left)
    log = log_dir / f"{step.name}.log"
    t0 = time.monotonic()
    env = {**os.environ, "COLUMNS": "160", "PYTHONUNBUFFERED": "1"}
    try:
        with open(log, "w", encoding="utf-8") as f:
            proc = subprocess.run(step.argv, stdout=f, stderr=subprocess.STDOUT, timeout=timeout, cwd=ROOT, env=env)
        rc, status = proc.returncode, "ok" if proc.returncode == 0 else "failed"
    except subprocess.TimeoutExpired:
        rc, status = None, "timeout"
    except OSError as e:
        rc, status = None, f"failed to start: {e}"
    text = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
    result.update(status=status, returncode=rc, seconds=round(time.monotonic() - t0, 1), timeout_s=round(timeout),
                  log=log.name, tail=text[-1500:])
    return result


def _bench_rows(bench_json: Path) -> list[dict[str, Any]]:
    """backend, precision, batch, status, host p50 and every other latency block's p50 from bench.json."""
    rows = []
    for r in _read_json(bench_json).get("rows", []):
        lat = r.get("latency") or {}
        blocks = {k: v.get("p50_ms") for k, v in lat.items() if isinstance(v, dict) and "p50_ms" in v}
        rows.append({"backend": r.get("backend"), "precision": r.get("precision"), "batch": r.get("batch_size"),
                     "status": r.get("status"), "p50_ms": blocks.pop("host", None), "other_p50_ms": blocks,
                     "speedup": r.get("speedup"), "unstable": (r.get("stability") or {}).get("unstable")})
    return rows


def _read_json(path: Path) -> dict[str, Any]:
    """A step's JSON, or {} when it is missing or unreadable (a step killed mid-way)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _train_rows(train_json: Path) -> list[dict[str, Any]]:
    """variant, img/s, warm-up s, vs eager; partial files (a step cut short) give the rounds done so far."""
    variants = _read_json(train_json).get("variants", [])
    base = variants[0].get("median") if variants else None

    def rounded(value: float | None, digits: int) -> float | None:
        return round(value, digits) if value is not None else None

    return [{"variant": v["name"], "img_s": rounded(v.get("median"), 2), "warmup_s": rounded(v.get("warmup_s"), 1),
             "vs_eager": round(v["median"] / base, 2) if base and v.get("median") is not None else None}
            for v in variants]


def markdown(report: dict[str, Any]) -> str:
    lines = [f"# GPU check ({'dry run, CPU' if report['dry_run'] else report['settings']['device']})", "",
             f"{report['created']} · {report['host']} · {report['elapsed_s']} s of {report['budget_s']:.0f} s budget",
             "", "| step | status | seconds | note |", "|---|---|---|---|"]
    for st in report["steps"]:
        note = st.get("reason") or (f"exit {st.get('returncode')}, see {st.get('log')}" if st["status"] != "ok" else "")
        lines.append(f"| {st['name']} | {st['status']} | {st.get('seconds', '')} | {note} |")
    if report["train"]:
        lines += ["", "## Train step throughput (eager vs default path)", "",
                  "| variant | img/s | warm-up s | vs eager |", "|---|---|---|---|"]
        lines += [f"| {r['variant']} | {r['img_s'] if r['img_s'] is not None else '-'} | {r['warmup_s']} | "
                  f"{str(r['vs_eager']) + 'x' if r['vs_eager'] is not None else '-'} |" for r in report["train"]]
    if report["bench"]:
        lines += ["", "## Inference latency (`dsedge bench`)", "",
                  "| backend | precision | batch | status | p50 ms | other p50 ms (device, CUDA graph, ...) | speed-up |",
                  "|---|---|---|---|---|---|---|"]
        for r in report["bench"]:
            other = ", ".join(f"{k} {v:.3f}" for k, v in r["other_p50_ms"].items() if v is not None) or "-"
            p50 = f"{r['p50_ms']:.3f}" if r["p50_ms"] is not None else "-"
            flag = " (unstable)" if r["unstable"] else ""
            speedup = f"{r['speedup']:.2f}x" if r["speedup"] is not None else "-"
            lines.append(f"| {r['backend']} | {r['precision']} | {r['batch']} | {r['status']}{flag} | {p50} | "
                         f"{other} | {speedup} |")
    return "\n".join(lines) + "\n"


#: distributions that make up an installed PyTorch: pinned so an install keeps them
TORCH_STACK = re.compile(r"^(torch|torchvision|torchaudio|triton|pytorch-triton|nvidia-.+)$")


def keep_constraints(installed: dict[str, str] | None = None) -> list[str]:
    """pip constraint lines pinning the installed PyTorch stack (`torch==2.9.0+cu128`, nvidia-* wheels, ...).

    With `pip install -c FILE`, pip may keep these versions or fail, never
    upgrade them: torch, its CUDA wheels and so its CUDA major stay as the
    machine has them.
    """
    if installed is None:
        installed = {}
        for dist in importlib.metadata.distributions():
            name = str(dist.metadata["Name"] or "").lower().replace("_", "-")
            installed.setdefault(name, dist.version)
    return sorted(f"{name}=={version}" for name, version in installed.items() if TORCH_STACK.match(name))


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write `data` as JSON atomically (temp file + rename): a kill never leaves half a report."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
    os.replace(tmp, path)


def write_report(out: Path, report: dict[str, Any], results: list[dict[str, Any]], t0: float) -> None:
    """gpu_check.json + gpu_check.md with the steps so far and the numbers their files hold now."""
    report.update(elapsed_s=round(time.monotonic() - t0, 1), steps=results,
                  train=_train_rows(out / "train.json"), bench=_bench_rows(out / "bench" / "bench.json"))
    write_json(out / "gpu_check.json", report)
    md = out / "gpu_check.md"
    md.with_name(".gpu_check.md.tmp").write_text(markdown(report), encoding="utf-8")
    os.replace(md.with_name(".gpu_check.md.tmp"), md)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("gpu_check"))
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes, no torch.compile rows")
    ap.add_argument("--bundle", type=Path, default=None, help="bench this bundle instead of exporting one")
    ap.add_argument("--only", default=None, help="comma-separated step names to run (others are skipped)")
    ap.add_argument("--budget-s", type=float, default=BUDGET_S, help="overall time limit in seconds")
    ap.add_argument("--constraints", type=Path, default=None,
                    help="only write pip constraints pinning this machine's PyTorch stack to this file, then exit")
    args = ap.parse_args(argv)

    if args.constraints:
        lines = keep_constraints()
        args.constraints.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
        print(f"[gpu_check] {len(lines)} pins in {args.constraints}: {', '.join(lines[:3]) or 'no torch installed'}")
        return 0
    settings = Settings.dry_run() if args.dry_run else Settings()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    tensorrt = have_tensorrt()
    steps = plan(out, settings, tensorrt, args.bundle.resolve() if args.bundle else None)
    if args.only:
        wanted = set(args.only.split(","))
        for st in steps:
            if st.name not in wanted and not st.skip_reason:
                st.skip_reason = "not in --only"
    t0 = time.monotonic()
    deadline = t0 + args.budget_s
    report: dict[str, Any] = {
        "created": time.strftime("%Y-%m-%d %H:%M:%S"), "host": platform.node(), "dry_run": args.dry_run,
        "tensorrt": tensorrt, "settings": settings.__dict__ | {"backends": list(settings.backends)},
        "budget_s": args.budget_s,
    }
    results: list[dict[str, Any]] = []
    write_report(out, report, results, t0)
    for st in steps:
        r = run_step(st, deadline, out)
        results.append(r)
        write_report(out, report, results, t0)  # after every step: a later hang loses nothing
        print(f"[gpu_check] {st.name}: {r['status']} {r.get('seconds', '')}", flush=True)
    print(f"[gpu_check] wrote {out / 'gpu_check.json'} and {out / 'gpu_check.md'}", flush=True)
    failed = [r["name"] for r in results if r["status"] not in ("ok", "skipped")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
