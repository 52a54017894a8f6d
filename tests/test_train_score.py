"""The score trainer in-process: a tiny class-conditional run end to end, every bad flag before a step, Hub push."""

from __future__ import annotations

import os

import PIL.Image
import pytest
import torch

from scorekit.training import train_score

TINY = ["--dataset", "digits", "--preset", "tiny", "--train_batch_size", "8", "--learning_rate", "1e-3",
        "--lr_warmup_steps", "1", "--no_progress", "--logger", "none"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("run"))
    result = train_score.main([*TINY, "--output_dir", out, "--num_class_embeds", "10", "--max_train_steps", "6",
                               "--use_ema", "--ema_max_decay", "0.9", "--checkpointing_steps", "2",
                               "--checkpoints_total_limit", "2", "--save_images_steps", "6", "--eval_batch_size", "10",
                               "--eval_steps", "3", "--gradient_accumulation_steps", "2"])
    return out, result


def test_output_folder_is_a_pipeline(trained):
    from scorekit import ScoreSDEClassConditionalPipeline, ScoreSDEPipeline

    out, result = trained
    assert result["steps"] == 6 and torch.isfinite(torch.tensor(result["final_loss"]))
    assert sorted(d for d in os.listdir(out) if d.startswith("checkpoint")) == ["checkpoint-4", "checkpoint-6"]
    assert not [d for d in os.listdir(out) if d.startswith(".tmp")]
    assert os.path.isfile(os.path.join(out, "samples", "step_000006.png"))
    card = open(os.path.join(out, "README.md")).read()
    assert "final training loss" in card and "--num_class_embeds" in card
    pipe = ScoreSDEClassConditionalPipeline.from_pretrained(out)
    assert pipe.conditioning == "classifier-free" and pipe.unet.config.num_class_embeds == 11
    assert pipe.scheduler.config.prediction_type == "epsilon" and list(pipe.scheduler.data_range) == [-1.0, 1.0]
    pipe.set_progress_bar_config(disable=True)
    images = pipe(class_labels=[0, 9], guidance_scale=2.0, num_inference_steps=3, sampler="ddim", output_type="np",
                  generator=torch.Generator().manual_seed(0)).images
    assert images.shape == (2, 8, 8, 1) and (images >= 0).all() and (images <= 1).all()
    plain = ScoreSDEPipeline.from_pretrained(out)
    plain.set_progress_bar_config(disable=True)
    assert plain(batch_size=2, num_inference_steps=3, sampler="ddim", output_type="np").images.shape == (2, 8, 8, 1)


def test_the_saved_pipelines_record_the_datas_levels(trained):
    """The trainer records ``_scorekit.likelihood`` in what it saves (the final folder and its checkpoints): the 17
    levels of --dataset digits with bins centred on the training values, so ``log_likelihood`` and ``scorekit
    likelihood`` default to them as they do for scorekit/digits."""
    from scorekit import ScoreSDEPipeline

    out, _ = trained
    digits = {"num_levels": 17, "data_range": [-1.0625, 1.0625]}  # (-17/16, 17/16), what scorekit/digits records
    for folder in (out, os.path.join(out, "checkpoint-6")):
        pipe = ScoreSDEPipeline.from_pretrained(folder)
        assert pipe.model_defaults == {"likelihood": digits}, folder
        assert pipe.likelihood_levels() == (17, (-1.0625, 1.0625))
    assert ScoreSDEPipeline.from_pretrained("scorekit/digits").model_defaults["likelihood"] == digits


def test_other_data_record_256_levels_over_the_data_range():
    from argparse import Namespace

    from scorekit.training.config import likelihood_defaults

    assert likelihood_defaults(Namespace(dataset="photos"), (-1.0, 1.0)) == {"num_levels": 256,
                                                                               "data_range": [-1.0, 1.0]}
    assert likelihood_defaults(Namespace(dataset=None), (0.0, 1.0)) == {"num_levels": 256, "data_range": [0.0, 1.0]}
    assert likelihood_defaults(Namespace(dataset="digits"), (0.0, 1.0)) == {"num_levels": 17,
                                                                             "data_range": [-1 / 32, 1 + 1 / 32]}


