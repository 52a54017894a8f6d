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
    assert "num_inference_steps" in capsys.readouterr().err
    assert main(["sample", "--model", str(tmp_path / "missing"), "--out", str(tmp_path / "g.png")]) == 2
