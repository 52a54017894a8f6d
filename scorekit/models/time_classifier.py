"""A small noise-conditional classifier ``(x_t, timestep) -> logits`` for classifier guidance (Song et al. 2021, §5).

Images ``(B, C, H, W)`` go through conv + GroupNorm + SiLU residual blocks with a time embedding added in each block,
strided-conv downsampling, global average pooling and a linear head. Flat vectors ``(B, D)`` (``sample_size=None``)
go through the same residual blocks with linear layers instead of convolutions.

The timestep the model takes follows the score networks (scorekit.score) and the paper's JAX classifier:
``time_embedding_type="fourier"`` takes the noise level ``sigma = std(t)`` and embeds ``log(sigma)`` (like the
NCSN++ UNets); ``"positional"`` takes the DDPM time label ``t * (N - 1)`` (sinusoidal embedding, like DDPM UNets).
:meth:`TimeClassifierModel.time_input` converts an SDE time; :func:`classifier_log_prob_fn` does it for guidance.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.embeddings import GaussianFourierProjection, TimestepEmbedding, Timesteps
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from torch import nn

from ..conditioning.guidance import check_takes_x_and_t
from ..sde import SDE
from ..utils import append_dims, check_choice

TIME_EMBEDDINGS = ("fourier", "positional")


@dataclass
class TimeClassifierOutput(BaseOutput):
    """Output of :class:`TimeClassifierModel`.

    Args:
        logits: ``(B, num_classes)`` unnormalized class log-probabilities ``log p_t(y | x_t) + const``.
    """

    logits: torch.Tensor


class _ResBlock(nn.Module):
    """GroupNorm -> SiLU -> layer, + time embedding, GroupNorm -> SiLU -> layer, plus a skip (DDPM's ResNet block)."""

    def __init__(self, c_in: int, c_out: int, temb_dim: int, groups: int, eps: float, spatial: bool):
        super().__init__()
        self.norm1, self.layer1 = nn.GroupNorm(groups, c_in, eps), _layer(c_in, c_out, spatial, 3)
        self.temb_proj = nn.Linear(temb_dim, c_out)
        self.norm2, self.layer2 = nn.GroupNorm(groups, c_out, eps), _layer(c_out, c_out, spatial, 3)
        self.skip = nn.Identity() if c_in == c_out else _layer(c_in, c_out, spatial, 1)

    def forward(self, h: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        r = self.layer1(F.silu(self.norm1(h)))
        r = r + append_dims(self.temb_proj(F.silu(temb)), r.ndim)
        return self.skip(h) + self.layer2(F.silu(self.norm2(r)))


def _layer(c_in: int, c_out: int, spatial: bool, kernel: int) -> nn.Module:
    return nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2) if spatial else nn.Linear(c_in, c_out)


class TimeClassifierModel(ModelMixin, ConfigMixin):
    """Noise-conditional classifier ``p_t(y | x_t)``: ``forward(sample, timestep) -> logits``.

    Args:
        in_channels: image channels, or the vector dimension ``D`` when ``sample_size`` is None.
        sample_size: training image size (int or ``(H, W)``; the model pools globally, so other sizes run), or None
            for flat vectors ``(B, D)``.
        num_classes: number of classes ``K``.
        block_out_channels: widths of the stages; images are downsampled by 2 between stages.
        layers_per_block: residual blocks per stage.
        time_embedding_type: ``"fourier"`` (timestep = sigma > 0, embeds ``log sigma``) or ``"positional"``
            (timestep = ``t * (N - 1)``).
        fourier_scale: std of the Gaussian Fourier frequencies (NCSN++ uses 16).
        flip_sin_to_cos, freq_shift: options of the sinusoidal embedding (as in ``UNet2DModel``).
        norm_num_groups: GroupNorm groups; must divide every width.
        norm_eps: GroupNorm epsilon.
    """

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        sample_size: int | tuple[int, int] | None = 32,
        num_classes: int = 10,
        block_out_channels: tuple[int, ...] = (32, 64, 64),
        layers_per_block: int = 1,
        time_embedding_type: str = "fourier",
        fourier_scale: float = 16.0,
        flip_sin_to_cos: bool = True,
        freq_shift: int = 0,
        norm_num_groups: int = 8,
        norm_eps: float = 1e-6,
    ):
        super().__init__()
        check_choice("time_embedding_type", time_embedding_type, TIME_EMBEDDINGS)
        _check_widths(block_out_channels, norm_num_groups, num_classes)
        spatial, c0 = sample_size is not None, block_out_channels[0]
        temb_dim = 4 * c0
        if time_embedding_type == "fourier":
            self.time_proj = GaussianFourierProjection(c0, scale=fourier_scale, flip_sin_to_cos=flip_sin_to_cos)
            proj_dim = 2 * c0
        else:
            self.time_proj, proj_dim = Timesteps(c0, flip_sin_to_cos, freq_shift), c0
        self.time_embedding = TimestepEmbedding(proj_dim, temb_dim)
        self.conv_in = _layer(in_channels, c0, spatial, 3)
        self.resnets, self.downsamplers = nn.ModuleList(), nn.ModuleList()
        c_prev = c0
        for i, c_out in enumerate(block_out_channels):
            stage = [_ResBlock(c_prev if j == 0 else c_out, c_out, temb_dim, norm_num_groups, norm_eps, spatial)
                     for j in range(layers_per_block)]
            self.resnets.append(nn.ModuleList(stage))
            last = i == len(block_out_channels) - 1
            self.downsamplers.append(nn.Identity() if last or not spatial else nn.Conv2d(c_out, c_out, 3, 2, 1))
            c_prev = c_out
        self.norm_out = nn.GroupNorm(norm_num_groups, c_prev, norm_eps)
        self.head = nn.Linear(c_prev, num_classes)

    def time_input(self, sde: SDE, t: torch.Tensor) -> torch.Tensor:
        """The timestep this model takes at SDE time ``t`` ``(B,)``: ``sigma = std(t)`` (fourier) or ``t (N - 1)``."""
        if self.config.time_embedding_type == "fourier":
            return sde.marginal_coef(t)[1]
        return t * (sde.N - 1)

    def forward(
        self, sample: torch.Tensor, timestep: torch.Tensor | float | None = None, return_dict: bool = True
    ) -> TimeClassifierOutput | tuple[torch.Tensor]:
        """Class logits of noisy samples.

        Args:
            sample: ``(B, in_channels, H, W)``, or ``(B, in_channels)`` when ``sample_size`` is None.
            timestep: ``(B,)`` float tensor (or a number): sigma for ``"fourier"``, ``t * (N - 1)`` for
                ``"positional"`` (see :meth:`time_input`). Required.
            return_dict: return a :class:`TimeClassifierOutput` instead of a tuple.

        Returns:
            ``TimeClassifierOutput(logits)`` with logits ``(B, num_classes)``, or ``(logits,)``.
        """
        timestep = self._check_inputs(sample, timestep)
        temb = self.time_embedding(self.time_proj(timestep).to(sample.dtype))
        h = self.conv_in(sample)
        for stage, down in zip(self.resnets, self.downsamplers):
            for block in stage:
                h = block(h, temb)
            h = down(h)
        h = F.silu(self.norm_out(h))
        logits = self.head(h.mean(dim=(2, 3)) if h.ndim == 4 else h)  # global average pooling for images
        return TimeClassifierOutput(logits=logits) if return_dict else (logits,)

    def _check_inputs(self, sample: torch.Tensor, timestep) -> torch.Tensor:
        cfg = self.config
        if timestep is None:
            raise ValueError("TimeClassifierModel is noise-conditional: forward(sample, timestep) needs timestep, a "
                             "(B,) float tensor (sigma for time_embedding_type='fourier', t * (N - 1) for "
                             "'positional'); classifier_log_prob_fn(model, sde) converts SDE times")
        want = (cfg.in_channels,) if cfg.sample_size is None else (cfg.in_channels, "H", "W")
        if sample.ndim != len(want) + 1 or sample.shape[1] != cfg.in_channels:
            raise ValueError(f"sample must have shape (B, {', '.join(map(str, want))}), got {tuple(sample.shape)}")
        timestep = torch.as_tensor(timestep, dtype=sample.dtype, device=sample.device)
        timestep = timestep.expand(sample.shape[0]) if timestep.ndim == 0 else timestep
        if timestep.shape != (sample.shape[0],):
            raise ValueError(f"timestep must have shape ({sample.shape[0]},) or be a scalar, "
                             f"got {tuple(timestep.shape)}")
        if cfg.time_embedding_type == "fourier" and not (timestep > 0).all():
            raise ValueError("timestep must be the noise level sigma > 0 for time_embedding_type='fourier'")
        return timestep


