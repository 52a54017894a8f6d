"""diffusers' flags with diffusers' meanings: the flag list of the example we follow, the EMA warm-up as that example
builds it, --dataset_config_name, --save_images_epochs / --save_model_epochs, --logger wandb."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch
from safetensors.torch import load_file

from scorekit.training import train_score
from scorekit.training.config import build_parser

# The flags of diffusers' examples/unconditional_image_generation/train_unconditional.py (every "--name" in its
# parse_args), read from the diffusers source at tag v0.40.0, the newest tagged source readable here; the installed
# diffusers 0.42.1 ships no examples, and the file's argument list has not changed since v0.37.
DIFFUSERS_TRAIN_UNCONDITIONAL_FLAGS = {
    "--adam_beta1", "--adam_beta2", "--adam_epsilon", "--adam_weight_decay", "--cache_dir", "--center_crop",
    "--checkpointing_steps", "--checkpoints_total_limit", "--dataloader_num_workers", "--dataset_config_name",
    "--dataset_name", "--ddpm_beta_schedule", "--ddpm_num_inference_steps", "--ddpm_num_steps", "--ema_inv_gamma",
    "--ema_max_decay", "--ema_power", "--enable_xformers_memory_efficient_attention", "--eval_batch_size",
    "--gradient_accumulation_steps", "--hub_model_id", "--hub_private_repo", "--hub_token", "--learning_rate",
    "--local_rank", "--logger", "--logging_dir", "--lr_scheduler", "--lr_warmup_steps", "--mixed_precision",
    "--model_config_name_or_path", "--num_epochs", "--output_dir", "--overwrite_output_dir", "--prediction_type",
    "--preserve_input_precision", "--push_to_hub", "--random_flip", "--resolution", "--resume_from_checkpoint",
    "--save_images_epochs", "--save_model_epochs", "--train_batch_size", "--train_data_dir", "--use_ema",
}
# Flags of that example scorekit does not take, and why (anything else missing fails the test).
NOT_TAKEN = {
    "--ddpm_beta_schedule": "the VP SDE's betas are linear in t (--beta_min, --beta_max); no other schedule",
    "--enable_xformers_memory_efficient_attention": "xformers kernels are CUDA-only and not a dependency",
    "--local_rank": "accelerate launch / torchrun set the rank in the environment",
    "--preserve_input_precision": "images are read as 8-bit RGB or L, as the example does by default",
}
TINY = ["--dataset", "digits", "--preset", "tiny", "--learning_rate", "1e-3", "--lr_warmup_steps", "1",
        "--no_progress", "--logger", "none"]


def test_flags_follow_diffusers_train_unconditional():
    ours = {s for action in build_parser()._actions for s in action.option_strings}
    missing = DIFFUSERS_TRAIN_UNCONDITIONAL_FLAGS - ours - set(NOT_TAKEN)
    assert not missing, f"diffusers' train_unconditional.py flags scorekit lacks: {sorted(missing)}"
    assert not set(NOT_TAKEN) & ours, "a flag listed as not taken is taken: update NOT_TAKEN"


@pytest.mark.parametrize("warmup", [True, False])
def test_ema_is_diffusers_ema_model_built_as_train_unconditional_builds_it(tmp_path, warmup):
    from diffusers import UNet2DModel
    from diffusers.training_utils import EMAModel

    out = tmp_path / "run"
    flags = ["--use_ema", "--ema_inv_gamma", "2.0", "--ema_power", "0.5", "--ema_max_decay", "0.95"]
    train_score.main([*TINY, "--train_batch_size", "8", "--max_train_steps", "3", "--checkpointing_steps", "1",
                      "--output_dir", str(out), *flags, *([] if warmup else ["--no_ema_warmup"])])
    config = json.loads((out / "checkpoint-3" / "unet_ema" / "config.json").read_text())
    settings = (config["use_ema_warmup"], config["inv_gamma"], config["power"], config["decay"])
    assert settings == (warmup, 2.0, 0.5, 0.95)
    # the example: EMAModel(model.parameters(), decay=ema_max_decay, use_ema_warmup=True, inv_gamma, power), stepped
    # with the model's parameters after every optimizer update; replay update 3 from checkpoint-2's EMA
    ema_model = UNet2DModel.from_pretrained(out / "checkpoint-2", subfolder="unet_ema")
    ema = EMAModel(ema_model.parameters(), decay=0.95, use_ema_warmup=warmup, inv_gamma=2.0, power=0.5)
    ema.optimization_step = 2
    trained = UNet2DModel.from_pretrained(out / "checkpoint-3", subfolder="unet")
    ema.step(trained.parameters())
    want = load_file(out / "checkpoint-3" / "unet_ema" / "diffusion_pytorch_model.safetensors")
    got = dict(zip([n for n, _ in trained.named_parameters()], ema.shadow_params))
    assert all(torch.equal(got[name], want[name]) for name in got)
    decay = 1 - (1 + 2 / 2.0) ** -0.5 if warmup else (1 + 2) / (10 + 2)  # EMAModel.get_decay at update 3
    assert ema.cur_decay_value == pytest.approx(decay, rel=1e-12)


def test_dataset_config_name_picks_the_configuration(tmp_path):
    import PIL.Image

    from scorekit.training.data import dataset_from_args

    root = tmp_path / "data"
    for config, count in (("small", 3), ("large", 5)):
        (root / config).mkdir(parents=True)
        for i in range(count):
            PIL.Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(root / config / f"{i}.png")
    (root / "README.md").write_text('---\nconfigs:\n- config_name: small\n  data_files: "small/*.png"\n'
                                    '- config_name: large\n  data_files: "large/*.png"\n---\n')
    sizes = {}
    for config in ("small", "large"):
        args = build_parser().parse_args(["--dataset_name", str(root), "--dataset_config_name", config,
                                          "--cache_dir", str(tmp_path / "cache"), "--output_dir", str(tmp_path)])
        sizes[config] = len(dataset_from_args(args)[0])
    assert sizes == {"small": 3, "large": 5}
    with pytest.raises(ValueError, match="--dataset_config_name='small' configures --dataset_name"):
        train_score.main([*TINY, "--dataset_config_name", "small", "--output_dir", str(tmp_path / "x")])


def test_save_images_and_model_epochs_as_diffusers(tmp_path, monkeypatch):
    monkeypatch.setattr(train_score.SampleWriter, "export", lambda self, result: None)  # leave the epoch saves alone
    out = tmp_path / "run"
    # 1437 digits at batch 512: 2 updates per epoch, so 6 updates are epochs 0, 1, 2 (the last)
    train_score.main([*TINY, "--train_batch_size", "512", "--max_train_steps", "6", "--use_ema", "--output_dir",
                      str(out), "--save_images_epochs", "2", "--save_model_epochs", "2", "--eval_batch_size", "4",
                      "--eval_steps", "2"])
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["epoch_0000.png", "epoch_0002.png"]
    saved = load_file(out / "unet" / "diffusion_pytorch_model.safetensors")  # the epoch-2 save: the final EMA
    ema = load_file(out / "checkpoint-6" / "unet_ema" / "diffusion_pytorch_model.safetensors")
    assert saved.keys() == ema.keys() and all(torch.equal(saved[k], ema[k]) for k in saved)
    assert not (out / "README.md").exists()


def test_logger_wandb_needs_wandb(tmp_path, monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else find_spec(name, *a))
    with pytest.raises(ValueError, match="--logger wandb needs the wandb package"):
        train_score.main([*TINY, "--logger", "wandb", "--output_dir", str(tmp_path / "run")])
    assert not (tmp_path / "run").exists()
