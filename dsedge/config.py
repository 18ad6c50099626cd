"""Configuration dataclasses with the paper's defaults (torch-free).

TOML comes in (`dsedge train --config run.toml`), JSON goes out (run folders,
checkpoints, manifests). Field names are the TOML keys.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin, get_type_hints

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError, with_config
from pydantic.fields import FieldInfo
from typing_extensions import TypedDict

from dsedge import SIMAM_LAMBDA

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from dsedge.errors import DsedgeError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class PreprocessConfig:
    """The one preprocessing definition shared by training-eval, export, calibration and runtimes.

    Resize the *shorter* side to `resize` (bilinear, Pillow's antialiasing), centre-crop
    `crop` x `crop`, scale to [0, 1], subtract `mean`, divide by `std`, layout NCHW, RGB.
    """

    resize: int = 256
    crop: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bilinear"

    def __post_init__(self) -> None:
        if self.crop <= 0 or self.resize < self.crop:
            raise DsedgeError(
                f"invalid preprocessing: resize={self.resize} must be >= crop={self.crop} > 0"
            )
        if self.interpolation not in ("bilinear", "bicubic"):
            raise DsedgeError(f"unknown interpolation '{self.interpolation}' (bilinear|bicubic)")
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))

    @classmethod
    def for_size(cls, crop: int) -> PreprocessConfig:
        """The standard 256/224 ratio scaled to another crop size (e.g. 299 for Inception)."""
        return cls(resize=round(crop * 256 / 224), crop=crop)

    def to_dict(self) -> dict[str, Any]:
        return {
            "resize": self.resize,
            "crop": self.crop,
            "mean": list(self.mean),
            "std": list(self.std),
            "interpolation": self.interpolation,
            "color": "RGB",
            "layout": "NCHW",
            "scale": "1/255",
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PreprocessConfig:
        keys = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in keys})


#: `dsedge calibrate --method`'s default, read by the CLI and by `dsedge.calibration.int8` (where
#: the choice is measured: percentile kept the most decisions of the shipped model).
DEFAULT_CALIBRATION_METHOD = "percentile"

#: `dsedge calibrate --keep-fp`'s default ('none' quantizes them too): the depthwise 3x3 convs are
#: 1.1 % of DS-ResNet50's MACs, and INT8 in them alone flipped as many of 600 val views at 224 px
#: as every other conv together (a scratch run: 28 each; benchmarks/RESULTS.md). They run FP16 on TensorRT.
DEFAULT_KEEP_FP = ("depthwise",)

#: What `--compile` compiles (`extra.compile_scope`): auto = the whole model on CUDA, SimAM only on CPU.
COMPILE_SCOPES = ("auto", "model", "simam")


def opt(help: str, *, flag: str | None = None, unset: str = "off", cli: bool = True, **constraints: Any) -> Any:
    """One training option's CLI facts and pydantic constraints, carried in its `Annotated` type.

    Why: `TrainConfig` is the one definition of the options; `dsedge train`'s flags (name, type,
    help, the default in the help) and the TOML / config.json validation are generated from it,
    so a new option is one line here. `flag`: the flag when it is not `--<field-with-dashes>`;
    `unset`: how the help names a `None` default; `cli=False`: TOML only.
    """
    return Field(description=help, json_schema_extra={"flag": flag, "unset": unset, "cli": cli}, **constraints)


@with_config(ConfigDict(extra="allow"))
class ExtraOptions(TypedDict, total=False):
    """`extra`: free-form keys for experiments, plus the ones dsedge reads (checked here)."""

    compile_scope: Literal["auto", "model", "simam"]


@dataclass
class TrainConfig:
    """`dsedge train` defaults = the paper's recipe (DESIGN §2); the one schema of the training options.

    Each field's `Annotated` metadata (`opt`) gives its flag, help and range: `dsedge train`'s
    options and `check_train_config` are generated from this class. Strict (pydantic): TOML
    `compile = "no"` is a string, not a boolean (Python's truthiness made it True), and
    `epochs = "10"` is not a number. Ranges that used to run silently wrong:
    `early_stop_patience = 0` trained zero epochs; `plateau_factor = 2` raised the LR; a NaN or
    infinite LR ended in an internal error; `max_val_batches = 0` validated on nothing.
    """

    __pydantic_config__ = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False,
                                     revalidate_instances="always")

    model: Annotated[str, opt("Registry model (see `dsedge models`).")] = "ds_resnet50"
    epochs: Annotated[int, opt("Max epochs.", ge=1)] = 100
    batch_size: Annotated[int, opt("Per-process batch size.", ge=1)] = 8
    lr: Annotated[float, opt("Learning rate.", gt=0)] = 5e-4
    weight_decay: Annotated[float, opt("Weight decay.", ge=0)] = 0.0
    optimizer: Annotated[Literal["adam", "adamw", "sgd"], opt("adam | adamw | sgd.")] = "adam"
    plateau_factor: Annotated[float, opt("ReduceLROnPlateau factor.", gt=0, lt=1)] = 0.5
    plateau_patience: Annotated[int, opt("ReduceLROnPlateau patience.", ge=0)] = 7
    early_stop_patience: Annotated[int, opt("Epochs without improvement before stopping.", ge=1)] = 15
    focal_gamma: Annotated[float, opt("Focal loss gamma.", ge=0)] = 2.0
    focal_alpha: Annotated[list[Annotated[float, Field(gt=0)]] | None, opt(
        "Per-class alphas 'a,b,c' in class order (--balance decides the class mix).", unset="uniform")] = None
    balance: Annotated[Literal["offline", "sampler", "sqrt", "none"], opt(
        "sampler (each class equally often) | sqrt (class ~ sqrt(count)) | offline (augmented copies, "
        "the paper's) | none.")] = "sampler"
    extra_train: Annotated[list[str], opt(
        "More training data (folder or path,label CSV with a train split), e.g. HAM10000's labels.csv; "
        "repeatable. Validation stays on --data.", unset="none")] = field(default_factory=list)
    init_from: Annotated[str | None, opt(
        "Start from this dsedge checkpoint (e.g. 7-class pretraining); a head of another shape is "
        "re-initialised.", unset="none")] = None
    scheduler: Annotated[Literal["plateau", "cosine"], opt(
        "plateau (the paper's ReduceLROnPlateau) | cosine (per step, after --warmup-epochs).")] = "plateau"
    warmup_epochs: Annotated[float, opt("Linear LR warmup for --scheduler cosine.", ge=0)] = 0.0
    ema_decay: Annotated[float | None, opt(
        "Evaluate and checkpoint an exponential moving average of the weights with this decay, e.g. 0.998.",
        flag="--ema", gt=0, lt=1)] = None
    ema_bn_batches: Annotated[int, opt(
        "Training batches that re-estimate the EMA's BatchNorm statistics before each evaluation.", ge=1)] = 50
    tuning_fraction: Annotated[float, opt(
        "Stratified share of the --data train split held out to select epochs; val then only reports "
        "(0: off, val selects).", ge=0, lt=1)] = 0.2
    grad_clip: Annotated[float | None, opt("Clip the global gradient norm.", gt=0)] = None
    image_size: Annotated[int, opt("Crop size; resize = size*256/224.", ge=32)] = 224
    simam_lambda: Annotated[float, opt("SimAM lambda.", gt=0)] = SIMAM_LAMBDA
    pretrained: Annotated[str | None, opt("torchvision ResNet50 ImageNet weights file, or 'hub'.",
                                          unset="none")] = None
    seed: Annotated[int, opt("Random seed.", ge=0)] = 0
    num_workers: Annotated[int, opt("DataLoader workers.", flag="--workers", ge=0)] = 2
    device: Annotated[str, opt("auto | cpu | cuda | cuda:N.")] = "auto"
    amp: Annotated[Literal["auto", "bf16", "fp16", "off"], opt("auto | bf16 | fp16 | off.")] = "auto"
    channels_last: Annotated[bool, opt("Train in channels-last memory format.")] = True
    compile: Annotated[bool, opt("torch.compile the training forward (--compile-scope: what).")] = True
    max_train_batches: Annotated[int | None, opt("Cap batches per epoch (smoke runs).", unset="all", ge=1)] = None
    max_val_batches: Annotated[int | None, opt("Cap validation batches.", unset="all", ge=1)] = None
    extra: Annotated[ExtraOptions, opt("Free-form keys ([extra] in TOML).", cli=False)] = field(
        default_factory=dict)  # type: ignore[assignment]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class OptionSpec:
    """One `TrainConfig` field as the CLI sees it (generated by `train_options`)."""

    name: str
    flag: str  # e.g. "--epochs", "--workers", "--compile/--no-compile"
    type: Any  # without `None` and constraints: int, float, str, bool, list[str], list[float], ...
    default: Any
    help: str
    unset: str  # how the help names a `None` default
    cli: bool

    @property
    def help_with_default(self) -> str:
        """The help ending in the field's default, so `--help` shows what a run does without the flag."""
        return f"{self.help} (default: {_show(self.default, self.unset)})"


def _show(value: Any, unset: str) -> str:
    if value is None or value == []:
        return unset
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _plain(tp: Any) -> Any:
    """`Annotated[float | None, ...]` -> float; Literal[...] -> str; list[Annotated[float, ...]] -> list[float]."""
    if get_origin(tp) is Annotated:
        return _plain(get_args(tp)[0])
    if get_origin(tp) in (Union, types.UnionType):
        return _plain(next(a for a in get_args(tp) if a is not type(None)))
    if get_origin(tp) is Literal:
        return type(get_args(tp)[0])
    if get_origin(tp) is list:
        return list[_plain(get_args(tp)[0])]  # type: ignore[misc]
    return tp


@functools.cache
def train_options() -> tuple[OptionSpec, ...]:
    """Every `TrainConfig` field with its flag, plain type, default and help, in declaration order."""
    hints = get_type_hints(TrainConfig, include_extras=True)
    specs = []
    for f in dataclasses.fields(TrainConfig):
        info = next(m for m in get_args(hints[f.name])[1:] if isinstance(m, FieldInfo))
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        plain = _plain(hints[f.name])
        flag = extra.get("flag") or "--" + f.name.replace("_", "-")
        if plain is bool:
            flag = f"{flag}/--no-{flag[2:]}"
        specs.append(OptionSpec(f.name, str(flag), plain, default, info.description or "",
                                str(extra.get("unset") or "off"), bool(extra.get("cli"))))
    return tuple(specs)


@functools.cache
def _validator() -> TypeAdapter[TrainConfig]:
    return TypeAdapter(TrainConfig)


def _where(key: str) -> str:
    """Where a user fixes the error at `key` ('ema_decay', 'extra.compile_scope'): the TOML key and the flag."""
    name = key.split(".")[0]
    flag = "--compile-scope" if key == "extra.compile_scope" else next(
        (o.flag for o in train_options() if o.name == name and o.cli), None)
    return f"TOML key '{name}'" + (f" or flag {flag}" if flag else "")


def check_train_config(cfg: TrainConfig, source: str = "config") -> TrainConfig:
    """Validate every field's type and range; a `DsedgeError` naming the key, the value and what fits."""
    try:
        _validator().validate_python(cfg)
    except ValidationError as e:
        err = e.errors()[0]
        key = ".".join(str(part) for part in err["loc"]) or "?"
        raise DsedgeError(
            f"invalid {key} = {err.get('input')!r} ({source}): {err['msg'].lower()}",
            hint=f"{_where(key)}; `dsedge train --help` lists the defaults",
        ) from None
    return cfg


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML file into a dict with a clear error for a missing or malformed file."""
    p = Path(path)
    if not p.is_file():
        raise DsedgeError(f"config file not found: {p}", hint="pass an existing TOML file to --config")
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise DsedgeError(f"config file {p} is not valid TOML: {e}", hint="check the syntax, e.g. epochs = 10, compile = false") from e


def merge_into(cfg: Any, values: dict[str, Any], source: str = "config") -> Any:
    """Return a copy of dataclass `cfg` with `values` applied; unknown keys are an error."""
    names = {f.name for f in dataclasses.fields(cfg)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise DsedgeError(
            f"unknown {source} key(s): {', '.join(unknown)}",
            hint=f"valid keys: {', '.join(sorted(names))}",
        )
    return dataclasses.replace(cfg, **values)
