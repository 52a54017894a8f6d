"""Hub interop: scorekit saves open in stock diffusers; Hub ids load, push and pull through a local stand-in of the
Hub API (tests/local_hub.py on 127.0.0.1, reached through HF_ENDPOINT); weight safety; errors naming the culprit."""

from __future__ import annotations

import json
import os
import re

import pytest
import torch
from diffusers import (
    DDIMPipeline,
    DDPMPipeline,
    DiffusionPipeline,
    DPMSolverMultistepScheduler,
    ScoreSdeVeScheduler,
    UNet2DModel,
)
from hub_layouts import make_ddpm_cifar10_folder, make_ncsnpp_celebahq_folder, tiny_ddpm_unet, tiny_ncsnpp_unet
from local_hub import LocalHub, point_hub_at

import scorekit
from scorekit.hub import make_model_card, push_to_hub
from scorekit.models import TimeClassifierModel
from scorekit.pipelines import (
    ScoreSDEClassConditionalPipeline,
    ScoreSDEColorizationPipeline,
    ScoreSDEInpaintPipeline,
    ScoreSDEPipeline,
)
from scorekit.schedulers import ScoreSDEODEScheduler, ScoreSDEPCScheduler

TESTED_DIFFUSERS = "0.42.1"  # the version whose private loader internals diffusers_registration relies on
TOKEN = "hf_local_test_token"
STEPS = dict(num_inference_steps=3, output_type="pt")


def _vp_pipe(scheduler=None, seed=0):
    torch.manual_seed(seed)
    pipe = ScoreSDEPipeline(unet=tiny_ddpm_unet().eval(), scheduler=scheduler or ScoreSDEPCScheduler(snr=0.1))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _ve_pipe():
    torch.manual_seed(0)
    scheduler = ScoreSDEPCScheduler(sde_type="ve", prediction_type="sigma", sigma_max=380.0, snr=0.075,
                                    num_train_timesteps=2000)
    return ScoreSDEPipeline(unet=tiny_ncsnpp_unet().eval(), scheduler=scheduler)


def _draw(pipe, **kwargs):
    pipe.set_progress_bar_config(disable=True)
    return pipe(**{"batch_size": 2, "generator": torch.Generator().manual_seed(0), **STEPS, **kwargs}).images


def _tiny_classifier():
    torch.manual_seed(0)
    return TimeClassifierModel(sample_size=8, in_channels=3, num_classes=4, block_out_channels=(8, 16),
                               norm_num_groups=4)


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """The local Hub, with huggingface_hub pointed at it and a private cache."""
    with LocalHub() as server:
        point_hub_at(monkeypatch, server.endpoint, str(tmp_path / "hub-cache"))
        yield server


# --- stock diffusers opens what scorekit saves -----------------------------------------------------------------------
def test_vp_epsilon_save_is_a_stock_ddpm_repo(tmp_path):
    pipe = _vp_pipe(ScoreSDEODEScheduler(solver="ddim", eta=0.3))
    pipe.save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["scheduler"] == ["diffusers", "DDPMScheduler"] and index["unet"] == ["diffusers", "UNet2DModel"]
    # stock pipelines, unchanged
    for cls in (DDPMPipeline, DDIMPipeline):
        stock = cls.from_pretrained(tmp_path)
        stock.set_progress_bar_config(disable=True)
        images = stock(batch_size=2, num_inference_steps=4, output_type="np").images
        assert images.shape == (2, 8, 8, 3) and ((images >= 0) & (images <= 1)).all()
    dpm = DPMSolverMultistepScheduler.from_pretrained(tmp_path, subfolder="scheduler")
    stock = DDPMPipeline.from_pretrained(tmp_path, scheduler=dpm)
    stock.set_progress_bar_config(disable=True)
    assert stock(batch_size=1, num_inference_steps=4, output_type="np").images.shape == (1, 8, 8, 3)
    # the stock DDIMPipeline samples exactly what scorekit's discrete DDIM samples from the same folder
    ref = DDIMPipeline.from_pretrained(tmp_path)
    ref.set_progress_bar_config(disable=True)
    want = ref(batch_size=2, num_inference_steps=4, eta=0.0, generator=torch.Generator().manual_seed(1),
               output_type="np").images
    ours = ScoreSDEPipeline.from_pretrained(tmp_path)
    ours.scheduler = ScoreSDEODEScheduler.from_config(ours.scheduler.config, eta=0.0, discretization="discrete")
    got = _draw(ours, num_inference_steps=4, generator=torch.Generator().manual_seed(1), output_type="np")
    assert abs(got - want).max() < 1e-4
    # and scorekit gets its own scheduler back, settings included
    back = ScoreSDEPipeline.from_pretrained(tmp_path)
    public = lambda c: {k: v for k, v in c.items() if not k.startswith("_")}  # noqa: E731
    assert type(back.scheduler) is ScoreSDEODEScheduler
    assert public(back.scheduler.config) == public(pipe.scheduler.config)


