"""The checkpoints that ship in the package: short names, integrity checks, package data, clear errors."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
from pathlib import Path

import pytest
import torch

from scorekit.cli import main
from scorekit.models import SHIPPED_MODELS, shipped_model_path
from scorekit.models import shipped as shipped_module
from scorekit.models.__main__ import main as models_main
from scorekit.pipelines import ScoreSDEClassConditionalPipeline, ScoreSDEPipeline

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", sorted(SHIPPED_MODELS))
def test_short_names_resolve_offline_to_verified_folders(name):
    path = shipped_model_path(name)
    assert os.path.isfile(os.path.join(path, "model_index.json"))
    assert os.path.isfile(os.path.join(path, "README.md")), "every shipped model has a model card"
    assert shipped_model_path(name.split("/")[1]) == path  # "digits" works too
    size = sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
    assert size < 8e6, f"{name} is {size / 1e6:.1f} MB; shipped folders stay a few MB"


CITED_FILE = re.compile(r"[\w./-]+\.(?:py|md|json|toml|txt|yaml|cfg)\b|\b[A-Z][A-Z0-9]*(?:-[A-Z0-9]+)*-NOTES\b")


@pytest.mark.parametrize("name", sorted(SHIPPED_MODELS))
def test_shipped_cards_cite_only_files_in_the_repository(name):
    """A card travels with the package and to the Hub: every file it points to (a path, or a notes document named
    without its extension) must be part of the repository."""
    card = (Path(shipped_model_path(name)) / "README.md").read_text()
    ours = {p.relative_to(ROOT) for p in ROOT.rglob("*") if p.is_file() and ".venv" not in p.parts}
    names = {p.name for p in ours} | {p.stem for p in ours}
    cited = set(CITED_FILE.findall(card))
    assert cited, "the test looks for nothing: check CITED_FILE"
    outside = [c for c in cited if not ((ROOT / c).is_file() or ("/" not in c and c in names))]
    assert not outside, f"{name}'s card cites what the repository does not hold: {outside}"


def test_digits_model_is_cfg_capable_with_classifier_and_samples():
    pipe = ScoreSDEClassConditionalPipeline.from_pretrained("scorekit/digits")
    assert pipe.conditioning == "classifier-free" and pipe.classifier is not None
    g = torch.Generator().manual_seed(0)
    out = pipe(class_labels=[3, 7], guidance_scale=2.0, num_inference_steps=2, sampler="ddim", generator=g,
               output_type="pt")
    assert out.images.shape == (2, 1, 8, 8) and torch.isfinite(out.images).all()


def test_digits_unconditional_model_is_unconditional_records_its_levels_and_samples():
    pipe = ScoreSDEPipeline.from_pretrained("scorekit/digits-unconditional")
    assert pipe.unet.config.num_class_embeds is None and pipe.unet.config.sample_size == 8
    assert pipe.scheduler.sample_kwargs()["sampler"] == "dpmsolver++" and not pipe.scheduler.config.clip_sample
    index = json.loads((Path(shipped_model_path("scorekit/digits-unconditional")) / "model_index.json").read_text())
    assert index["_scorekit"]["likelihood"] == {"num_levels": 17, "data_range": [-17 / 16, 17 / 16]}
    out = pipe(batch_size=2, num_inference_steps=2, sampler="ddim", generator=torch.Generator().manual_seed(0),
               output_type="pt")
    assert out.images.shape == (2, 1, 8, 8) and torch.isfinite(out.images).all()


def test_photos_model_loads_by_short_name():
    pipe = ScoreSDEPipeline.from_pretrained("scorekit/photos")
    assert pipe.unet.config.in_channels == 3 and pipe.unet.config.sample_size == 16


def test_package_data_globs_cover_every_shipped_file():
    line = re.search(r'^"scorekit.models" = (\[.*\])$', (ROOT / "pyproject.toml").read_text(), re.M)
    globs = json.loads(line.group(1))  # [tool.setuptools.package-data]
    files = [str(f.relative_to(ROOT / "scorekit" / "models")) for f in (ROOT / "scorekit/models/shipped").rglob("*")
             if f.is_file()]
    assert files
    missed = [f for f in files if not any(fnmatch.fnmatch(f, g) and f.count("/") == g.count("/") for g in globs)]
    assert not missed, f"not installed with the package: {missed}"


def test_unknown_short_name_is_a_clear_error(capsys):
    with pytest.raises(ValueError, match=r"unknown shipped model 'scorekit/nope'.*scorekit/digits"):
        shipped_model_path("scorekit/nope")
    assert main(["sample", "--model", "scorekit/nope", "--out", "unused.png"]) == 2
    assert "unknown shipped model" in capsys.readouterr().err


@pytest.fixture
def shipped_copy(tmp_path, monkeypatch):
    root = tmp_path / "shipped"
    shutil.copytree(shipped_module.SHIPPED_ROOT, root)
    monkeypatch.setattr(shipped_module, "SHIPPED_ROOT", str(root))
    return root


def test_corrupted_weights_are_reported_before_loading(shipped_copy, capsys):
    weights = shipped_copy / "digits" / "unet" / "diffusion_pytorch_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="corrupted: unet/diffusion_pytorch_model.safetensors does not match"):
        ScoreSDEPipeline.from_pretrained("scorekit/digits")
    assert main(["sample", "--model", "scorekit/digits", "--out", "unused.png"]) == 2
    assert "corrupted" in capsys.readouterr().err


def test_missing_file_and_missing_listing_are_reported(shipped_copy):
    os.remove(shipped_copy / "photos" / "scheduler" / "scheduler_config.json")
    with pytest.raises(ValueError, match="scheduler/scheduler_config.json is missing"):
        shipped_model_path("scorekit/photos")
    os.remove(shipped_copy / "photos" / "checksums.json")
    with pytest.raises(ValueError, match="corrupted: cannot read"):
        shipped_model_path("scorekit/photos")


def test_demo_rejects_an_output_path_that_is_a_file(tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.write_text("x")
    assert main(["demo", "--quick", "--out", str(taken)]) == 2
    assert "is a file" in capsys.readouterr().err


def test_update_copies_a_run_keeps_the_card_and_records_checksums(shipped_copy, tmp_path, capsys):
    run = tmp_path / "run"
    ScoreSDEPipeline.from_pretrained("scorekit/photos").save_pretrained(run)
    (run / "checkpoint-10").mkdir()  # training leftovers stay behind
    (run / "checkpoint-10" / "model.safetensors").write_bytes(b"x")
    card = (shipped_copy / "photos" / "README.md").read_text()
    assert models_main(["update", "photos", str(run)]) == 0
    assert "updated" in capsys.readouterr().out
    assert (shipped_copy / "photos" / "README.md").read_text() == card
    assert not (shipped_copy / "photos" / "checkpoint-10").exists()
    shipped_model_path("scorekit/photos")  # every file verifies against the new listing
    assert ScoreSDEPipeline.from_pretrained("scorekit/photos").unet.config.in_channels == 3
    (shipped_copy / "photos" / "README.md").write_text(card + "\nedited\n")
    with pytest.raises(ValueError, match="README.md does not match"):
        shipped_model_path("scorekit/photos")
    assert models_main(["checksums", "photos"]) == 0
    shipped_model_path("scorekit/photos")


def test_update_installs_a_shipped_name_whose_folder_is_new(shipped_copy, tmp_path):
    run = tmp_path / "run"
    ScoreSDEPipeline.from_pretrained("scorekit/digits-unconditional").save_pretrained(run)
    shutil.rmtree(shipped_copy / "digits-unconditional")
    with pytest.raises(FileNotFoundError, match="missing from this install"):
        shipped_model_path("scorekit/digits-unconditional")
    assert models_main(["update", "digits-unconditional", str(run)]) == 0
    assert ScoreSDEPipeline.from_pretrained("scorekit/digits-unconditional").unet.config.sample_size == 8


def test_update_rejects_a_folder_that_is_not_a_pipeline(shipped_copy, tmp_path):
    with pytest.raises(ValueError, match="run_dir .* has no model_index.json"):
        shipped_module.update_shipped("scorekit/photos", str(tmp_path))
    shipped_model_path("scorekit/photos")  # untouched


def test_photos_model_colorizes_with_the_data_colour_spread():
    """The shipped photo model keeps the gray image and gives colours as saturated as real patches (an earlier,
    under-trained checkpoint gave 4-9x the data's chroma and clipped half the pixels)."""
    from scorekit import datasets
    from scorekit.pipelines import ScoreSDEColorizationPipeline

    pipe = ScoreSDEColorizationPipeline.from_pretrained("scorekit/photos")
    pipe.set_progress_bar_config(disable=True)
    truth = datasets.photo_patches("test", 8, seed=1)
    x = pipe(image=truth, num_inference_steps=50, sampler="pc", generator=torch.Generator().manual_seed(0),
             output_type="pt").images.float()

    def chroma(y):  # mean absolute deviation of R, G, B from their mean, per pixel
        return float((y - y.mean(1, keepdim=True)).abs().mean())

    clipped = ((x <= 0) | (x >= 1)).float().mean()
    gray_error = (x.mean(1) - truth.mean(1)).abs()
    assert gray_error[(x > 0).all(1) & (x < 1).all(1)].max() < 1e-3  # exact where no channel was clamped to [0, 1]
    assert clipped < 0.1, f"{clipped:.2f} of the channels hit 0 or 1"
    assert 0.5 < chroma(x) / chroma(truth) < 2, (chroma(x), chroma(truth))
