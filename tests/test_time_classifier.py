"""TimeClassifierModel: shapes, the time input, safetensors round trip, errors, and that it learns p_t(y | x)."""

import math

import pytest
import torch

import scorekit
from scorekit.analytic import GaussianMixtureScore
from scorekit.models import TimeClassifierModel, classifier_log_prob_fn

TINY_IMAGE = dict(in_channels=3, sample_size=8, num_classes=4, block_out_channels=(8, 16), norm_num_groups=4)
TINY_VECTOR = dict(in_channels=2, sample_size=None, num_classes=3, block_out_channels=(16, 16), norm_num_groups=4)


pytestmark = pytest.mark.usefixtures("single_thread")  # conftest: one intra-op thread on the shared cores


def _model(**kwargs) -> TimeClassifierModel:
    torch.manual_seed(0)
    return TimeClassifierModel(**kwargs).eval()


@pytest.mark.parametrize("time_embedding_type", ["fourier", "positional"])
def test_image_forward_shapes(time_embedding_type):
    model = _model(**TINY_IMAGE, time_embedding_type=time_embedding_type)
    x = torch.randn(5, 3, 8, 8)
    out = model(x, torch.full((5,), 0.5))
    assert out.logits.shape == (5, 4) and torch.isfinite(out.logits).all()
    (logits,) = model(x, 0.5, return_dict=False)  # a number broadcasts over the batch
    torch.testing.assert_close(logits, out.logits, atol=0, rtol=0)  # the same batch and times: exact


def test_vector_mode_forward_and_time_dependence():
    model = _model(**TINY_VECTOR)
    x = torch.randn(6, 2)
    a, b = model(x, torch.full((6,), 0.1)).logits, model(x, torch.full((6,), 2.0)).logits
    assert a.shape == (6, 3)
    assert not torch.allclose(a, b)  # noise-conditional: the logits depend on the timestep


def test_forward_without_timestep_raises():
    model = _model(**TINY_IMAGE)
    with pytest.raises(ValueError, match="timestep"):
        model(torch.randn(2, 3, 8, 8))


@pytest.mark.parametrize(
    "kwargs, x, t, match",
    [
        (TINY_IMAGE, torch.randn(2, 1, 8, 8), 0.5, "sample must have shape"),
        (TINY_VECTOR, torch.randn(2, 3), 0.5, "sample must have shape"),
        (TINY_IMAGE, torch.randn(2, 3, 8, 8), torch.ones(3), "timestep must have shape"),
        (TINY_IMAGE, torch.randn(2, 3, 8, 8), torch.zeros(2), "sigma > 0"),
    ],
)
def test_forward_input_checks(kwargs, x, t, match):
    with pytest.raises(ValueError, match=match):
        _model(**kwargs)(x, t)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(TINY_IMAGE, block_out_channels=(8, 10)), "norm_num_groups"),
        (dict(TINY_IMAGE, time_embedding_type="learned"), "time_embedding_type"),
        (dict(TINY_IMAGE, num_classes=1), "num_classes"),
    ],
)
def test_config_checks(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TimeClassifierModel(**kwargs)


@pytest.mark.parametrize("kwargs", [TINY_IMAGE, TINY_VECTOR])
def test_save_load_round_trip_safetensors(tmp_path, kwargs):
    model = _model(**kwargs)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "diffusion_pytorch_model.safetensors").exists()
    loaded = TimeClassifierModel.from_pretrained(tmp_path).eval()
    assert tuple(loaded.config.block_out_channels) == kwargs["block_out_channels"]
    shape = (3, kwargs["in_channels"]) + ((8, 8) if kwargs["sample_size"] else ())
    x, t = torch.randn(shape), torch.rand(3) + 0.1
    torch.testing.assert_close(loaded(x, t).logits, model(x, t).logits, rtol=0, atol=0)


