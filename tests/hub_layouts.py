"""Local folders laid out like the Hub repos scorekit must load, with the real config keys and tiny sizes."""

from __future__ import annotations

import json
import os

from diffusers import DDPMScheduler, ScoreSdeVeScheduler, UNet2DModel


def tiny_ddpm_unet(sample_size: int = 8, channels: int = 3) -> UNet2DModel:
    """google/ddpm-cifar10-32's UNet2DModel config (positional embedding, DownBlock2D/AttnDownBlock2D,
    flip_sin_to_cos false, freq_shift 1, norm_eps 1e-6), shrunk."""
    return UNet2DModel(
        sample_size=sample_size, in_channels=channels, out_channels=channels, block_out_channels=(16, 32),
        layers_per_block=1, down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"), norm_num_groups=8, flip_sin_to_cos=False, freq_shift=1,
        norm_eps=1e-6, time_embedding_type="positional",
    )


def tiny_ncsnpp_unet(sample_size: int = 8, channels: int = 3) -> UNet2DModel:
    """google/ncsnpp-*'s UNet2DModel config (Fourier embedding, Skip/AttnSkip blocks, center_input_sample,
    norm_num_groups null, mid_block_scale_factor sqrt(2)), shrunk."""
    return UNet2DModel(
        sample_size=sample_size, in_channels=channels, out_channels=channels, block_out_channels=(32, 32),
        layers_per_block=1, time_embedding_type="fourier", down_block_types=("SkipDownBlock2D", "AttnSkipDownBlock2D"),
        up_block_types=("AttnSkipUpBlock2D", "SkipUpBlock2D"), center_input_sample=True, norm_num_groups=None,
        norm_eps=1e-6, mid_block_scale_factor=2**0.5, flip_sin_to_cos=True, act_fn="silu",
    )


def _model_index(path, pipeline, scheduler):
    index = {"_class_name": pipeline, "_diffusers_version": "0.12.0", "unet": ["diffusers", "UNet2DModel"],
             "scheduler": ["diffusers", scheduler]}
    with open(os.path.join(path, "model_index.json"), "w") as f:
        json.dump(index, f)


def make_ddpm_cifar10_folder(path: str, flat: bool = False) -> str:
    """A folder like google/ddpm-cifar10-32: UNet2DModel + DDPMScheduler (linear 1e-4..0.02, fixed_large)."""
    os.makedirs(path, exist_ok=True)
    unet_dir, sched_dir = (path, path) if flat else (os.path.join(path, "unet"), os.path.join(path, "scheduler"))
    tiny_ddpm_unet().save_pretrained(unet_dir)
    DDPMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
                  variance_type="fixed_large", clip_sample=True).save_pretrained(sched_dir)
    _model_index(path, "DDPMPipeline", "DDPMScheduler")
    return path


def make_ncsnpp_celebahq_folder(path: str, flat: bool = False) -> str:
    """A folder like google/ncsnpp-celebahq-256: Fourier UNet2DModel + ScoreSdeVeScheduler (sigma_max 380); the Hub
    repo is flat (``flat=True``: config.json and scheduler_config.json at the root)."""
    os.makedirs(path, exist_ok=True)
    unet_dir, sched_dir = (path, path) if flat else (os.path.join(path, "unet"), os.path.join(path, "scheduler"))
    tiny_ncsnpp_unet().save_pretrained(unet_dir)
    ScoreSdeVeScheduler(num_train_timesteps=2000, snr=0.075, sigma_min=0.01, sigma_max=380.0,
                        sampling_eps=1e-5).save_pretrained(sched_dir)
    _model_index(path, "ScoreSdeVePipeline", "ScoreSdeVeScheduler")
    return path
