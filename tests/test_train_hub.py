"""The Hub before and after training, against the local Hub stand-in (tests/local_hub.py): the token and the repo are
checked and created before the first step; a refused token or an unreachable endpoint is one line naming the Hub,
before any training; a failed push after training says where the pipeline is and how to push it later (and that
advice works); ``scorekit.hub.push_to_hub`` and the pipelines' ``push_to_hub`` report failures the same way."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hub_layouts import tiny_ddpm_unet
from local_hub import LocalHub, point_hub_at, unreachable_endpoint

from scorekit.hub import HubError, push_to_hub
from scorekit.pipelines import ScoreSDEPipeline
from scorekit.schedulers import ScoreSDEPCScheduler
from scorekit.training import train_score

TOKEN = "hf_local_test_token"
SCRIPT = str(Path(__file__).resolve().parents[1] / "training" / "train_score.py")
TINY = ["--dataset", "digits", "--preset", "tiny", "--train_batch_size", "8", "--learning_rate", "1e-3",
        "--lr_warmup_steps", "1", "--no_progress", "--logger", "none", "--max_train_steps", "2"]
HUB_LINE = re.compile(r"the Hugging Face Hub at http://127\.0\.0\.1:\d+")


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """The local Hub accepting only TOKEN, with huggingface_hub pointed at it."""
    with LocalHub(tokens={TOKEN}) as server:
        point_hub_at(monkeypatch, server.endpoint, str(tmp_path / "hub-cache"))
        yield server


@pytest.fixture
def no_training(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(train_score, "setup_run", refuse)


def _one_line(message: str) -> str:
    assert "\n" not in message.strip(), message
    assert HUB_LINE.search(message), message
    return message


def test_push_creates_the_private_repo_before_the_first_step_and_uploads_the_run(hub, tmp_path, monkeypatch):
    created_before_training = []
    setup_run = train_score.setup_run

    def watch(*args, **kwargs):
        created_before_training.append(dict(hub.created))
        return setup_run(*args, **kwargs)

    monkeypatch.setattr(train_score, "setup_run", watch)
    out = str(tmp_path / "run")
    train_score.main([*TINY, "--output_dir", out, "--push_to_hub", "--hub_model_id", "alice/digits", "--hub_token",
                      TOKEN, "--hub_private_repo"])
    assert created_before_training == [{"alice/digits": created_before_training[0]["alice/digits"]}]
    assert created_before_training[0]["alice/digits"]["visibility"] == "private"
    files = hub.snapshot("alice/digits")[1]
    assert {"model_index.json", "unet/diffusion_pytorch_model.safetensors", "README.md"} <= set(files)
    assert not [f for f in files if f.startswith(("checkpoint-", "logs/"))]
    card = files["README.md"].decode()
    assert TOKEN not in card and "--hub_private_repo" in card and "--hub_token" not in card


def test_the_classifier_trainer_pushes_too(hub, tmp_path):
    from scorekit.training import train_classifier

    flags = [*TINY[:2], *TINY[4:], "--block_out_channels", "8,16", "--eval_samples", "20"]  # no --preset
    train_classifier.main([*flags, "--output_dir", str(tmp_path / "clf"), "--push_to_hub", "--hub_model_id",
                           "alice/clf", "--hub_token", TOKEN])
    files = hub.snapshot("alice/clf")[1]
    assert {"classifier/config.json", "classifier/scorekit_sde.json", "README.md"} <= set(files)
    assert "conditioning: classifier guidance" in files["README.md"].decode()


@pytest.mark.parametrize("how", ["library", "cli"])
def test_refused_token_is_one_line_before_training(hub, tmp_path, no_training, capsys, how):
    out = tmp_path / "run"
    flags = [*TINY, "--output_dir", str(out), "--push_to_hub", "--hub_model_id", "alice/x", "--hub_token", "wrong"]
    if how == "library":
        with pytest.raises(HubError) as err:
            train_score.main(flags)
        message = str(err.value)
    else:
        from scorekit.cli import main

        assert main(["train", *flags]) == 2
        message = capsys.readouterr().err
    assert "refused the token (HTTP 401)" in _one_line(message)
    assert "alice/x" not in hub.created and not list(out.glob("checkpoint-*"))


@pytest.mark.slow  # a fresh interpreter imports torch, diffusers and accelerate (~10 s on a quiet core)
def test_unreachable_hub_stops_the_script_with_one_line(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_ENDPOINT": unreachable_endpoint(), "HF_HUB_OFFLINE": "0"}
    proc = subprocess.run([sys.executable, SCRIPT, *TINY, "--output_dir", str(out), "--push_to_hub",
                           "--hub_model_id", "alice/x", "--hub_token", TOKEN], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith("train_score.py: error: cannot reach"), proc.stderr[-2000:]
    _one_line(errors[0])
    assert not list(out.glob("checkpoint-*"))


def test_failed_push_after_training_says_where_the_pipeline_is_and_how_to_push(hub, tmp_path):
    hub.refuse_commits = True
    out = str(tmp_path / "run")
    with pytest.raises(HubError) as err:
        train_score.main([*TINY, "--output_dir", out, "--push_to_hub", "--hub_model_id", "alice/later", "--hub_token",
                          TOKEN])
    message = _one_line(str(err.value))
    assert f"the pipeline is saved at {out}" in message and "HTTP 403" in message
    assert ScoreSDEPipeline.from_pretrained(out).unet is not None
    later = re.search(r"Push it later with: (.*)$", message).group(1)
    hub.refuse_commits = False
    argv = shlex.split(later)
    assert argv[:2] == ["hf", "upload"]
    code = "import sys; from huggingface_hub.cli.hf import main; sys.argv = ['hf'] + sys.argv[1:]; main()"
    proc = subprocess.run([sys.executable, "-c", code, *argv[1:]], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HF_TOKEN": TOKEN})
    assert proc.returncode == 0, proc.stderr[-2000:]
    files = hub.snapshot("alice/later")[1]
    assert "unet/diffusion_pytorch_model.safetensors" in files and not [f for f in files if "checkpoint-" in f]


def _pipe():
    torch.manual_seed(0)
    return ScoreSDEPipeline(unet=tiny_ddpm_unet().eval(), scheduler=ScoreSDEPCScheduler())


@pytest.mark.parametrize("push", ["scorekit.hub.push_to_hub", "pipe.push_to_hub"])
def test_library_and_pipeline_pushes_name_the_hub(push, monkeypatch, tmp_path):
    def call(token):
        pipe = _pipe()
        if push == "pipe.push_to_hub":
            return pipe.push_to_hub("alice/p", token=token)
        return push_to_hub(pipe, "alice/p", token=token)

    point_hub_at(monkeypatch, unreachable_endpoint(), str(tmp_path / "cache"))
    with pytest.raises(HubError, match="cannot reach the Hugging Face Hub") as err:
        call(TOKEN)
    _one_line(str(err.value))
    with LocalHub(tokens={TOKEN}) as server:
        point_hub_at(monkeypatch, server.endpoint, str(tmp_path / "cache"))
        with pytest.raises(HubError, match=r"refused the token \(HTTP 401\)") as err:
            call("wrong")
        _one_line(str(err.value))
        call(TOKEN)
        assert "unet/diffusion_pytorch_model.safetensors" in server.snapshot("alice/p")[1]
