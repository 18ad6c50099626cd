"""dsedge/config.py: `TrainConfig` is the one schema of the training options (issue 24).

The `dsedge train` flags, their help (with the default), and the TOML / config.json
validation are generated from the dataclass; these tests hold the three together.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from dsedge.cli import app
from dsedge.config import DEFAULT_CALIBRATION_METHOD, TrainConfig, check_train_config, train_options
from dsedge.errors import DsedgeError


def test_every_field_is_described_once() -> None:
    """Each field has one spec with a help text; only `extra` (a TOML table) has no flag."""
    specs = train_options()
    assert [s.name for s in specs] == [f.name for f in dataclasses.fields(TrainConfig)]
    assert all(s.help for s in specs)
    assert [s.name for s in specs if not s.cli] == ["extra"]
    flags = {s.name: s.flag for s in specs}
    assert flags["num_workers"] == "--workers" and flags["ema_decay"] == "--ema"
    assert flags["compile"] == "--compile/--no-compile"


def test_train_help_lists_every_option_with_its_default() -> None:
    out = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "400"}).output
    for spec in train_options():
        if not spec.cli:
            continue
        first = spec.flag.split("/")[0]
        lines = [ln for ln in out.splitlines() if re.search(rf"{re.escape(first)}\s", ln)]
        assert any(spec.help_with_default in " ".join(ln.split()) for ln in lines), (spec.flag, lines)
    assert "--epochs" in out and "(default: 100)" in out and "(default: 0.0001)" in out  # SimAM lambda
    assert "--workers" in out and "(default: 2)" in out and "--compile-scope" in out


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Any]:
    """`dsedge train` with the training itself replaced: the TrainConfig the flags produced."""
    import dsedge.train.loop as loop

    seen: dict[str, Any] = {}

    def fake_train(cfg: TrainConfig, data: Path, out: Path, **kw: Any) -> Path:
        seen["cfg"] = cfg
        return tmp_path / "run"

    monkeypatch.setattr(loop, "train", fake_train)
    return seen


def _train(tmp_path: Path, *args: str) -> Any:
    return CliRunner().invoke(app, ["train", "--data", str(tmp_path), "--out", str(tmp_path / "runs"), *args])


def test_no_flags_give_the_dataclass_defaults(captured: dict[str, Any], tmp_path: Path) -> None:
    result = _train(tmp_path)
    assert result.exit_code == 0, result.output
    assert captured["cfg"] == TrainConfig()


def test_flags_reach_their_fields(captured: dict[str, Any], tmp_path: Path) -> None:
    result = _train(tmp_path, "--workers", "3", "--ema", "0.9", "--no-compile", "--no-channels-last",
                    "--focal-alpha", "0.2,0.3,0.5", "--extra-train", "a.csv", "--extra-train", "b",
                    "--init-from", "w.safetensors", "--lr", "1e-3", "--optimizer", "sgd",
                    "--compile-scope", "model", "--max-val-batches", "4")
    assert result.exit_code == 0, result.output
    cfg = captured["cfg"]
    assert (cfg.num_workers, cfg.ema_decay, cfg.compile, cfg.channels_last) == (3, 0.9, False, False)
    assert cfg.focal_alpha == [0.2, 0.3, 0.5] and cfg.extra_train == ["a.csv", "b"]
    assert cfg.init_from == "w.safetensors" and cfg.lr == 1e-3 and cfg.optimizer == "sgd"
    assert cfg.extra == {"compile_scope": "model"} and cfg.max_val_batches == 4
    assert cfg.epochs == TrainConfig().epochs  # untouched fields keep their defaults


def test_flags_override_the_toml(captured: dict[str, Any], tmp_path: Path) -> None:
    toml = tmp_path / "run.toml"
    toml.write_text("[train]\nepochs = 3\nseed = 5\n[train.extra]\nnote = 'kept'\n")
    result = _train(tmp_path, "--config", str(toml), "--seed", "7")
    assert result.exit_code == 0, result.output
    cfg = captured["cfg"]
    assert (cfg.epochs, cfg.seed, cfg.extra) == (3, 7, {"note": "kept"})


def test_extra_compile_scope_is_validated_by_the_schema() -> None:
    """Before, only the CLI checked compile_scope: a config built in Python passed with any value."""
    with pytest.raises(DsedgeError, match=r"invalid extra.compile_scope = 'bogus'") as e:
        check_train_config(TrainConfig(extra={"compile_scope": "bogus"}))
    assert "--compile-scope" in (e.value.hint or "")
    check_train_config(TrainConfig(extra={"compile_scope": "simam", "note": "free-form keys stay allowed"}))


@pytest.mark.parametrize("values, message", [
    ({"compile": "no"}, "invalid compile = 'no'"),
    ({"epochs": 2.5}, "invalid epochs = 2.5"),
    ({"ema_decay": 1.0}, "invalid ema_decay = 1.0"),
    ({"focal_alpha": [0.5, 0.0]}, "invalid focal_alpha.1 = 0.0"),
    ({"lr": float("inf")}, "invalid lr = inf"),
    ({"extra": 5}, "invalid extra = 5"),
])
def test_schema_names_the_key_and_value(values: dict[str, Any], message: str) -> None:
    with pytest.raises(DsedgeError, match=re.escape(message)):
        check_train_config(TrainConfig(**values))


def test_defaults_pass_the_schema() -> None:
    assert check_train_config(TrainConfig()) == TrainConfig()


def test_calibrate_default_method_is_one_constant() -> None:
    """The CLI and the library read the same constant (it was a copy held in line by a test)."""
    from dsedge.calibration import int8
    from dsedge.cli.calibrate_cmd import calibrate_command

    cli_default = inspect.signature(calibrate_command).parameters["method"].default.default
    assert cli_default is DEFAULT_CALIBRATION_METHOD and int8.DEFAULT_METHOD is DEFAULT_CALIBRATION_METHOD
    assert DEFAULT_CALIBRATION_METHOD in int8.METHODS
