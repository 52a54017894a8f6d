"""The scorekit command line: --help for every subcommand, `sample` writes a PNG grid from a saved pipeline."""

import PIL.Image
import pytest
from hub_layouts import make_ddpm_cifar10_folder, make_ncsnpp_celebahq_folder

from scorekit.cli import SUBCOMMANDS, build_parser, main


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage" in capsys.readouterr().out


FOLDERS = [make_ddpm_cifar10_folder, make_ncsnpp_celebahq_folder]


@pytest.mark.parametrize("make_folder", FOLDERS, ids=["ddpm", "ncsnpp"])
@pytest.mark.parametrize("sampler", ["pc", "ode", "ddim"])
def test_sample_writes_grid(tmp_path, make_folder, sampler, capsys):
    model = make_folder(str(tmp_path / "model"))
    out = tmp_path / "grid.png"
    code = main(["sample", "--model", model, "--sampler", sampler, "--steps", "3", "--seed", "1", "--batch-size", "4",
                 "--nrow", "2", "--out", str(out)])
    assert code == 0
    grid = PIL.Image.open(out)
    assert grid.size == (2 * 8 + 3 * 2, 2 * 8 + 3 * 2)  # 2x2 images of 8 px with 2 px padding
    assert "NFE" in capsys.readouterr().out


def test_sample_reports_bad_input(tmp_path, capsys):
    model = make_ddpm_cifar10_folder(str(tmp_path / "model"))
    assert main(["sample", "--model", model, "--steps", "0", "--out", str(tmp_path / "g.png")]) == 2
    assert "--steps must be an integer >= 1, got 0" in capsys.readouterr().err
    assert main(["sample", "--model", str(tmp_path / "missing"), "--out", str(tmp_path / "g.png")]) == 2


def write_png(path, array):
    PIL.Image.fromarray(array).save(path)
    return str(path)


def test_inpaint_and_colorize_write_grids(tmp_path, capsys):
    import numpy as np

    model = make_ddpm_cifar10_folder(str(tmp_path / "model"))
    rng = np.random.default_rng(0)
    image = write_png(tmp_path / "photo.png", rng.integers(0, 256, (20, 20, 3), dtype=np.uint8))  # --resize: 8x8
    mask = np.zeros((20, 20), dtype=np.uint8)
    mask[5:15, 5:15] = 255
    mask = write_png(tmp_path / "mask.png", mask)
    out = tmp_path / "inpaint.png"
    assert main(["inpaint", "--model", model, "--image", image, "--mask", mask, "--num-samples", "3", "--steps", "2",
                 "--resize", "--out", str(out)]) == 0
    assert PIL.Image.open(out).size == (5 * 8 + 6 * 2, 8 + 2 * 2)  # observation, mask, 3 samples in one row
    out = tmp_path / "colorize.png"
    assert main(["colorize", "--model", model, "--image", image, "--num-samples", "2", "--steps", "2",
                 "--sampler", "ode", "--ode-method", "euler", "--resize", "--out", str(out)]) == 0
    assert PIL.Image.open(out).size == (3 * 8 + 4 * 2, 8 + 2 * 2)
    with pytest.raises(SystemExit):  # --method names the restoration method here; the PF-ODE's is --ode-method
        main(["colorize", "--model", model, "--image", image, "--sampler", "ode", "--method", "euler"])
    assert "--sampler ode --ode-method euler" in capsys.readouterr().err
    assert main(["inpaint", "--model", model, "--image", str(tmp_path / "nope.png"), "--mask", mask]) == 2
    assert "--image" in capsys.readouterr().err


def test_sample_with_class_label(tmp_path):
    from diffusers import DDPMScheduler
    from hub_layouts import tiny_ddpm_unet

    from scorekit.models import TimeClassifierModel
    from scorekit.pipelines import ScoreSDEClassConditionalPipeline

    classifier = TimeClassifierModel(in_channels=3, sample_size=8, num_classes=3, block_out_channels=(8,),
                                     time_embedding_type="positional", norm_num_groups=4)
    ScoreSDEClassConditionalPipeline(unet=tiny_ddpm_unet(), scheduler=DDPMScheduler(),
                                     classifier=classifier).save_pretrained(tmp_path / "model")
    out = tmp_path / "grid.png"
    assert main(["sample", "--model", str(tmp_path / "model"), "--class-label", "2", "--guidance-scale", "3",
                 "--steps", "2", "--batch-size", "2", "--out", str(out)]) == 0
    assert out.exists()
    assert main(["sample", "--model", str(tmp_path / "model"), "--class-label", "5", "--steps", "2",
                 "--batch-size", "2", "--out", str(out)]) == 2  # label out of range: a clear error, exit 2