def test_ve_sigma_save_opens_with_unet_and_score_sde_ve_scheduler(tmp_path):
    from diffusers import ScoreSdeVePipeline

    _ve_pipe().save_pretrained(tmp_path)
    unet = UNet2DModel.from_pretrained(tmp_path, subfolder="unet")
    scheduler = ScoreSdeVeScheduler.from_pretrained(tmp_path, subfolder="scheduler")
    assert (scheduler.config.sigma_max, scheduler.config.snr, scheduler.config.sampling_eps) == (380.0, 0.075, 1e-5)
    stock = ScoreSdeVePipeline(unet=unet, scheduler=scheduler)
    stock.set_progress_bar_config(disable=True)
    assert stock(batch_size=1, num_inference_steps=2, output_type="np").images.shape == (1, 8, 8, 3)
    assert type(ScoreSDEPipeline.from_pretrained(tmp_path).scheduler) is ScoreSDEPCScheduler


def test_sub_vp_keeps_the_scorekit_layout(tmp_path):
    _vp_pipe(ScoreSDEPCScheduler(sde_type="subvp")).save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["scheduler"] == ["scorekit", "ScoreSDEPCScheduler"]
    assert ScoreSDEPipeline.from_pretrained(tmp_path).scheduler.config.sde_type == "subvp"


def test_diffusers_loader_registration_is_pinned():
    import diffusers
    from diffusers.pipelines import pipeline_loading_utils as plu

    from scorekit.diffusers_registration import COMPONENT_LIBRARIES, PIPELINE_CLASSES, _LazyPipelines

    assert diffusers.__version__ == TESTED_DIFFUSERS or diffusers.__version__ >= TESTED_DIFFUSERS
    assert isinstance(diffusers._objects, _LazyPipelines)
    assert all(lib in plu.LOADABLE_CLASSES for lib in COMPONENT_LIBRARIES)
    for name in PIPELINE_CLASSES:
        assert plu._get_pipeline_class(DiffusionPipeline, {"_class_name": name}) is getattr(scorekit.pipelines, name)
    assert scorekit.SchedulerMixin is diffusers.SchedulerMixin and scorekit.ModelMixin is diffusers.ModelMixin


