"""Configuration dataclasses with the paper's defaults (torch-free).

TOML comes in (`dsedge train --config run.toml`), JSON goes out (run folders,
checkpoints, manifests). Field names are the TOML keys.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

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


@dataclass
class TrainConfig:
    """`dsedge train` defaults = the paper's recipe (DESIGN §2)."""

    model: str = "ds_resnet50"
    epochs: int = 100
    batch_size: int = 8
    lr: float = 5e-4
    weight_decay: float = 0.0
    optimizer: str = "adam"
    plateau_factor: float = 0.5
    plateau_patience: int = 7
    early_stop_patience: int = 15
    focal_gamma: float = 2.0
    focal_alpha: list[float] | None = None  # None: uniform (the balancing decides what the model sees)
    balance: str = "sampler"  # offline | sampler | sqrt | none
    extra_train: list[str] = field(default_factory=list)  # more training data (val stays --data's)
    init_from: str | None = None  # dsedge checkpoint: trunk loaded, head re-initialised if it differs
    scheduler: str = "plateau"  # plateau (the paper's) | cosine (per step, after warmup)
    warmup_epochs: float = 0.0
    ema_decay: float | None = None  # evaluate and checkpoint an exponential moving average of weights
    ema_bn_batches: int = 50  # training batches that re-estimate the EMA's BatchNorm statistics per epoch
    tuning_fraction: float = 0.2  # stratified slice of the train split held out to select epochs (0: off)
    grad_clip: float | None = None  # max global grad norm
    image_size: int = 224
    simam_lambda: float = SIMAM_LAMBDA
    pretrained: str | None = None
    seed: int = 0
    num_workers: int = 2
    device: str = "auto"
    amp: str = "auto"  # auto | bf16 | fp16 | off
    channels_last: bool = True
    compile: bool = True
    max_train_batches: int | None = None  # debugging / smoke runs
    max_val_batches: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class _TrainSchema(BaseModel):
    """The types and ranges of `TrainConfig`, checked by pydantic in strict mode.

    Strict: TOML `compile = "no"` is a string, not a boolean (Python's truthiness made it
    True), and `epochs = "10"` is not a number. Ranges that used to run silently wrong:
    `early_stop_patience = 0` trained zero epochs; `plateau_factor = 2` raised the LR; a
    NaN or infinite LR ended in an internal error; `max_val_batches = 0` validated on nothing.
    """

    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)

    model: str
    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    lr: float = Field(gt=0)
    weight_decay: float = Field(ge=0)
    optimizer: Literal["adam", "adamw", "sgd"]
    plateau_factor: float = Field(gt=0, lt=1)
    plateau_patience: int = Field(ge=0)
    early_stop_patience: int = Field(ge=1)
    focal_gamma: float = Field(ge=0)
    focal_alpha: list[Annotated[float, Field(gt=0)]] | None
    balance: Literal["offline", "sampler", "sqrt", "none"]
    extra_train: list[str]
    init_from: str | None
    scheduler: Literal["plateau", "cosine"]
    warmup_epochs: float = Field(ge=0)
    ema_decay: Annotated[float, Field(gt=0, lt=1)] | None
    ema_bn_batches: int = Field(ge=1)
    tuning_fraction: float = Field(ge=0, lt=1)
    grad_clip: Annotated[float, Field(gt=0)] | None
    image_size: int = Field(ge=32)
    simam_lambda: float = Field(gt=0)
    pretrained: str | None
    seed: int = Field(ge=0)
    num_workers: int = Field(ge=0)
    device: str
    amp: Literal["auto", "bf16", "fp16", "off"]
    channels_last: bool
    compile: bool
    max_train_batches: Annotated[int, Field(ge=1)] | None
    max_val_batches: Annotated[int, Field(ge=1)] | None
    extra: dict[str, Any]


#: Flag spelling of the fields whose flag differs from `--<field-with-dashes>`.
FLAG_NAMES = {"num_workers": "--workers", "ema_decay": "--ema", "compile": "--compile/--no-compile",
              "channels_last": "--channels-last/--no-channels-last"}


def check_train_config(cfg: TrainConfig, source: str = "config") -> TrainConfig:
    """Validate every field's type and range; a `DsedgeError` naming the key, the value and what fits."""
    try:
        _TrainSchema.model_validate(dataclasses.asdict(cfg))
    except ValidationError as e:
        err = e.errors()[0]
        key = ".".join(str(part) for part in err["loc"]) or "?"
        field_name = str(err["loc"][0]) if err["loc"] else key
        flag = FLAG_NAMES.get(field_name, "--" + field_name.replace("_", "-"))
        raise DsedgeError(
            f"invalid {key} = {err.get('input')!r} ({source}): {err['msg'].lower()}",
            hint=f"TOML key '{field_name}' or flag {flag}; `dsedge train --help` lists the defaults",
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
