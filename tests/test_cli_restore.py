"""``scorekit restore --task inpaint|colorize|superres|deblur --method ...``: grids of observation | samples | truth,
the NFE per returned sample, particles, and every bad flag a one-line error before any work (``inpaint`` and
``colorize`` are the same command with the task fixed: tests/test_cli.py)."""

from __future__ import annotations

import re

import numpy as np
import PIL.Image
import pytest
from hub_layouts import make_ddpm_cifar10_folder

from scorekit.cli import main

PAD = 2  # torchvision's make_grid padding, as scorekit's save_grid uses it


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("restore")
    rng = np.random.default_rng(0)
    paths = {"model": make_ddpm_cifar10_folder(str(root / "model"))}  # an RGB model of 8x8 images
    for name, size in (("image", 8), ("low", 4), ("big", 12)):
        paths[name] = str(root / f"{name}.png")
        PIL.Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(paths[name])
    mask = np.zeros((8, 8), dtype=np.uint8)
    mask[2:6, 2:6] = 255
    paths["mask"] = str(root / "mask.png")
    PIL.Image.fromarray(mask).save(paths["mask"])
    paths["kernel"] = str(root / "kernel.npy")
    np.save(paths["kernel"], np.full((3, 3), 1 / 9))
    bad_kernels = {"nan_kernel": np.array([[0.5, np.nan], [0.25, 0.25]]), "zero_kernel": np.zeros((3, 3)),
                   "edge_kernel": np.array([[1.0, -1.0]]), "flat_kernel": np.full(3, 1 / 3),
                   "text_kernel": np.array([["a", "b"], ["c", "d"]])}
    for name, kernel in bad_kernels.items():
        paths[name] = str(root / f"{name}.npy")
        np.save(paths[name], kernel)
    return paths


def grid_size(columns: int, rows: int = 1, size: int = 8) -> tuple[int, int]:
    return (columns * size + (columns + 1) * PAD, rows * size + (rows + 1) * PAD)