def _bad(tmp_path, case):
    out = ["--output_dir", str(tmp_path / "out")]
    folder = tmp_path / "imgs"
    folder.mkdir(exist_ok=True)
    if case == "labels_out_of_range":
        for k in range(3):
            (folder / f"c{k}").mkdir()
            PIL.Image.new("RGB", (8, 8)).save(folder / f"c{k}" / "a.png")
        return ["--train_data_dir", str(folder), "--num_class_embeds", "2", "--preset", "tiny", *out]
    if case == "labels_missing":
        PIL.Image.new("RGB", (8, 8)).save(folder / "a.png")
        return ["--train_data_dir", str(folder), "--num_class_embeds", "2", "--preset", "tiny", *out]
    if case == "empty_folder":
        return ["--train_data_dir", str(folder), *out]
    return [*TINY, *out, *{
        "sde": ["--sde", "vpp"], "prediction": ["--prediction_type", "eps"], "weighting": ["--weighting", "g3"],
        "resume": ["--resume_from_checkpoint", str(tmp_path / "nowhere")],
        "resolution": ["--resolution", "9"], "two_sources": ["--train_data_dir", str(folder)],
        "is_without_g2": ["--importance_sampling"], "hub": ["--push_to_hub"],
    }[case]]


@pytest.mark.parametrize("case, flag", [
    ("sde", "--sde"), ("prediction", "--prediction_type"), ("weighting", "--weighting"),
    ("resume", "--resume_from_checkpoint"), ("resolution", "--resolution"), ("two_sources", "--train_data_dir"),
    ("is_without_g2", "--importance_sampling"), ("hub", "--hub_model_id"), ("empty_folder", "--train_data_dir"),
    ("labels_out_of_range", "--num_class_embeds"), ("labels_missing", "--num_class_embeds"),
])
def test_bad_input_fails_before_training(tmp_path, monkeypatch, case, flag):
    def no_steps(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(train_score, "make_accelerator", no_steps)
    with pytest.raises(ValueError, match=flag):
        train_score.main(_bad(tmp_path, case))


def test_scorekit_train_cli(tmp_path, capsys):
    from scorekit.cli import main

    out = str(tmp_path / "cli")
    assert main(["train", *TINY, "--output_dir", out, "--max_train_steps", "1"]) == 0
    assert "final loss" in capsys.readouterr().out and os.path.isfile(os.path.join(out, "model_index.json"))
    assert main(["train", *TINY, "--output_dir", out, "--sde", "nope"]) == 2
    assert "--sde='nope'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train-classifier", "--help"])
    assert "--score_model" in capsys.readouterr().out


@pytest.mark.parametrize("extra", [
    ["--dataset", "photos", "--resolution", "8", "--sde", "subvp", "--prediction_type", "score", "--weighting", "g2",
     "--importance_sampling", "--random_flip", "--reduce", "sum"],
    ["--sde", "ve", "--loss", "smld"],
    ["--loss", "ddpm", "--lr_scheduler", "constant_with_warmup"],
])
def test_other_sdes_losses_and_data_load_as_pipelines(tmp_path, extra):
    from scorekit import ScoreSDEPipeline

    out = str(tmp_path / "run")
    args = [*TINY, "--output_dir", out, "--max_train_steps", "2", *extra]
    if "photos" in extra:
        args.remove("digits")
        args.remove("--dataset")
    result = train_score.main(args)
    assert torch.isfinite(torch.tensor(result["final_loss"]))
    pipe = ScoreSDEPipeline.from_pretrained(out)
    pipe.set_progress_bar_config(disable=True)
    images = pipe(batch_size=2, num_inference_steps=2, sampler="ode", method="euler", output_type="pt").images
    assert torch.isfinite(images).all() and images.shape[1] == (3 if "photos" in extra else 1)