@pytest.mark.parametrize("time_embedding_type", ["fourier", "positional"])
def test_time_input_follows_the_score_networks(time_embedding_type):
    sde = scorekit.VPSDE()
    model = _model(**TINY_VECTOR, time_embedding_type=time_embedding_type)
    t = torch.tensor([0.1, 0.5, 1.0])
    # fourier models take sigma = std(t) (NCSN++ convention); positional ones the DDPM label t (N - 1)
    expected = sde.marginal_coef(t)[1] if time_embedding_type == "fourier" else t * (sde.N - 1)
    torch.testing.assert_close(model.time_input(sde, t), expected)


def test_classifier_log_prob_fn_normalized_and_differentiable_in_float64():
    sde = scorekit.VESDE()
    model = _model(**TINY_IMAGE)
    log_prob_fn = classifier_log_prob_fn(model, sde)
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    logp = log_prob_fn(x, torch.full((4,), 0.3, dtype=torch.float64))
    torch.testing.assert_close(logp.exp().sum(-1), torch.ones(4), rtol=0, atol=1e-5)
    (grad,) = torch.autograd.grad(logp[:, 1].sum(), x)
    assert grad.dtype == torch.float64 and grad.abs().sum() > 0


def test_classifier_log_prob_fn_rejects_a_classifier_without_t():
    class NoTime(torch.nn.Module):
        def forward(self, x):
            return x

    with pytest.raises(TypeError, match="classifier must accept"):
        classifier_log_prob_fn(NoTime(), scorekit.VPSDE())


def test_guided_sampling_with_the_model_inside_no_grad():
    sde = scorekit.VPSDE()
    model = _model(**TINY_IMAGE)
    condition = scorekit.ClassifierGuidance(classifier_log_prob_fn(model, sde), labels=[0, 3], scale=2.0)
    with torch.no_grad():
        x, info = scorekit.sample(lambda x, t: -x, sde, (2, 3, 8, 8), "ddim", steps=4, condition=condition,
                                  generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(x).all()
    assert info["nfe"] == 5 and condition.classifier_calls == 5  # one classifier call per score evaluation


@pytest.mark.slow
def test_learns_the_exact_noisy_class_posterior_of_a_mixture():
    """Cross-entropy training on a 2-D mixture reaches the Bayes cross-entropy of the exact p_t(y | x).

    The exact posterior minimizes the expected cross-entropy; the held-out gap is estimated on n = 8000 pairs,
    whose standard error is below 0.01 nats, so a gap < 0.05 nats means the classifier learned p_t(y | x).
    """
    sde = scorekit.VPSDE()
    means = torch.tensor([[-1.5, 0.0], [1.5, 0.5], [0.0, -1.5]])
    mix = GaussianMixtureScore(torch.ones(3), means, 0.2 * torch.eye(2).repeat(3, 1, 1), sde)
    model = TimeClassifierModel(**TINY_VECTOR, time_embedding_type="positional")
    log_prob_fn = classifier_log_prob_fn(model, sde)
    g = torch.Generator().manual_seed(0)

    def batch(n):
        x0, y = mix.sample(n, g)
        t = torch.rand(n, generator=g, dtype=torch.float64) * 0.5 + 1e-3  # the informative half of the time range
        alpha, std = sde.marginal_coef(t)
        return alpha[:, None] * x0 + std[:, None] * torch.randn(x0.shape, generator=g, dtype=x0.dtype), t, y

    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(400):
        x, t, y = batch(256)
        loss = torch.nn.functional.nll_loss(log_prob_fn(x, t), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    x, t, y = batch(8000)
    with torch.no_grad():
        ce_model = torch.nn.functional.nll_loss(log_prob_fn(x, t), y).item()
        ce_exact = torch.nn.functional.nll_loss(mix.class_log_posterior(x, t), y).item()
    assert ce_exact < math.log(3) - 0.3  # the task is informative
    assert ce_model - ce_exact < 0.05
