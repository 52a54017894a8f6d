"""The time-classifier trainer: its output guides the score model's pipeline; a mismatched classifier is refused."""

from __future__ import annotations

import contextlib
import io
import json
import os

import pytest
import torch

from scorekit.training import train_classifier, train_score

COMMON = ["--dataset", "digits", "--train_batch_size", "8", "--learning_rate", "1e-3", "--lr_warmup_steps", "1",
          "--no_progress", "--logger", "none", "--max_train_steps", "3"]


@pytest.fixture(scope="module")
def guided(tmp_path_factory):
    root = tmp_path_factory.mktemp("clf")
    score_dir, out = str(root / "score"), str(root / "guided")
    train_score.main([*COMMON, "--preset", "tiny", "--output_dir", score_dir])
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        result = train_classifier.main([*COMMON, "--score_model", score_dir, "--output_dir", out,
                                        "--block_out_channels", "8,16", "--eval_samples", "40"])
    return score_dir, out, dict(result, printed=printed.getvalue())


def test_classifier_output_guides_the_pipeline(guided):
    from scorekit import ScoreSDEClassConditionalPipeline
    from scorekit.models import TimeClassifierModel

    _, out, result = guided
    assert set(result["accuracy"]) == {f"t in [{a}, {b})" for a, b in train_classifier.T_BANDS}
    assert all(0 <= v <= 1 for v in result["accuracy"].values())
    pipe = ScoreSDEClassConditionalPipeline.from_pretrained(out)
    assert isinstance(pipe.classifier, TimeClassifierModel) and pipe.conditioning == "classifier"
    assert pipe.classifier.config.time_embedding_type == "positional"  # epsilon score model: fed t * (N - 1)
    pipe.set_progress_bar_config(disable=True)
    images = pipe(class_labels=[3, 7], guidance_scale=2.0, num_inference_steps=2, sampler="ddim", output_type="pt",
                  generator=torch.Generator().manual_seed(0)).images
    assert images.shape == (2, 1, 8, 8) and torch.isfinite(images).all()
    card = open(os.path.join(out, "README.md")).read()
    assert "conditioning: classifier guidance" in card and "guidance_scale=6.0" in card
    assert "accelerate launch training/train_classifier.py" in card and "| accuracy, t in [0.0, 0.1) |" in card
    record = json.load(open(os.path.join(out, "classifier", train_classifier.SDE_RECORD)))
    assert record["sde"]["type"] == "vp" and record["data_range"] == [-1.0, 1.0]


def test_classifier_trainer_ends_with_the_summary_line(guided):
    """Issue 16 item 5: the classifier trainer, like the score trainer, ends with one summary line naming the folder
    (scripts, ``scorekit train-classifier`` and ``main()`` share it)."""
    _, out, result = guided
    last = result["printed"].strip().splitlines()[-1]
    assert last.startswith("trained 3 steps, final loss ") and last.endswith(f"pipeline in {out}")


def test_classifier_for_another_sde_is_refused(guided, tmp_path):
    score_dir, out, _ = guided
    ve_dir = str(tmp_path / "ve")
    train_score.main([*COMMON, "--preset", "tiny", "--sde", "ve", "--output_dir", ve_dir, "--max_train_steps", "1"])
    with pytest.raises(ValueError, match="--init_classifier.*trained for"):
        train_classifier.main([*COMMON, "--score_model", ve_dir, "--output_dir", str(tmp_path / "x"),
                               "--init_classifier", os.path.join(out, "classifier")])


def test_classifier_needs_labels_and_a_score_model_folder(tmp_path):
    with pytest.raises(ValueError, match="--score_model"):
        train_classifier.main([*COMMON, "--score_model", str(tmp_path / "nowhere"), "--output_dir", str(tmp_path)])
    with pytest.raises(ValueError, match="labelled data"):
        train_classifier.main([*COMMON[2:], "--dataset", "photos", "--output_dir", str(tmp_path)])


def test_random_flip_is_refused_by_the_classifier_trainer(tmp_path):
    """The classifier's loss draws no augmentation: the flag is refused by name, not silently dropped."""
    with pytest.raises(ValueError, match="--random_flip is for scorekit train"):
        train_classifier.main([*COMMON, "--random_flip", "--output_dir", str(tmp_path)])
