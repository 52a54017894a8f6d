"""The names the command line offers before it imports torch (``--sampler``, ``--time-grid``, ``--probe``).

The samplers, grids and probes themselves live in torch modules (:data:`scorekit.sampling.SAMPLERS`,
:data:`scorekit.samplers.TIME_GRIDS`, :data:`scorekit.likelihood.PROBES`); ``tests/test_cli_fast.py`` checks these
copies against them, so they cannot drift. A torch-free sampler registry can replace this module one for one.
"""

from __future__ import annotations

SAMPLER_NAMES = ("pc", "ode", "ddim", "ald", "dpmsolver++", "dpmsolver++-singlestep", "sde-dpmsolver++", "edm-heun",
                 "dpmsolver-adaptive")
TIME_GRID_NAMES = ("uniform", "logsnr", "karras")
PROBE_NAMES = ("rademacher", "gaussian")
ADAPTIVE_METHOD_NAMES = ("dopri5", "dopri8", "bosh3", "adaptive_heun", "fehlberg2", "scipy_RK45", "scipy_RK23",
                         "scipy_DOP853", "scipy_LSODA")
