"""Input checks shared by the CLI and the pipelines: one count validator, flags named as typed, one-line errors with
exit code 2, resizing / thresholding only on request, --version, defaults shown once in --help."""

from __future__ import annotations

import re

import numpy as np
import PIL.Image
import pytest
import torch
from hub_layouts import make_ddpm_cifar10_folder

import scorekit
from scorekit.cli import SUBCOMMANDS, build_parser, main


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return make_ddpm_cifar10_folder(str(tmp_path_factory.mktemp("cli") / "model"))


def png(path, array) -> str:
    PIL.Image.fromarray(array).save(path)
    return str(path)


def run_cli(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(
    "argv,message",
    [
        (["sample", "--batch-size", "-2"], "--batch-size must be an integer >= 1, got -2"),
        (["sample", "--nrow", "0"], "--nrow must be an integer >= 1, got 0"),
        (["sample", "--n-corrector-steps", "0"], "--n-corrector-steps must be an integer >= 1"),
        (["sample", "--snr", "0"], "--snr must be > 0"),
        (["sample", "--eta", "-1"], "--eta must be >= 0"),
        (["inpaint", "--num-samples", "-2", "--image", "x.png", "--mask", "m.png"],
         "--num-samples must be an integer >= 1, got -2"),
        (["colorize", "--num-samples", "0", "--image", "x.png"], "--num-samples must be an integer >= 1"),
        (["likelihood", "--num-probes", "0", "--images", "x.png"], "--num-probes must be an integer >= 1"),
        (["likelihood", "--batch-size", "0", "--images", "x.png"], "--batch-size must be an integer >= 1"),
        (["sample", "--device", "cuda:7"], "--device cuda:7"),
        (["sample", "--device", "gpu0"], "--device 'gpu0' is not a torch device"),
    ],
)
def test_bad_flags_are_one_line_errors_naming_the_flag(argv, message, model, tmp_path, capsys):
    out_flag = [] if argv[0] == "likelihood" else ["--out", str(tmp_path / "o.png")]
    code, out, err = run_cli(argv + ["--model", model] + out_flag, capsys)
    assert code == 2 and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "o.png").exists()  # before any work


def test_unreadable_image_and_missing_classifier_are_one_line_errors(model, tmp_path, capsys):
    bad = tmp_path / "corrupt.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    code, _, err = run_cli(["colorize", "--model", model, "--image", str(bad), "--out", str(tmp_path / "o.png")],
                           capsys)
    assert code == 2 and "--image" in err and "cannot read it as an image" in err and len(err.splitlines()) == 1
    code, _, err = run_cli(["sample", "--model", model, "--class-label", "1", "--out", str(tmp_path / "o.png")],
                           capsys)
    assert code == 2 and "--class-label needs a class-conditional UNet" in err and len(err.splitlines()) == 1


def test_resize_and_threshold_only_when_asked_and_reported(model, tmp_path, capsys):
    rng = np.random.default_rng(0)
    big = png(tmp_path / "big.png", rng.integers(0, 256, (12, 12, 3), dtype=np.uint8))
    image = png(tmp_path / "image.png", rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    soft = np.zeros((8, 8), dtype=np.uint8)
    soft[2:6, 2:6] = 200
    soft[0, 0] = 90
    soft = png(tmp_path / "soft.png", soft)
    common = ["--model", model, "--steps", "1", "--num-samples", "1", "--out", str(tmp_path / "o.png")]
    code, _, err = run_cli(["colorize", "--image", big] + common, capsys)
    assert code == 2 and "--image" in err and "12x12" in err and "--resize" in err
    code, out, _ = run_cli(["colorize", "--image", big, "--resize"] + common, capsys)
    assert code == 0 and "resized --image" in out
    code, _, err = run_cli(["inpaint", "--image", image, "--mask", soft] + common, capsys)
    assert code == 2 and "--mask" in err and "--threshold-mask" in err
    code, out, _ = run_cli(["inpaint", "--image", image, "--mask", soft, "--threshold-mask"] + common, capsys)
    assert code == 0 and "thresholded --mask" in out


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["--version"])
    assert exit_info.value.code == 0 and scorekit.__version__ in capsys.readouterr().out


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_each_default_is_shown_once_in_help(command, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    text = re.sub(r"\s+", " ", capsys.readouterr().out)
    options = re.split(r" (?=--[a-z])", text)
    assert all(o.count("default") <= 1 for o in options), [o for o in options if o.count("default") > 1]


@pytest.mark.parametrize("name", ["inpaint", "colorize"])
def test_pipelines_reject_a_zero_batch_size(name, tmp_path):
    from scorekit.pipelines import ScoreSDEColorizationPipeline, ScoreSDEInpaintPipeline

    cls = ScoreSDEInpaintPipeline if name == "inpaint" else ScoreSDEColorizationPipeline
    pipe = cls.from_pretrained(make_ddpm_cifar10_folder(str(tmp_path / "m")))
    image = torch.rand(1, 3, 8, 8)
    kwargs = dict(mask_image=torch.zeros(1, 1, 8, 8)) if name == "inpaint" else {}
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1, got 0"):
        pipe(image, batch_size=0, num_inference_steps=1, **kwargs)