def run(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# task flags -> columns of the one row: leading panels + samples (+ truth with --simulate)
CASES = {
    "inpaint": (["--task", "inpaint", "--mask", "{mask}", "--image", "{image}"], 2),
    "inpaint-simulated": (["--task", "inpaint", "--mask", "{mask}", "--image", "{image}", "--simulate"], 3),
    "colorize": (["--task", "colorize", "--image", "{image}"], 1),
    "superres": (["--task", "superres", "--image", "{low}"], 1),
    "superres-simulated": (["--task", "superres", "--image", "{image}", "--simulate", "--method", "ddrm"], 2),
    "deblur-simulated": (["--task", "deblur", "--image", "{image}", "--simulate", "--method", "pigdm",
                          "--noise-std", "0.05"], 2),
    "deblur-box": (["--task", "deblur", "--image", "{image}", "--kernel", "box", "--kernel-size", "3"], 1),
    "deblur-npy": (["--task", "deblur", "--image", "{image}", "--kernel", "{kernel}", "--method", "dps"], 1),
}


@pytest.mark.parametrize("case", list(CASES))
def test_restore_writes_observation_samples_and_truth(case, files, tmp_path, capsys):
    flags, extra = CASES[case]
    out = tmp_path / "grid.png"
    argv = ["restore", "--model", files["model"], *[f.format(**files) for f in flags], "--batch-size", "3",
            "--steps", "2", "--out", str(out)]
    code, stdout, err = run(argv, capsys)
    assert code == 0, err
    assert PIL.Image.open(out).size == grid_size(3 + extra)
    assert re.search(r"NFE \d+ per sample", stdout) and ("PSNR" in stdout) == ("--simulate" in flags)


def test_a_channel_conversion_is_reported(files, tmp_path, capsys):
    """A gray observation given to an RGB model is copied to every channel, and the command says so, as it does for
    --resize (it was silent)."""
    gray = tmp_path / "gray.png"
    PIL.Image.fromarray(np.arange(16, dtype=np.uint8).reshape(4, 4) * 16).save(gray)
    code, stdout, err = run(["restore", "--model", files["model"], "--task", "superres", "--image", str(gray),
                             "--method", "ddrm", "--steps", "2", "--out", str(tmp_path / "g.png")], capsys)
    assert code == 0, err
    assert f"converted --image {gray} from 1 to 3 channels, gray to RGB" in stdout


def test_particle_methods_report_the_nfe_per_sample_and_return_their_particles(files, tmp_path, capsys):
    out = tmp_path / "grid.png"
    common = ["restore", "--model", files["model"], "--task", "superres", "--image", files["image"], "--simulate",
              "--steps", "3", "--out", str(out)]
    code, stdout, _ = run([*common, "--method", "mcgdiff", "--num-particles", "4", "--batch-size", "2"], capsys)
    assert code == 0 and "NFE 16 per sample (4 particles x 4)" in stdout  # 3 steps + the final Tweedie estimate
    assert PIL.Image.open(out).size == grid_size(1 + 2 + 1)
    code, stdout, _ = run([*common, "--method", "tds", "--num-particles", "3", "--batch-size", "2",
                           "--return-particles", "--ess-threshold", "1"], capsys)
    assert code == 0 and "2 samples x 3 particles" in stdout
    assert PIL.Image.open(out).size == grid_size(1 + 3 + 1, rows=2)  # one row per sample: its particles


BAD = [
    (["--task", "superres", "--image", "{low}", "--mask", "{mask}"],
     "--mask is for --task inpaint, not --task superres"),
    (["--task", "inpaint", "--image", "{image}"], "--task inpaint needs --mask"),
    (["--task", "deblur", "--image", "{image}", "--factor", "2"], "--factor is for --task superres"),
    (["--task", "deblur", "--image", "{image}", "--kernel", "box", "--blur-sigma", "2"],
     "--blur-sigma is for --kernel gaussian, not --kernel box"),
    (["--task", "deblur", "--image", "{image}", "--kernel", "disk"], "--kernel must be gaussian or box or a .npy"),
    (["--task", "deblur", "--image", "{image}", "--kernel", "{kernel}", "--kernel-size", "3"],
     "--kernel-size is for --kernel gaussian or box"),
    (["--task", "superres", "--image", "{low}", "--method", "dps", "--num-particles", "4"],
     "--num-particles is for --method tds or mcgdiff, not --method dps"),
    (["--task", "superres", "--image", "{low}", "--method", "tds", "--num-particles", "0"],
     "--num-particles must be an integer >= 1, got 0"),
    (["--task", "superres", "--image", "{low}", "--noise-std", "-0.1"], "--noise-std must be >= 0"),
    (["--task", "superres", "--image", "{low}", "--method", "ddrm", "--scale", "0.5"],
     "--scale is for --method dps or pigdm, not --method ddrm"),
    (["--task", "superres", "--image", "{low}", "--method", "ddrm", "--sampler", "pc"],
     "--method ddrm runs as its own sampler 'ddrm'; --sampler pc cannot run it"),
    (["--task", "superres", "--image", "{low}", "--method", "ddrm", "--ddrm-eta", "2"],
     "--ddrm-eta must be in [0, 1]"),
    (["--task", "superres", "--image", "{low}", "--factor", "3"], "--factor 3 does not divide the model's size 8x8"),
    (["--task", "superres", "--image", "{image}"], "--image {image} is 8x8 pixels but --factor 2 observes 4x4"),
    (["--task", "superres", "--image", "{low}", "--method", "ddrm", "--snr", "0.2"],
     "--snr is not a setting of sampler ddrm (the sampler of --method ddrm"),
]


@pytest.mark.parametrize("flags, message", BAD, ids=[m.split(" ")[0] + str(i) for i, (_, m) in enumerate(BAD)])
def test_bad_flags_are_one_line_errors_before_any_work(flags, message, files, tmp_path, capsys):
    out = tmp_path / "grid.png"
    code, stdout, err = run(["restore", "--model", files["model"], *[f.format(**files) for f in flags],
                             "--steps", "2", "--out", str(out)], capsys)
    lines = [line for line in err.splitlines() if line.strip() and "Loading pipeline components" not in line]
    assert code == 2 and message.format(**files) in err and len(lines) == 1 and "Traceback" not in err
    assert not out.exists() and "wrote" not in stdout


def test_method_that_is_an_ode_solver_points_to_ode_method(files, capsys):
    with pytest.raises(SystemExit):
        main(["restore", "--model", files["model"], "--task", "colorize", "--image", files["image"], "--method",
              "heun"])
    assert "invalid choice: 'heun'" in capsys.readouterr().err


def test_colorize_needs_an_rgb_model(tmp_path, capsys):
    from diffusers import DDPMScheduler
    from hub_layouts import tiny_ddpm_unet

    from scorekit.pipelines import ScoreSDEPipeline

    ScoreSDEPipeline(unet=tiny_ddpm_unet(channels=1), scheduler=DDPMScheduler()).save_pretrained(tmp_path / "gray")
    image = tmp_path / "x.png"
    PIL.Image.new("L", (8, 8), 128).save(image)
    code, _, err = run(["restore", "--model", str(tmp_path / "gray"), "--task", "colorize", "--image", str(image),
                        "--out", str(tmp_path / "o.png")], capsys)
    assert code == 2 and "--task colorize needs an RGB model (in_channels=3)" in err


# flags refused before the model loads: the .npy kernel (numpy only), the sampler flags against the sampler the
# method or --sampler picks (the registry), --ess-threshold's range
BEFORE_LOAD = [
    (["--kernel", "{nan_kernel}"], "--kernel {nan_kernel} holds non-finite values (1 NaN or inf of 4 taps)"),
    (["--kernel", "{zero_kernel}"], "--kernel {zero_kernel} sums to 0 (all zeros observe nothing)"),
    (["--kernel", "{edge_kernel}"], "--kernel {edge_kernel} sums to 0"),
    (["--kernel", "{flat_kernel}"], "--kernel {flat_kernel} must hold a 2-D array (height x width taps), got shape "
                                    "(3,)"),
    (["--kernel", "{text_kernel}"], "--kernel {text_kernel} must hold real numbers, got dtype <U1"),
    (["--method", "ddrm", "--eta", "0.5"], "--eta is not a setting of sampler ddrm (the sampler of --method ddrm; "
                                           "DDRM's eta and eta_b are --ddrm-eta and --ddrm-eta-b); its settings are "
                                           "none"),
    (["--method", "mcgdiff", "--snr", "0.1"], "--snr is not a setting of sampler mcgdiff (the sampler of --method "
                                              "mcgdiff); its settings are --num-particles, --ess-threshold, "
                                              "--return-particles"),
    (["--method", "dps", "--eta", "0.5"], "--eta is not a setting of sampler pc (the default of --method dps; "
                                          "--sampler picks another); its settings are --timesteps, --predictor,"),
    (["--method", "dps", "--sampler", "ode", "--snr", "0.1"], "--snr is not a setting of sampler ode (--sampler ode)"),
    (["--method", "tds", "--ess-threshold", "1.5"], "--ess-threshold must be in (0, 1], got 1.5"),
    (["--method", "tds", "--ess-threshold", "0"], "--ess-threshold must be in (0, 1], got 0.0"),
]


@pytest.mark.parametrize("flags, message", BEFORE_LOAD, ids=[str(i) for i in range(len(BEFORE_LOAD))])
def test_bad_flags_are_refused_before_the_model_loads(flags, message, files, tmp_path, capsys, monkeypatch):
    def no_load(*args, **kwargs):
        raise AssertionError("the model must not load before the flags are checked")

    monkeypatch.setattr("scorekit.cli.restore_tasks.load_pipeline", no_load)
    out = tmp_path / "grid.png"
    code, stdout, err = run(["restore", "--model", files["model"], "--task", "deblur", "--image", files["image"],
                             *[f.format(**files) for f in flags], "--steps", "2", "--out", str(out)], capsys)
    assert code == 2 and message.format(**files) in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists() and "wrote" not in stdout
