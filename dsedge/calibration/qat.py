"""Quantization-aware fine-tuning (QAT) for when post-training INT8 cannot keep the FP32 decisions.

Fake quantization comes from NVIDIA's ModelOpt (`modelopt.torch.quantization`,
the `qat` extra), evaluated for issue 11: it runs on CPU (fake quantization is
plain PyTorch; quantize, forward and backward verified without CUDA), and its
`INT8_DEFAULT_CFG` is TensorRT's form — symmetric INT8, per-channel weight
scales (axis 0), per-tensor activation scales on the inputs of every Conv,
Linear and pooling layer. SimAM has no Conv/Linear, so it stays float.

The recipe:

1. insert ModelOpt's fake quantizers into a copy of the trained model;
2. initialise each activation scale from the ranges `dsedge calibrate` computes
   for the same tensor (ONNX Runtime, `--method`, the bundle's calibration
   images), mapped from ONNX node to PyTorch module by execution order; layers
   without a match keep ModelOpt's max calibration;
3. fine-tune a few epochs at a small learning rate with BatchNorm frozen, by
   default distilling the FP32 model's own softmax (`loss="kd"`): the goal is
   agreement with FP32, not new accuracy, and it needs no labels;
4. copy the fine-tuned weights back into the plain float model and save a
   normal dsedge checkpoint. `dsedge calibrate BUNDLE --weights CHECKPOINT`
   (`dsedge.calibration.weights`) exports it like the bundle's model.onnx and
   writes the same TensorRT Q/DQ ONNX as for any model, with the ranges QAT
   trained with, checked by the rule checker and judged against the bundle's
   FP32 model: the fine-tuned weights are the INT8 file's recipe, not a new
   float model (in float they drift from the original).

Without ModelOpt (it is an optional extra; CI and this project's 2-core CPU machine run
without it), `fake_quant="torch"` (what `"auto"` falls back to) inserts the same form with
plain PyTorch ops: `torch.fake_quantize_per_channel_affine` on every Conv / Linear weight
(symmetric, axis 0, scale = max |w| / 127 per output channel, recomputed each step) and
`torch.fake_quantize_per_tensor_affine` on its input (symmetric, the calibrated amax / 127);
both pass gradients straight through. SimAM has no Conv/Linear and stays float; the state
dict keeps its names, so the fine-tuned weights copy back unchanged.

`dsedge calibrate` puts Q/DQ on the same places (the inputs of weighted ops; residual Adds read
float tensors), except that by default it keeps the depthwise convs float, which QAT quantizes too
(calibrate with `--keep-fp none` to match exactly). Public entry: `qat_checkpoint`; command: `dsedge qat`.
"""

from __future__ import annotations

import copy
import random
import types
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dsedge.calibration.int8 import DEFAULT_METHOD
from dsedge.config import DEFAULT_KEEP_FP
from dsedge.errors import MissingDependencyError


@dataclass(frozen=True)
class QatConfig:
    """Fine-tuning settings; the defaults are a short, gentle pass ('a few epochs')."""

    epochs: int = 1
    lr: float = 1e-5
    batch_size: int = 16
    max_batches: int | None = None  # per epoch; None = the whole training split
    #: "kd" (match FP32's softmax), "logits" (match FP32's logits: near-ties weigh as much as sure images),
    #: "ce" (labels), "kd+ce"
    loss: str = "kd"
    temperature: float = 1.0
    #: mixup's Beta(a, a) for the inputs (0 = off): a blend of two lesions is an input the FP32 model is
    #: unsure of, where INT8 noise flips decisions; training images alone are inputs it is sure of
    mixup: float = 0.0
    calib_images: int = 512  # = `dsedge calibrate --num-images`: the same images, so the same ranges
    method: str = DEFAULT_METHOD
    seed: int = 0
    workers: int = 0
    #: "auto" (ModelOpt when installed, else "torch"), "modelopt" or "torch" (plain PyTorch fake quantization)
    fake_quant: str = "auto"
    #: layers left float, as `dsedge calibrate` leaves them by default: its --keep-fp default (the depthwise
    #: convs) and the head (fc), which its grow search never quantizes
    keep_float: tuple[str, ...] = (*DEFAULT_KEEP_FP, "head")


