"""`dsedge data check`: counts, problems and exit codes through the real CLI entry point."""

from __future__ import annotations

from pathlib import Path

import pytest

from dsedge.cli import main
from dsedge.data.check import check_data


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as e:
        main(args)
    out = capsys.readouterr()
    return int(e.value.code or 0), out.out + out.err


def test_clean_tree_prints_counts_and_exits_zero(tiny_isic: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run_cli(["data", "check", str(tiny_isic)], capsys)
    assert code == 0
    assert "train" in out and "19" in out and "no problems found" in out


def test_corrupt_image_is_an_error_with_exit_1(tiny_isic: Path, capsys: pytest.CaptureFixture[str]) -> None:
    victim = sorted((tiny_isic / "ISIC-2017_Validation_Data").glob("*.jpg"))[0]
    victim.write_bytes(victim.read_bytes()[:200])
    code, out = run_cli(["data", "check", str(tiny_isic)], capsys)
    assert code == 1
    assert victim.name in out and "unreadable" in out


def test_grayscale_image_is_converted_with_a_warning(tiny_isic: Path) -> None:
    from PIL import Image

    victim = sorted((tiny_isic / "ISIC-2017_Training_Data").glob("*.jpg"))[0]
    Image.open(victim).convert("L").save(victim)
    report = check_data(tiny_isic)
    assert report.ok
    assert any(victim.name in w and "converted" in w for w in report.warnings)


def test_missing_path_is_a_clear_error_not_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run_cli(["data", "check", str(tmp_path / "nope")], capsys)
    assert code == 2
    assert "data path not found" in out and "Traceback" not in out


def test_strict_fails_on_warnings(tiny_isic: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tiny_isic / "ISIC-2017_Training_Data" / "ISIC_7777777.jpg").write_bytes(
        next((tiny_isic / "ISIC-2017_Training_Data").glob("*.jpg")).read_bytes()
    )
    assert run_cli(["data", "check", str(tiny_isic)], capsys)[0] == 0
    code, out = run_cli(["data", "check", "--strict", str(tiny_isic)], capsys)
    assert code == 1 and "ISIC_7777777" in out


@pytest.mark.slow
def test_real_data_check_prints_official_counts(isic_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run_cli(["data", "check", str(isic_root)], capsys)
    assert code == 0
    for n in ("374", "1372", "254", "30", "78", "42"):
        assert n in out


def test_quality_option_warns_about_images_predict_would_refuse(tiny_isic: Path, capsys) -> None:
    from PIL import Image

    victim = sorted((tiny_isic / "ISIC-2017_Training_Data").glob("*.jpg"))[0]
    Image.new("RGB", (300, 300)).save(victim)  # a black frame
    assert not check_data(tiny_isic).quality  # off by default
    report = check_data(tiny_isic, quality=True)
    assert any(victim.name in q and "too_dark" in q for q in report.quality)
    code, out = run_cli(["data", "check", str(tiny_isic), "--quality"], capsys)
    assert code == 0 and "quality checks" in " ".join(out.split())


def test_a_csv_with_several_faults_reports_all_and_keeps_every_split(tmp_path: Path, capsys) -> None:
    """Issue 26: `data check` showed one fault and dropped the train split from its table."""
    from PIL import Image

    for name in ("a", "b", "c", "v"):
        Image.new("RGB", (20, 16), (120, 80, 60)).save(tmp_path / f"{name}.jpg")
    (tmp_path / "data.csv").write_text("path,label,split\na.jpg,MEL,train\nmissing.jpg,NV,train\n"
                                       "b.jpg,melanomaa,train\nc.jpg,NV,train\nc.jpg,NV,train\nv.jpg,SK,val\n")
    report = check_data(tmp_path / "data.csv")
    assert report.counts == {"train": {"MEL": 1, "NV": 1, "SK": 0}, "val": {"MEL": 0, "NV": 0, "SK": 1}}
    text = " ".join(report.errors)
    assert "image not found" in text and "did you mean 'melanoma (MEL)'" in text
    assert any("counted once" in w for w in report.warnings)
    code, out = run_cli(["data", "check", str(tmp_path / "data.csv")], capsys)
    assert code == 1 and "no problems found" not in out
    assert "train" in out and "melanomaa" in out
