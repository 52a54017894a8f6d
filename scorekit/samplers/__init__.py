"""scorekit's samplers: one module per family, each with its kernels, its loop and its options; one registry.

=====================  ====================================================================================
module                 what it holds
=====================  ====================================================================================
``registry``           the one table of samplers (name -> spec); torch-free
``options``            each sampler's settings as a validating dataclass; torch-free
``base``               the run context a loop gets (counted score, finiteness guard, hooks, progress, callback)
``grids``              every time grid (uniform, half-log-SNR, Karras, user, ALD levels) and the start state
``kernels``            formulas several families share (Tweedie's x0, the reverse / PF-ODE drift)
``pc``                 predictors, correctors, the PC loop
``ald``                NCSN annealed Langevin dynamics
``ode``                PF-ODE: Euler, Heun, adaptive (torchdiffeq, scipy)
``ddim``               DDIM
``dpm_solver``         DPM-Solver++ multistep (1, 2M, 3M), singlestep (1, 2S, 3S) and SDE (1, 2M)
``edm``                EDM's Heun with churn
``adaptive_ei``        adaptive DPM-Solver-12 / -23
``ddrm``               DDRM for linear inverse problems (needs ``condition=scorekit.conditioning.DDRM(...)``)
``smc``                particle machinery: log-weights, ESS, systematic resampling, the final draw
``tds``                twisted diffusion sampler (needs ``condition=scorekit.conditioning.TDS(...)``)
``mcgdiff``            MCGdiff, SMC in the operator's SVD (needs ``condition=scorekit.conditioning.MCGdiff(...)``)
=====================  ====================================================================================

Importing this package (or :mod:`.registry`) does not import torch; the torch-side names below load on first use.
"""

from __future__ import annotations

import importlib

from .options import TIME_GRIDS, SamplerOptions
from .registry import REGISTRY, SamplerSpec, get_spec, load_loop, register, registered, sampler_names

_LAZY = {
    "Grid": "grids", "make_grid": "grids", "check_timesteps": "grids", "sigma_of_t": "grids", "t_of_sigma": "grids",
    "t_of_lambda": "grids", "steps_of_timesteps": "grids", "start_state": "grids", "RunContext": "base",
}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["REGISTRY", "SamplerSpec", "SamplerOptions", "TIME_GRIDS", "get_spec", "load_loop", "register",
           "registered", "sampler_names", *_LAZY]
