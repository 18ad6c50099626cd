"""The README's order — export, `risk`, `calibrate` with defaults — never ends in a float model named
INT8 (issue 20): either at least 80 % of the MACs are INT8, or calibrate exits with an error and
writes nothing. An outside probe found 1 of 71 convs quantized and "budget met" before."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dsedge.calibration.int8 import INT8_NAME, calibrate_bundle
from dsedge.calibration.macs import MIN_INT8_MAC_FRACTION, int8_mac_fraction
from dsedge.clinical.fit import fit_bundle_risk
from dsedge.errors import CalibrationError
from dsedge.runtime.bundle import load_bundle

pytestmark = pytest.mark.slow  # two calibrations of a real DS-ResNet50 graph: about 90 s


@pytest.fixture(scope="module")
def risked(tmp_path_factory: pytest.TempPathFactory, tiny_isic_session: Path) -> Path:
    """A random-init DS-ResNet50 bundle at 32 px with a fitted operating point."""
    from dsedge.export.bundle import export_bundle

    out = export_bundle(None, tmp_path_factory.mktemp("risked") / "bundle", model_name="ds_resnet50",
                        random_init=True, image_size=32)
    fit_bundle_risk(out, tiny_isic_session, "val", resamples=20)
    return out


@pytest.fixture
def bundle(risked: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(risked, tmp_path / "bundle"))


def test_risk_then_calibrate_with_defaults_is_int8_or_refused(bundle: Path, tiny_isic_session: Path) -> None:
    try:
        result = calibrate_bundle(bundle, tiny_isic_session, num_images=16)
    except CalibrationError as e:
        assert not (bundle / INT8_NAME).exists()
        assert "budget" in str(e) or "MACs" in str(e)
        return
    share = int8_mac_fraction(bundle / INT8_NAME)["fraction"]
    assert share >= MIN_INT8_MAC_FRACTION
    assert load_bundle(bundle).artifacts[INT8_NAME]["int8_mac_fraction"] == pytest.approx(share, abs=1e-4)
    assert result["int8_mac_fraction"]["fraction"] == pytest.approx(share)


def test_the_mac_floor_refuses_a_mostly_float_result(bundle: Path, tiny_isic_session: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever the search finds, a candidate with half its MACs in float is refused, nothing written."""
    from dsedge.calibration import macs

    real = macs.int8_mac_fraction
    monkeypatch.setattr(macs, "int8_mac_fraction", lambda model: {**real(model), "fraction": 0.5})
    with pytest.raises(CalibrationError, match="MAC"):
        calibrate_bundle(bundle, tiny_isic_session, num_images=16)
    assert not (bundle / INT8_NAME).exists()