@pytest.mark.slow  # a fresh interpreter imports torch and diffusers (~10 s on a quiet core)
def test_import_scorekit_first_registers_through_the_post_import_hook(tmp_path):
    import subprocess
    import sys

    _vp_pipe(ScoreSDEPCScheduler(sde_type="subvp")).save_pretrained(tmp_path)  # a scorekit-class scheduler
    code = ("import sys, scorekit; assert 'diffusers' not in sys.modules, 'import scorekit must stay light'\n"
            "from diffusers import DiffusionPipeline\n"
            f"pipe = DiffusionPipeline.from_pretrained({str(tmp_path)!r})\n"
            "print(type(pipe).__name__, type(pipe.scheduler).__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["ScoreSDEPipeline", "ScoreSDEPCScheduler"]


# --- push, then pull by Hub id ---------------------------------------------------------------------------------------
def test_push_pipeline_uploads_exactly_the_stock_layout_and_card(hub, tmp_path):
    pipe = _vp_pipe()
    info = push_to_hub(pipe, "alice/tiny-vp", token=TOKEN, num_inference_steps=3, training_data="sklearn digits",
                       training_command="scorekit train --sde vp", metrics={"bits_per_dim": 3.21})
    assert "alice/tiny-vp" in info.commit_url
    assert hub.commits[-1] == ("alice/tiny-vp", ["README.md", "model_index.json", "scheduler/scheduler_config.json",
                                                 "unet/config.json", "unet/diffusion_pytorch_model.safetensors"])
    assert all(auth == f"Bearer {TOKEN}" for method, _, auth in hub.requests if method == "POST")
    want = _draw(pipe)
    pulled = ScoreSDEPipeline.from_pretrained("alice/tiny-vp")
    torch.testing.assert_close(_draw(pulled), want, atol=0, rtol=0)  # same weights, same calls
    generic = DiffusionPipeline.from_pretrained("alice/tiny-vp")
    assert type(generic) is ScoreSDEPipeline
    torch.testing.assert_close(_draw(generic), want, atol=0, rtol=0)
    card = hub.snapshot("alice/tiny-vp")[1]["README.md"].decode()
    for fact in ("VPSDE(beta_min=0.1, beta_max=20.0", "`epsilon`", "`[-1.0, 1.0]`",
                 "conditioning: none (unconditional)", "scheduler's own sampler: `pc`",
                 'sampler="dpmsolver++", num_inference_steps=3', "sklearn digits",
                 "scorekit train --sde vp", "| bits_per_dim | 3.21 |", "library_name: scorekit"):
        assert fact in card
    snippet = re.search(r"```python\n(.*?)```", card, re.S).group(1)
    scope = {}
    exec(snippet, scope)  # the usage snippet runs against the (local) Hub
    assert len(scope["images"]) == 2


def test_card_states_the_conditioning_kind_and_the_measured_recipe():
    torch.manual_seed(0)
    config = {k: v for k, v in tiny_ddpm_unet().config.items() if not k.startswith("_")}
    labelled = UNet2DModel(**{**config, "num_class_embeds": 5})
    cfg = ScoreSDEClassConditionalPipeline(unet=labelled, scheduler=ScoreSDEPCScheduler())
    guided = ScoreSDEClassConditionalPipeline(unet=tiny_ddpm_unet(), scheduler=ScoreSDEPCScheduler(),
                                              classifier=_tiny_classifier())
    both = ScoreSDEClassConditionalPipeline(unet=labelled, scheduler=ScoreSDEPCScheduler(),
                                            classifier=_tiny_classifier())
    recipe = 'sampler="dpmsolver++", num_inference_steps=19'
    cards = {name: str(make_model_card(pipe, "a/b")) for name, pipe in
             (("cfg", cfg), ("guided", guided), ("both", both), ("none", _vp_pipe()))}
    cfg, guided, both = cards["cfg"], cards["guided"], cards["both"]
    assert "conditioning: classifier-free guidance" in cfg and f"{recipe}, guidance_scale=1.5" in cfg
    assert "classifier_scale" not in cfg
    assert "conditioning: classifier guidance" in guided and f"{recipe}, guidance_scale=6.0" in guided
    assert "classifier-free" not in guided
    assert "conditioning: classifier-free guidance" in both and "`classifier_scale`, e.g. 6.0" in both
    assert "conditioning: none (unconditional)" in cards["none"] and "guidance_scale" not in cards["none"]
    assert all("20 NFE" in card and "num_inference_steps=1000" not in card for card in cards.values())
    ode = _vp_pipe(ScoreSDEODEScheduler(solver="sde-dpmsolver++"))  # a scheduler set to a few-step solver: its own
    assert 'sampler="sde-dpmsolver++", num_inference_steps=19' in str(make_model_card(ode, "a/b"))


def test_push_classifier_and_bare_model(hub):
    push_to_hub(_tiny_classifier(), "alice/clf", token=TOKEN, scheduler=ScoreSDEPCScheduler())
    assert hub.commits[-1] == ("alice/clf", ["README.md", "config.json", "diffusion_pytorch_model.safetensors"])
    assert isinstance(TimeClassifierModel.from_pretrained("alice/clf"), TimeClassifierModel)
    assert "noise-conditional classifier" in hub.snapshot("alice/clf")[1]["README.md"].decode()
    push_to_hub(tiny_ddpm_unet(), "alice/unet", token=TOKEN)
    assert isinstance(UNet2DModel.from_pretrained("alice/unet"), UNet2DModel)


def test_class_conditional_pipeline_pushes_and_loads_generically(hub):
    torch.manual_seed(0)
    pipe = ScoreSDEClassConditionalPipeline(unet=tiny_ddpm_unet(), scheduler=ScoreSDEPCScheduler(),
                                            classifier=_tiny_classifier())
    push_to_hub(pipe, "alice/cond", token=TOKEN)
    index = json.loads(hub.snapshot("alice/cond")[1]["model_index.json"])
    assert index["classifier"] == ["scorekit", "TimeClassifierModel"]
    loaded = DiffusionPipeline.from_pretrained("alice/cond")
    assert type(loaded) is ScoreSDEClassConditionalPipeline and isinstance(loaded.classifier, TimeClassifierModel)


@pytest.fixture
def google_repos(hub, tmp_path):
    hub.add_folder("google/ddpm-cifar10-32", make_ddpm_cifar10_folder(str(tmp_path / "ddpm"), flat=True))
    hub.add_folder("google/ddpm-sub", make_ddpm_cifar10_folder(str(tmp_path / "ddpm-sub")))
    hub.add_folder("google/ncsnpp-celebahq-256", make_ncsnpp_celebahq_folder(str(tmp_path / "ncsnpp"), flat=True))
    _vp_pipe().save_pretrained(tmp_path / "ours")
    hub.add_folder("alice/ours", str(tmp_path / "ours"))
    return {"google/ddpm-cifar10-32": "vp", "google/ddpm-sub": "vp", "google/ncsnpp-celebahq-256": "ve",
            "alice/ours": "vp"}


@pytest.mark.parametrize("cls", [ScoreSDEPipeline, ScoreSDEClassConditionalPipeline, ScoreSDEInpaintPipeline,
                                 ScoreSDEColorizationPipeline])
def test_every_pipeline_loads_every_repo_layout_by_hub_id(google_repos, cls):
    extra = {"classifier": _tiny_classifier()} if cls is ScoreSDEClassConditionalPipeline else {}
    for repo, sde in google_repos.items():
        pipe = cls.from_pretrained(repo, **extra)
        assert type(pipe) is cls and pipe.scheduler.config.sde_type == sde, repo
    out = ScoreSDEPipeline.from_pretrained("google/ncsnpp-celebahq-256")(batch_size=1, **STEPS)
    assert out.images.shape == (1, 3, 8, 8)


def test_hub_kwargs_pass_through(hub, tmp_path):
    first = _vp_pipe(seed=0)
    sha = push_to_hub(first, "alice/rev", token=TOKEN).oid
    push_to_hub(_vp_pipe(seed=1), "alice/rev", token=TOKEN)
    cache = str(tmp_path / "my-cache")
    old = ScoreSDEPipeline.from_pretrained("alice/rev", revision=sha, cache_dir=cache, token=TOKEN)
    torch.testing.assert_close(_draw(old), _draw(first), atol=0, rtol=0)
    assert os.path.isdir(os.path.join(cache, "models--alice--rev"))
    assert ("GET", f"/api/models/alice/rev/tree/{sha}", f"Bearer {TOKEN}") in hub.requests  # revision and token
    weights = f"/alice/rev/resolve/{sha}/unet/diffusion_pytorch_model.safetensors"
    assert ("GET", weights, f"Bearer {TOKEN}") in hub.requests
    n = len(hub.requests)
    offline = ScoreSDEPipeline.from_pretrained("alice/rev", revision=sha, cache_dir=cache, local_files_only=True,
                                               torch_dtype=torch.float64)
    assert len(hub.requests) == n and offline.unet.dtype == torch.float64
    generic = DiffusionPipeline.from_pretrained("alice/rev", revision=sha, cache_dir=cache, torch_dtype=torch.float64)
    assert generic.unet.dtype == torch.float64
    # variant
    _vp_pipe().save_pretrained(tmp_path / "variant", variant="fp16")
    hub.add_folder("alice/variant", str(tmp_path / "variant"))
    assert ScoreSDEPipeline.from_pretrained("alice/variant", variant="fp16", use_safetensors=True).unet is not None


# --- safety and errors -----------------------------------------------------------------------------------------------
def test_pickled_weights_need_opt_in(hub, tmp_path):
    folder = tmp_path / "pickled"
    _vp_pipe().save_pretrained(folder, safe_serialization=False)
    assert os.path.isfile(folder / "unet" / "diffusion_pytorch_model.bin")
    with pytest.raises(ValueError, match="allow_pickle"):
        ScoreSDEPipeline.from_pretrained(folder)
    with pytest.raises(ValueError, match="allow_pickle"):
        ScoreSDEPipeline.from_pretrained(folder, use_safetensors=False)
    assert ScoreSDEPipeline.from_pretrained(folder, allow_pickle=True).unet is not None
    hub.add_folder("alice/pickled", str(folder))
    with pytest.raises(ValueError, match="no .safetensors"):
        ScoreSDEPipeline.from_pretrained("alice/pickled")
    assert not any(path.endswith(".bin") for _, path, _ in hub.requests)  # not even downloaded
    assert ScoreSDEPipeline.from_pretrained("alice/pickled", allow_pickle=True).unet is not None


def test_errors_name_the_component(tmp_path):
    with pytest.raises(ValueError, match="unet has time_embedding_type='fourier'.*prediction_type='epsilon'"):
        ScoreSDEPipeline(unet=tiny_ncsnpp_unet(), scheduler=ScoreSDEPCScheduler())
    with pytest.raises(ValueError, match="time_embedding_type='positional'.*'sigma'"):
        ScoreSDEPipeline(unet=tiny_ddpm_unet(), scheduler=ScoreSDEPCScheduler(sde_type="ve", prediction_type="sigma"))
    from diffusers import DDPMScheduler

    with pytest.raises(ValueError, match="variance_type='learned_range' cannot be converted"):
        ScoreSDEPipeline(unet=tiny_ddpm_unet(), scheduler=DDPMScheduler(variance_type="learned_range"))
    with pytest.raises(ValueError, match="thresholding=True"):
        ScoreSDEPipeline(unet=tiny_ddpm_unet(), scheduler=DDPMScheduler(thresholding=True))
    folder = make_ddpm_cifar10_folder(str(tmp_path / "no-sched"))
    index = json.loads(open(os.path.join(folder, "model_index.json")).read())
    del index["scheduler"]
    with open(os.path.join(folder, "model_index.json"), "w") as f:
        json.dump(index, f)
    with pytest.raises(ValueError, match="scheduler"):
        ScoreSDEPipeline.from_pretrained(folder)
    from diffusers import DDIMScheduler

    spacing = ScoreSDEODEScheduler.from_config(DDIMScheduler(timestep_spacing="uniform").config, solver="ddim",
                                               discretization="discrete")
    with pytest.raises(ValueError, match="timestep_spacing='uniform'.*'trailing'"):
        spacing.set_timesteps(10)
    with pytest.raises(ValueError, match="discretization='discrete' needs solver='ddim'"):
        ScoreSDEODEScheduler(solver="heun", discretization="discrete")
    with pytest.raises(ValueError, match="repo_id"):
        make_model_card(_vp_pipe(), "no-slash")
    with pytest.raises(TypeError, match="obj must be"):
        make_model_card(object(), "a/b")
