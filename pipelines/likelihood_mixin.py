"""PF-ODE likelihood and latents (Song et al. 2021, §4.3) as pipeline methods."""

from __future__ import annotations

import torch

from scorekit.latents import decode as pf_decode
from scorekit.latents import encode as pf_encode
from scorekit.likelihood import bits_per_dim, levels_from_data

from .outputs import ScoreSDELikelihoodOutput, ScoreSDEPipelineOutput


class LikelihoodMixin:
    """``log_likelihood``, ``encode`` and ``decode`` for a pipeline with ``sde``, ``score_fn()``, ``preprocess`` and
    ``postprocess``."""

    @torch.no_grad()
    def log_likelihood(self, images, num_probes: int = 1, probe: str = "rademacher", method: str = "dopri5",
                       rtol: float = 1e-5, atol: float = 1e-5, eps: float | None = None, dequantize: bool = True,
                       generator: torch.Generator | None = None, return_dict: bool = True):
        """Bits/dim of 8-bit images (PIL, numpy ``(B, H, W, C)`` or torch ``(B, C, H, W)`` in [0, 1] on the 1/255
        grid) through the PF-ODE with uniform dequantization; see :func:`scorekit.bits_per_dim`."""
        # levels are read in float32, before any cast to the UNet's dtype (float16 cannot hold the 1/255 grid)
        levels = levels_from_data(self.preprocess(images, dtype=torch.float32), 256, self.scheduler.data_range)
        bpd, info = bits_per_dim(self.score_fn(), self.sde, levels, num_levels=256,
                                 data_range=self.scheduler.data_range, dequantize=dequantize, num_probes=num_probes,
                                 probe=probe, method=method, rtol=rtol, atol=atol, eps=eps, generator=generator,
                                 dtype=self.unet.dtype)
        out = (bpd, info["nats"], info["stderr"], info["latent"], info["nfe"])
        return ScoreSDELikelihoodOutput(*out) if return_dict else out

    @torch.no_grad()
    def encode(self, images, method: str = "dopri5", rtol: float = 1e-5, atol: float = 1e-5,
               eps: float | None = None) -> torch.Tensor:
        """PF-ODE latents ``(B, C, H, W)`` of images (PIL / numpy / torch in [0, 1]); see :func:`scorekit.encode`."""
        z, _ = pf_encode(self.score_fn(), self.sde, self.preprocess(images), method=method, rtol=rtol, atol=atol,
                         eps=eps)
        return z

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, output_type: str = "pil", method: str = "dopri5", rtol: float = 1e-5,
               atol: float = 1e-5, eps: float | None = None, denoise: bool = False, return_dict: bool = True):
        """Images from PF-ODE latents ``(B, C, H, W)``, the inverse of :meth:`encode`; see :func:`scorekit.decode`."""
        x, info = pf_decode(self.score_fn(), self.sde, latents.to(self.device, self.unet.dtype), method=method,
                            rtol=rtol, atol=atol, eps=eps, denoise=denoise)
        images = self.postprocess(x, output_type)
        return ScoreSDEPipelineOutput(images=images, nfe=info["nfe"]) if return_dict else (images, info["nfe"])