def kept_float(module: nn.Module, keep_float: Iterable[str]) -> bool:
    """Whether `module` stays float, as in `dsedge calibrate`'s default placement (DEFAULT_KEEP_FP; the grow
    search never quantizes the head): fake-quantizing a layer the INT8 file keeps float trains for noise
    that never comes."""
    keep = set(keep_float)
    if "depthwise" in keep and isinstance(module, nn.Conv2d) and 1 < module.groups == module.in_channels:
        return True
    return "head" in keep and isinstance(module, nn.Linear)


def _mtq() -> Any:
    try:
        import modelopt.torch.quantization as mtq
    except ImportError as e:
        raise MissingDependencyError("nvidia-modelopt", extra="qat", purpose="quantization-aware training") from e
    return mtq


def insert_fake_quant(model: nn.Module, batches: Iterable[torch.Tensor], input_amax: dict[str, float] | None = None,
                      keep_float: Iterable[str] = ()) -> tuple[nn.Module, dict[str, int]]:
    """A fake-quantized copy of `model` in TensorRT's INT8 form (the original is untouched).

    ModelOpt calibrates every quantizer (max) on `batches`; `input_amax`
    ({module path: amax}) then overrides the activation scales with the ranges
    dsedge's PTQ computed; layers `kept_float` get their quantizers disabled.
    Returns (model, counts of quantizers and overrides).
    """
    mtq = _mtq()
    data = list(batches)

    def forward_loop(m: nn.Module) -> None:
        with torch.no_grad():
            for x in data:
                m(x)

    qmodel = mtq.quantize(copy.deepcopy(model).eval(), mtq.INT8_DEFAULT_CFG, forward_loop=forward_loop)
    for module in qmodel.modules():
        if kept_float(module, keep_float):
            for q in (getattr(module, "input_quantizer", None), getattr(module, "weight_quantizer", None)):
                if q is not None:
                    q.disable()
    applied = 0
    for name, amax in (input_amax or {}).items():
        try:
            module = qmodel.get_submodule(name)
        except AttributeError:
            continue
        quantizer = getattr(module, "input_quantizer", None)
        if quantizer is not None and quantizer.is_enabled and amax > 0:
            quantizer.amax = torch.tensor(float(amax))
            applied += 1
    enabled = sum(1 for _n, m in qmodel.named_modules() if type(m).__name__ == "TensorQuantizer" and m.is_enabled)
    return qmodel, {"quantizers": enabled, "activation_scales_from_ptq": applied}


def _fq_weight(w: torch.Tensor) -> torch.Tensor:
    """Symmetric per-output-channel INT8 fake quantization (TensorRT's weight form), straight-through gradient."""
    amax = w.detach().abs().flatten(1).amax(1).clamp_min(1e-8)
    zero = torch.zeros_like(amax, dtype=torch.int32)
    return torch.fake_quantize_per_channel_affine(w, (amax / 127.0).float(), zero, 0, -127, 127)


def _fq_input(x: torch.Tensor, amax: float) -> torch.Tensor:
    """Symmetric per-tensor INT8 fake quantization of an activation with a fixed, calibrated range."""
    return torch.fake_quantize_per_tensor_affine(x, max(amax, 1e-8) / 127.0, 0, -127, 127)


