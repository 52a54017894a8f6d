"""PF-ODE likelihood and latents (Song et al. 2021, §4.3) as pipeline methods."""

from __future__ import annotations

import torch

from scorekit.latents import decode as pf_decode
from scorekit.latents import encode as pf_encode
from scorekit.likelihood import bits_per_dim, levels_from_data
from scorekit.utils import check_count

from .outputs import ScoreSDELikelihoodOutput, ScoreSDEPipelineOutput


def level_tolerance(num_levels: int) -> float:
    """How far (in levels) an image may sit off the ``num_levels`` grid: 1e-2, or half an 8-bit step for data with
    fewer levels than 256 (an 8-bit PNG of 17-level digits stores level ``k`` as ``round(255 k / 16)``)."""
    return 1e-2 if num_levels >= 256 else 0.5 * (num_levels - 1) / 255 + 1e-3


def solve_progress(score_fn, sde, bar):
    """``score_fn`` that moves ``bar`` (total 100) to the percentage of ``[eps, T]`` the solve has reached and shows
    the NFE so far."""
    nfe = 0

    def fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        nonlocal nfe
        nfe += 1
        done = min(100, max(0, int(100 * float(t.max()) / sde.T)))
        bar.update(max(0, done - bar.n))
        bar.set_postfix(nfe=nfe, refresh=False)
        return score_fn(x, t)

    return fn


class LikelihoodMixin:
    """``log_likelihood``, ``encode`` and ``decode`` for a pipeline with ``sde``, ``score_fn()``, ``preprocess`` and
    ``postprocess``."""

    @torch.no_grad()
    def log_likelihood(self, images, num_probes: int = 1, probe: str = "rademacher", method: str = "dopri5",
                       rtol: float = 1e-5, atol: float = 1e-5, eps: float | None = None, dequantize: bool = True,
                       generator: torch.Generator | None = None, return_dict: bool = True,
                       num_levels: int | None = None, data_range: tuple[float, float] | None = None):
        """Bits/dim of discrete images through the PF-ODE with uniform dequantization; see
        :func:`scorekit.bits_per_dim`.

        Args:
            images: PIL images (any mode, read by its value range), numpy ``(B, H, W, C)`` or torch ``(B, C, H, W)``
                in [0, 1]; pixel ``v`` is level ``k = v (L - 1)`` (e.g. ``k / 255`` for 8-bit images, ``k / 16`` for
                the 17 levels of sklearn digits; 8-bit files of ``L``-level data are read within half an 8-bit step).
            num_levels: ``L``, the levels of the data. ``None``: what the model records
                (:attr:`model_defaults` ``["likelihood"]``; 17 for ``scorekit/digits``), else 256.
            data_range: ``(lo, hi)`` that the ``L`` dequantization bins tile in the model's space. ``None``: what the
                model records (``(-17/16, 17/16)`` for ``scorekit/digits``, bins centred on its training values),
                else the scheduler's ``data_range``.
            num_probes, probe, method, rtol, atol, eps, dequantize, generator: as in :func:`scorekit.bits_per_dim`.
            return_dict: return a :class:`ScoreSDELikelihoodOutput` rather than a tuple.

        The solve reports its progress (time reached, NFE) through ``self.progress_bar``.
        """
        num_levels, data_range = self.likelihood_levels(num_levels, data_range)
        unit = self.unit_images(images, "images")  # float32 in [0, 1], before any cast to the UNet's dtype
        levels = levels_from_data(unit, num_levels, (0.0, 1.0), atol=level_tolerance(num_levels))
        with self.progress_bar(total=100) as bar:
            bar.set_description("PF-ODE likelihood (% of [eps, T])")
            bpd, info = bits_per_dim(solve_progress(self.score_fn(), self.sde, bar), self.sde, levels,
                                     num_levels=num_levels, data_range=data_range, dequantize=dequantize,
                                     num_probes=num_probes, probe=probe, method=method, rtol=rtol, atol=atol, eps=eps,
                                     generator=generator, dtype=self.unet.dtype)
            bar.update(100 - bar.n)  # the solve ends at T
        out = (bpd, info["nats"], info["stderr"], info["latent"], info["nfe"])
        return ScoreSDELikelihoodOutput(*out) if return_dict else out

    def likelihood_levels(self, num_levels: int | None = None,
                          data_range: tuple[float, float] | None = None) -> tuple[int, tuple[float, float]]:
        """``(num_levels, data_range)`` of :meth:`log_likelihood`: those given, else what the model records, else 256
        levels over the scheduler's ``data_range``."""
        recorded = self.model_defaults.get("likelihood", {})
        num_levels = recorded.get("num_levels", 256) if num_levels is None else num_levels
        check_count("num_levels", num_levels, minimum=2)
        if data_range is None:
            data_range = recorded.get("data_range", self.scheduler.data_range)
        return num_levels, tuple(float(v) for v in data_range)

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
