"""Parity with diffusers' own solvers on a tiny random VP epsilon UNet and the same initial noise.

diffusers runs a DDPM model on its discrete ``alphas_cumprod``; here the same kernel is a scorekit SDE
(:class:`DiscreteVPSDE`: ``(alpha, std)`` of the DDPM betas, log-sigma interpolated between the integer training
steps, the network fed ``t * (N - 1)``), so both libraries solve the same ODE on the same integer timesteps.

Both run in float64 (network, noise, solver state). In float32 the two libraries' different summation orders and
the network's CPU kernels (Intel and AMD differ in the last bits) leave ~1e-5 relative differences; in float64 those
are ~1e-14, and what remains is diffusers' own schedule: its ``alphas_cumprod`` / sigma tables are float32 (about
6e-8 relative error per entry), which the solvers' step coefficients carry into the samples at ~1e-6 relative over
these few steps (measured: 5e-7). ``rtol = atol = 1e-5`` bounds that with a factor 10 and is the same on any CPU; a
wrong coefficient or order moves the samples by 1e-2 or more.
"""

from __future__ import annotations

import pytest
import torch
from diffusers import DDPMScheduler, DPMSolverMultistepScheduler, HeunDiscreteScheduler, UNet2DModel

import scorekit
from scorekit.sde import SDE


class DiscreteVPSDE(SDE):
    """The VP kernel of a DDPM schedule: ``sigma(k) = sqrt((1 - abar_k) / abar_k)`` at ``k = t (N - 1)``."""

    def __init__(self, alphas_cumprod: torch.Tensor):
        n = len(alphas_cumprod)
        super().__init__(N=n, T=1.0, sampling_eps=1.0 / (n - 1))
        ac = alphas_cumprod.double()
        self.log_sigmas = 0.5 * torch.log((1 - ac) / ac)

    def marginal_coef(self, t):
        k = (t.double() * (self.N - 1)).clamp(0, self.N - 1)
        lo = k.floor().clamp(max=self.N - 2).long()
        w = k - lo
        sigma = torch.exp((1 - w) * self.log_sigmas[lo] + w * self.log_sigmas[lo + 1])
        alpha = torch.rsqrt(1 + sigma**2)
        return alpha.to(t.dtype), (sigma * alpha).to(t.dtype)


@pytest.fixture(scope="module")
def unet():
    torch.manual_seed(0)
    return UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(16, 32), layers_per_block=1,
                       norm_num_groups=8, down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D")).eval().double()


@pytest.fixture(scope="module")
def sde():
    return DiscreteVPSDE(DDPMScheduler(num_train_timesteps=1000).alphas_cumprod)


def _ours(unet, sde, latents, ks, **kwargs):
    ts = [k / (sde.N - 1) for k in ks]
    score = scorekit.model_score_fn(unet, sde, "epsilon")
    x, info = scorekit.sample(score, sde, tuple(latents.shape), x_T=latents, timesteps=ts, eps=ts[-1],
                              dtype=torch.float64, **kwargs)
    return x, info


@pytest.mark.parametrize("order", [2, 3])
def test_dpmsolver_pp_matches_diffusers(unet, sde, order):
    steps = 8  # < 15: diffusers lowers the order at its final steps, so this checks that rule too
    ref = DPMSolverMultistepScheduler(num_train_timesteps=1000, algorithm_type="dpmsolver++", solver_order=order)
    ref.set_timesteps(steps)
    latents = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = latents.clone()
    with torch.no_grad():
        for k in ref.timesteps:
            x = ref.step(unet(x, k).sample, k, x).prev_sample
    ks = ref.timesteps.tolist()  # the final step (to sigma = 0) is scorekit's denoising
    ours, info = _ours(unet, sde, latents, ks, sampler="dpmsolver++", order=order)
    assert info["nfe"] == steps
    torch.testing.assert_close(ours, x, rtol=1e-5, atol=1e-5)


def test_edm_heun_matches_diffusers_heun(unet, sde):
    ks = [999, 700, 400, 150, 40]
    ref = HeunDiscreteScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02)  # DDPM, not its SD default
    ref.set_timesteps(timesteps=ks)
    latents = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x = latents * ref.init_noise_sigma
    with torch.no_grad():
        for k in ref.timesteps:
            x = ref.step(unet(ref.scale_model_input(x, k), k).sample, k, x).prev_sample
    # diffusers' state is x / alpha (sigma-space), scorekit's is x: start from alpha(T) times diffusers' noise
    alpha_T = float(sde.marginal_coef(torch.tensor([1.0]))[0])
    ours, info = _ours(unet, sde, latents * ref.init_noise_sigma * alpha_T, ks, sampler="edm-heun")
    assert info["nfe"] == len(ref.timesteps) == 2 * len(ks) - 1
    torch.testing.assert_close(ours, x, rtol=1e-5, atol=1e-5)