def _check_widths(block_out_channels, groups: int, num_classes: int) -> None:
    if len(block_out_channels) == 0 or any(c % groups for c in block_out_channels):
        raise ValueError(f"block_out_channels must be non-empty and divisible by norm_num_groups={groups}, "
                         f"got {tuple(block_out_channels)}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")


def classifier_log_prob_fn(classifier: TimeClassifierModel, sde: SDE):
    """``log_prob_fn(x, t) -> (B, K)`` log-probabilities ``log p_t(y | x)`` from a classifier, for guidance.

    Feeds the classifier its timestep (:meth:`TimeClassifierModel.time_input`) and ``x`` in the classifier's dtype;
    gradients flow back to ``x`` in its own dtype.

    Args:
        classifier: a :class:`TimeClassifierModel` (or any module with ``time_input(sde, t)`` and
            ``forward(x, timestep)`` returning logits or an output with ``.logits``).
        sde: the SDE whose time ``t`` the sampler passes.
    """
    check_takes_x_and_t("classifier", classifier)
    if not callable(getattr(classifier, "time_input", None)):
        raise TypeError(f"classifier must be a TimeClassifierModel (or define time_input(sde, t)), got "
                        f"{type(classifier).__name__}; for other classifiers write log_prob_fn(x, t) directly")

    def log_prob_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        x_in = x.to(getattr(classifier, "dtype", x.dtype))
        out = classifier(x_in, classifier.time_input(sde, t).to(x_in.dtype))
        return torch.log_softmax(getattr(out, "logits", out), dim=-1)

    return log_prob_fn