def _conv_forward(self: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    return self._conv_forward(_fq_input(x, self.dsedge_input_amax), _fq_weight(self.weight), self.bias)


def _linear_forward(self: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    return nn.functional.linear(_fq_input(x, self.dsedge_input_amax), _fq_weight(self.weight), self.bias)


def insert_fake_quant_torch(model: nn.Module, batches: Iterable[torch.Tensor], input_amax: dict[str, float] | None = None,
                            keep_float: Iterable[str] = ()) -> tuple[nn.Module, dict[str, int]]:
    """`insert_fake_quant` without ModelOpt: plain PyTorch fake quantization of every Conv2d / Linear.

    Input ranges are the max |x| seen on `batches` (max calibration), overridden per module by
    `input_amax` (dsedge's PTQ ranges); layers `kept_float` are left alone. The copy's forward
    methods change, its parameters and their names do not.
    """
    qmodel = copy.deepcopy(model).eval()
    keep = tuple(keep_float)
    layers = {n: m for n, m in qmodel.named_modules()
              if isinstance(m, (nn.Conv2d, nn.Linear)) and not kept_float(m, keep)}
    seen: dict[str, float] = {n: 0.0 for n in layers}
    hooks = [m.register_forward_pre_hook(
        lambda _m, inp, n=n: seen.__setitem__(n, max(seen[n], float(inp[0].detach().abs().max()))))
        for n, m in layers.items()]
    try:
        with torch.no_grad():
            for x in batches:
                qmodel(x)
    finally:
        for h in hooks:
            h.remove()
    applied = 0
    for name, module in layers.items():
        amax = seen[name]
        if input_amax and input_amax.get(name, 0) > 0:
            amax, applied = float(input_amax[name]), applied + 1
        module.dsedge_input_amax = amax
        forward = _conv_forward if isinstance(module, nn.Conv2d) else _linear_forward
        module.forward = types.MethodType(forward, module)
    return qmodel, {"quantizers": 2 * len(layers), "activation_scales_from_ptq": applied}


def _backend(name: str) -> str:
    """'modelopt' or 'torch' for a `QatConfig.fake_quant` value."""
    if name == "auto":
        try:
            _mtq()
            return "modelopt"
        except MissingDependencyError:
            return "torch"
    if name not in ("modelopt", "torch"):
        raise ValueError(f"fake_quant must be auto, modelopt or torch, not {name!r}")
    return name


#: ONNX op types that stand for each kind of PyTorch layer with an input quantizer.
_KINDS: dict[str, tuple[type[nn.Module], tuple[str, ...]]] = {
    "conv": (nn.Conv2d, ("Conv",)),
    "linear": (nn.Linear, ("Gemm", "MatMul")),
    "maxpool": (nn.MaxPool2d, ("MaxPool",)),
    "avgpool": (nn.AdaptiveAvgPool2d, ("GlobalAveragePool", "ReduceMean")),
}


def _execution_order(model: nn.Module, x: torch.Tensor) -> dict[str, list[tuple[str, nn.Module]]]:
    """Per kind, the (module path, module) of every quantizable layer in the order a forward pass calls them."""
    order: dict[str, list[tuple[str, nn.Module]]] = {k: [] for k in _KINDS}
    hooks = []
    for name, module in model.named_modules():
        for kind, (cls, _ops) in _KINDS.items():
            if isinstance(module, cls):
                hooks.append(module.register_forward_pre_hook(
                    lambda m, _inp, name=name, kind=kind: order[kind].append((name, m))))
    try:
        with torch.no_grad():
            model.eval()(x)
    finally:
        for h in hooks:
            h.remove()
    return order


def module_input_amax(model_path: Path, ranges: dict[str, tuple[float, float]], model: nn.Module,
                      example: torch.Tensor) -> dict[str, float]:
    """{PyTorch module path: amax of its input tensor} from ONNX Runtime calibration ranges.

    The exporter folds BatchNorm into the conv and names the fused node after
    the BatchNorm, so scope metadata cannot name the conv. Layers are matched
    instead by execution order, kind by kind (the ONNX graph keeps the forward
    order), and conv weights must have the same shape; a kind whose counts or
    shapes differ is left to max calibration. The `cam` output's 1x1 conv
    (`dsedge export --cam`) has no module and is left out.
    """
    import onnx

    from dsedge.export.onnx import CAM_NAME

    graph = onnx.load(str(model_path), load_external_data=False).graph
    shapes = {t.name: tuple(t.dims) for t in graph.initializer}
    torch_order = _execution_order(model, example)
    out: dict[str, float] = {}
    cam = {n.name for n in graph.node if CAM_NAME in n.output}  # `dsedge export --cam`'s extra 1x1 conv: no module
    for kind, (_cls, ops) in _KINDS.items():
        nodes = [n for n in graph.node if n.op_type in ops and n.name not in cam]
        modules = torch_order[kind]
        if kind == "avgpool" and len(nodes) > len(modules):  # ReduceMean also appears inside other layers
            nodes = nodes[-len(modules):] if modules else []
        if len(nodes) != len(modules):
            continue
        if kind == "conv" and any(shapes.get(n.input[1]) != tuple(m.weight.shape) for n, (_, m) in
                                  zip(nodes, modules, strict=True)):
            continue
        for node, (name, _m) in zip(nodes, modules, strict=True):
            if node.input[0] in ranges:
                lo, hi = ranges[node.input[0]]
                out.setdefault(name, max(abs(lo), abs(hi)))
    return out


def _freeze_batchnorm(model: nn.Module) -> None:
    """Train mode for fake quantization, but BatchNorm keeps its statistics (small batches, few steps)."""
    model.train()
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def mix(x: torch.Tensor, y: torch.Tensor, alpha: float, gen: torch.Generator
        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mixed inputs, labels, partner labels, weight of the own label): mixup with one Beta(alpha, alpha) draw per image."""
    lam = torch.distributions.Beta(alpha, alpha).sample((len(x),))
    partner = torch.randperm(len(x), generator=gen)
    w = lam.view(-1, *([1] * (x.dim() - 1))).to(x.dtype)
    return w * x + (1 - w) * x[partner], y, y[partner], lam


def _loss(cfg: QatConfig, logits: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor,
          partner: torch.Tensor | None = None, lam: torch.Tensor | None = None) -> torch.Tensor:
    t = cfg.temperature
    kd = nn.functional.kl_div(nn.functional.log_softmax(logits / t, 1), nn.functional.softmax(teacher / t, 1),
                              reduction="batchmean") * t * t
    ce = nn.functional.cross_entropy(logits, labels, reduction="none")
    if partner is not None and lam is not None:
        ce = lam * ce + (1 - lam) * nn.functional.cross_entropy(logits, partner, reduction="none")
    ce = ce.mean()
    if cfg.loss == "logits":  # softmax saturates on the sure training images; logit error does not
        return nn.functional.mse_loss(logits, teacher)
    return {"kd": kd, "ce": ce, "kd+ce": kd + ce}[cfg.loss]


def finetune(qmodel: nn.Module, teacher: nn.Module, loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
             cfg: QatConfig, on_step: Callable[[str], None] | None = None) -> list[float]:
    """Fine-tune the fake-quantized model; returns the mean loss of each epoch."""
    say = on_step or (lambda _m: None)
    params = [p for n, p in qmodel.named_parameters() if p.requires_grad and "quantizer" not in n]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    teacher.eval()
    gen = torch.Generator().manual_seed(cfg.seed)
    history = []
    for epoch in range(cfg.epochs):
        _freeze_batchnorm(qmodel)
        losses = []
        for i, (x, y) in enumerate(loader):
            if cfg.max_batches is not None and i >= cfg.max_batches:
                break
            partner = lam = None
            if cfg.mixup > 0:
                x, y, partner, lam = mix(x, y, cfg.mixup, gen)
            with torch.no_grad():
                target = teacher(x)
            loss = _loss(cfg, qmodel(x), target, y, partner, lam)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            if (i + 1) % 10 == 0:
                say(f"QAT epoch {epoch + 1}/{cfg.epochs}: batch {i + 1}, loss {np.mean(losses[-10:]):.5f}")
        history.append(float(np.mean(losses)) if losses else float("nan"))
        say(f"QAT epoch {epoch + 1}/{cfg.epochs}: loss {history[-1]:.5f}")
    qmodel.eval()
    return history


def strip_fake_quant(qmodel: nn.Module, float_model: nn.Module) -> nn.Module:
    """A copy of `float_model` carrying `qmodel`'s fine-tuned weights (quantizer state dropped)."""
    out = copy.deepcopy(float_model)
    keys = set(out.state_dict())
    state = {k: v for k, v in qmodel.state_dict().items() if k in keys}
    out.load_state_dict(state, strict=True)
    return out.eval()


def _loaders(data: str | Path, meta: dict[str, Any], cfg: QatConfig) -> tuple[Any, list[torch.Tensor]]:
    """(training DataLoader with the paper's augmentation, calibration batches in eval preprocessing)."""
    from torch.utils.data import DataLoader

    from dsedge.calibration.reader import select_images
    from dsedge.config import PreprocessConfig
    from dsedge.data import load_split
    from dsedge.data.dataset import ImageDataset
    from dsedge.data.samples import DatasetSplit
    from dsedge.data.transforms import seed_worker, train_transform
    from dsedge.runtime.preprocess import preprocess_files

    pre = PreprocessConfig.from_dict(meta["preprocessing"])
    train = load_split(data, "train", classes=meta["classes"])
    held = set((meta.get("tuning_split") or {}).get("ids") or [])
    if held:  # the checkpoint's tuning slice stays unseen: it chooses and measures INT8 later
        train = DatasetSplit(train.name, train.classes, [s for s in train.samples if s.path.stem not in held],
                             train.source, train.root)
    gen = torch.Generator().manual_seed(cfg.seed)
    loader = DataLoader(ImageDataset(train, train_transform(pre)), batch_size=cfg.batch_size, shuffle=True,
                        generator=gen, num_workers=cfg.workers, worker_init_fn=seed_worker, drop_last=True)
    cset = select_images(train, min(cfg.calib_images, len(train)), cfg.seed)
    x = preprocess_files(cset.paths, meta["preprocessing"])
    batches = [torch.from_numpy(x[i : i + cfg.batch_size]) for i in range(0, len(x), cfg.batch_size)]
    return loader, batches


def qat_checkpoint(checkpoint: str | Path, data: str | Path, out: str | Path, cfg: QatConfig = QatConfig(),
                   bundle: str | Path | None = None, on_step: Callable[[str], None] | None = None) -> Path:
    """Fine-tune `checkpoint` with INT8 fake quantization on `data`; save a float checkpoint at `out`.

    With `bundle` (the model's exported bundle), activation scales start from
    dsedge's PTQ ranges for that bundle (`cfg.method`, `cfg.calib_images`).
    Export and calibrate the result as usual; the QAT settings and losses are
    recorded in the checkpoint's metadata under `qat`.
    """
    from dsedge.models.checkpoint import load_checkpoint, save_checkpoint

    say = on_step or (lambda _m: None)
    backend = _backend(cfg.fake_quant)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    model, meta = load_checkpoint(checkpoint)
    loader, calib = _loaders(data, meta, cfg)
    input_amax = _ptq_amax(bundle, data, cfg, model, calib[0][:1], say) if bundle is not None else None
    say(f"inserting fake quantizers ({backend}, calibrating on {sum(len(b) for b in calib)} images)")
    insert = insert_fake_quant if backend == "modelopt" else insert_fake_quant_torch
    qmodel, counts = insert(model, calib, input_amax, cfg.keep_float)
    history = finetune(qmodel, model, loader, cfg, say)
    tuned = strip_fake_quant(qmodel, model)
    record = {**asdict(cfg), **counts, "epoch_losses": history, "source_checkpoint": str(checkpoint),
              "fake_quant": "nvidia-modelopt INT8_DEFAULT_CFG" if backend == "modelopt" else
              "torch fake_quantize: weights per-channel symmetric, Conv/Linear inputs per-tensor symmetric"}
    return save_checkpoint(out, tuned, {**{k: v for k, v in meta.items() if k not in (
        "format", "weights_file", "weights_sha256")}, "qat": record})


def _ptq_amax(bundle: str | Path, data: str | Path, cfg: QatConfig, model: nn.Module, example: torch.Tensor,
              say: Callable[[str], None]) -> dict[str, float]:
    """dsedge's PTQ activation ranges for the bundle's FP32 model, keyed by PyTorch module."""
    import tempfile

    from dsedge.bundle import load_bundle
    from dsedge.calibration import reader as rd
    from dsedge.calibration.int8 import compute_ranges, ranges_minmax
    from dsedge.data import load_split

    b = load_bundle(bundle)
    model_path = b.require("onnx", "fp32")
    cset = rd.select_images(load_split(data, "train", classes=b.classes), cfg.calib_images, cfg.seed)
    say(f"PTQ ranges ({cfg.method}) on {len(cset)} images to initialise the activation scales")
    with tempfile.TemporaryDirectory(prefix="dsedge-qat-") as tmp:
        ranges = ranges_minmax(compute_ranges(model_path, cset, b.preprocessing, cfg.method, Path(tmp)))
    return module_input_amax(model_path, ranges, model, example)
