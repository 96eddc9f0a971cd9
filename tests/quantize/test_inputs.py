"""Every bad input becomes one clear sentence with the fix (exit code 2)."""

from pathlib import Path

import pytest

from quantize import cli, preflight
from quantize.errors import QuantizeError
from quantize.methods import METHODS
from quantize.model_source import choose_group_size, resolve


def _quantize(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = cli.main(list(args))
    return code, capsys.readouterr().err


def test_group_size_defaults_to_32_when_it_divides_every_width(
    fake_checkpoint: Path, tmp_path: Path
) -> None:
    source = resolve(str(fake_checkpoint), tmp_path / "none.yaml", tmp_path)
    assert choose_group_size(source, None) == 32
    with pytest.raises(
        QuantizeError, match="does not divide hidden_size 576; use 32 or 64"
    ):
        choose_group_size(source, 128)


@pytest.mark.parametrize(
    ("bits", "method", "message"),
    [
        (3, None, "--bits 3 is not offered; use --bits 8 or --bits 4"),
        (8, "gptq", "method gptq offers 4 bits, not 8"),
        (4, "magic", "unknown --method 'magic'"),
    ],
)
def test_bits_and_method_are_checked(
    bits: int, method: str | None, message: str
) -> None:
    with pytest.raises(QuantizeError, match=message):
        preflight.choose_method(bits, method)


@pytest.mark.parametrize("name", ["w8a16", "fp8", "bnb"])
def test_gpu_only_methods_say_so_on_a_cpu_machine(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(preflight, "_nvidia_compute_capabilities", list)
    with pytest.raises(QuantizeError, match="needs an NVIDIA GPU"):
        preflight.check_hardware(METHODS[name])


def test_unknown_model_is_one_line_with_the_fix(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = tmp_path / "models.yaml"
    config.write_text("models:\n  - name: smol\n    source: builtin:smollm2-135m\n")
    code, err = _quantize(
        capsys, "--bits", "8", "no-such-model", "--config", str(config)
    )
    assert code == cli.EXIT_BAD_INPUT
    assert "unknown model 'no-such-model'" in err
    assert "pass one of those" in err


def test_group_size_that_cannot_fit_is_refused_before_any_work(
    capsys: pytest.CaptureFixture[str], fake_checkpoint: Path, tmp_path: Path
) -> None:
    code, err = _quantize(
        capsys,
        "--bits",
        "4",
        str(fake_checkpoint),
        "--group-size",
        "128",
        "--home",
        str(tmp_path),
    )
    assert code == cli.EXIT_BAD_INPUT
    assert "group size 128 does not divide hidden_size 576; use 32 or 64" in err


def test_existing_output_needs_force(
    capsys: pytest.CaptureFixture[str], fake_checkpoint: Path, tmp_path: Path
) -> None:
    output = tmp_path / "out"
    output.mkdir()
    (output / "keep.txt").write_text("mine")
    code, err = _quantize(
        capsys, "--bits", "4", str(fake_checkpoint), "-o", str(output)
    )
    assert code == cli.EXIT_BAD_INPUT
    assert "already exists; pass --force" in err
    assert (output / "keep.txt").read_text() == "mine"


def test_already_quantized_checkpoint_is_refused(
    fake_checkpoint: Path, tmp_path: Path
) -> None:
    config = (fake_checkpoint / "config.json").read_text()
    (fake_checkpoint / "config.json").write_text(
        config[:-1] + ', "quantization_config": {"quant_method": "gptq"}}'
    )
    with pytest.raises(QuantizeError, match="already quantized"):
        resolve(str(fake_checkpoint), tmp_path / "none.yaml", tmp_path)


def test_calibration_for_a_data_free_method_is_refused(
    capsys: pytest.CaptureFixture[str], fake_checkpoint: Path, tmp_path: Path
) -> None:
    calib = tmp_path / "calib.txt"
    calib.write_text("text")
    code, err = _quantize(
        capsys,
        "--bits",
        "4",
        str(fake_checkpoint),
        "--method",
        "rtn",
        "--calib",
        str(calib),
        "--home",
        str(tmp_path),
    )
    assert code == cli.EXIT_BAD_INPUT
    assert "rtn uses no calibration data; drop --calib" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--bits", "4", "--method", "rtn", "--weight-scales", "imatrix_mse"],
            "rtn reads no calibration data; use mse or minmax",
        ),
        (
            ["--bits", "8", "--weight-scales", "mse"],
            "method w8a8 at these bits has none, so drop --weight-scales",
        ),
    ],
)
def test_weight_scales_that_cannot_apply_are_refused(
    capsys: pytest.CaptureFixture[str],
    fake_checkpoint: Path,
    tmp_path: Path,
    args: list[str],
    message: str,
) -> None:
    code, err = _quantize(capsys, *args, str(fake_checkpoint), "--home", str(tmp_path))
    assert code == cli.EXIT_BAD_INPUT
    assert message in err


@pytest.mark.parametrize(
    ("needs_calibration", "observer"), [(True, "imatrix_mse"), (False, "minmax")]
)
def test_calibrated_methods_weigh_scales_by_activations_by_default(
    needs_calibration: bool, observer: str
) -> None:
    assert cli.default_weight_observer(needs_calibration) == observer
