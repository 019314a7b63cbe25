"""Normalizing-flow backend: exact inverses, log-determinants against autograd, the dequantized NLL,
temperature sampling at the uint8 boundary, class-conditional flows, presets."""

from __future__ import annotations

import functools
import math

import pytest
import torch
from omegaconf import OmegaConf

from generative_bench.backends.diffusion.ode import dequantize
from generative_bench.backends.flow import CouplingVectorFlow, FlowBackend, GlowImageFlow, quantize_8bit
from generative_bench.data.codec import to_model_space
from generative_bench.data.loading import BatchStream
from generative_bench.errors import InputError
from generative_bench.sampler import SampleBatch
from generative_bench.training.trainer import Trainer
from tests.test_vae_backend import blob_images

SHAPE = (3, 8, 8)


def image_flow(seed: int = 0, shape=SHAPE, lu: bool = True, num_classes: int = 0,
               coupling: str = "affine") -> FlowBackend:
    torch.manual_seed(seed)
    net = functools.partial(GlowImageFlow, levels=2, steps_per_level=2, hidden=8, lu=lu, coupling=coupling, bins=4)
    return FlowBackend(shape, image_net=net, num_classes=num_classes)


def vector_flow(seed: int = 0, d: int = 2, lu: bool = True, num_classes: int = 0,
                coupling: str = "affine") -> FlowBackend:
    torch.manual_seed(seed)
    net = functools.partial(CouplingVectorFlow, steps=4, hidden=16, depth=1, lu=lu, coupling=coupling, bins=4,
                            bound=3.0)
    return FlowBackend([d], vector_net=net, num_classes=num_classes)


def scrambled(flow: FlowBackend, x: torch.Tensor, seed: int = 0, scale: float = 0.05) -> FlowBackend:
    """Actnorm initialised on ``x``, then every weight moved at random (couplings start as the identity)."""
    flow.train()
    with torch.no_grad():
        flow.net(x)
        g = torch.Generator().manual_seed(seed)
        for p in flow.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return flow.eval()


def _images(n: int = 4, shape=SHAPE, seed: int = 0) -> torch.Tensor:
    return dequantize(to_model_space(blob_images(n, seed=seed, size=shape[1])[:, :shape[0]]),
                      torch.Generator().manual_seed(seed))


FLAVOURS = [(True, "affine"), (False, "affine"), (True, "spline")]


@pytest.mark.parametrize("lu, coupling", FLAVOURS)
def test_image_and_vector_flows_invert_exactly(lu, coupling):
    x = _images()
    flow = scrambled(image_flow(lu=lu, coupling=coupling), x)
    with torch.no_grad():
        zs, _, _ = flow.net(x)
        assert [tuple(z.shape[1:]) for z in zs] == [(6, 4, 4), (24, 2, 2)]  # multi-scale: half out at level 1
        assert (flow.net.inverse(zs) - x).abs().max() < 1e-5
    v = torch.randn(64, 2)
    vflow = scrambled(vector_flow(lu=lu, coupling=coupling), v)
    with torch.no_grad():
        zs, _, _ = vflow.net(v)
        assert (vflow.net.inverse(zs) - v).abs().max() < 1e-5


def _jacobian_logdet(flow: FlowBackend, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(log|det| from the flow, log|det J| of x -> all latents by autograd) for one example, float64."""
    def latents(flat: torch.Tensor) -> torch.Tensor:
        zs, _, _ = flow.net(flat.view(1, *x.shape[1:]))
        return torch.cat([z.flatten() for z in zs])

    jac = torch.autograd.functional.jacobian(latents, x.flatten(), vectorize=True)
    _, logdet = flow.net(x)[:2]
    return logdet[0], torch.linalg.slogdet(jac)[1]


@pytest.mark.parametrize("lu, coupling", FLAVOURS)
def test_log_determinant_equals_autograd_jacobian(lu, coupling):
    shape = (3, 4, 4)  # 48 dimensions: squeeze, split, squeeze
    x = _images(8, shape)
    scale = 0.2 if coupling == "affine" else 0.1  # larger moves make splines so flat that slogdet loses digits
    flow = scrambled(image_flow(shape=shape, lu=lu, coupling=coupling), x, scale=scale).double()
    ours, autograd = _jacobian_logdet(flow, x[:1].double())
    torch.testing.assert_close(ours, autograd, rtol=1e-8, atol=1e-6)
    for d in (2, 3):  # an odd d splits 1 / 2
        v = torch.randn(32, d, dtype=torch.float64)
        vflow = scrambled(vector_flow(d=d, lu=lu, coupling=coupling), v.float(), scale=scale).double()
        ours, autograd = _jacobian_logdet(vflow, v[:1])
        torch.testing.assert_close(ours, autograd, rtol=1e-8, atol=1e-6)


def test_fresh_flow_is_a_standard_normal_and_the_bound_adds_seven_bits():
    """At initialisation every coupling is the identity and W a rotation: log p(z) = log N(z; 0, I),
    so the dequantized NLL is that plus 7 bits/dim for the 8-bit bins mapped to [-1, 1)."""
    flow = image_flow().eval()
    x = to_model_space(blob_images(3))
    res = flow.nll(x, torch.Generator().manual_seed(4))
    z = dequantize(x, torch.Generator().manual_seed(4)).double()
    expected = (0.5 * z**2 + 0.5 * math.log(2 * math.pi)).flatten(1).sum(1) / (z[0].numel() * math.log(2)) + 7
    torch.testing.assert_close(res.bpd.double(), expected, rtol=1e-5, atol=1e-5)
    assert "uniform-dequantized NLL (an upper bound on the discrete NLL)" in res.bound


def test_quantize_inverts_dequantize_on_every_level():
    levels = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16).repeat(4, 3, 1, 1)
    x = to_model_space(levels)
    assert torch.equal(quantize_8bit(dequantize(x, torch.Generator().manual_seed(0))), x)


def _cfg(steps: int):
    return OmegaConf.create({"max_steps": steps, "batch_size": 16,
                             "optim": {"_target_": "torch.optim.Adam", "lr": 3e-3},
                             "grad_clip": 1.0, "ema_decay": 0.9, "log_every": 5, "checkpoint_every": 1000})


def test_nll_is_finite_and_falls_with_training(tmp_path):
    flow = image_flow()
    train, test = blob_images(64), blob_images(16, seed=1)
    before = flow.nll(to_model_space(test), torch.Generator().manual_seed(0)).bpd
    assert bool(flow.net.steps[0][0].norm.initialized) is False
    Trainer(flow, BatchStream(train, 16, seed=0), _cfg(40), tmp_path).fit(progress=False)
    assert bool(flow.net.steps[0][0].norm.initialized) is True  # data-dependent actnorm ran once
    after = flow.nll(to_model_space(test), torch.Generator().manual_seed(0)).bpd
    assert torch.isfinite(after).all() and after.mean() < before.mean() - 0.5, (before.mean(), after.mean())


def test_temperature_sampling_at_the_uint8_boundary():
    x = _images(16)
    flow = scrambled(image_flow(), x)
    assert flow.knobs() == {"temperature": 1.0} and flow.network_evaluations({}) == 1
    cold = flow.sample(5, seed=0, temperature=0.0)
    warm = flow.sample(5, seed=0, temperature=1.0)
    assert cold.shape == warm.shape == (5, *SHAPE) and cold.dtype == warm.dtype == torch.uint8
    assert torch.equal(cold, flow.sample(5, seed=9, temperature=0.0)[:5])  # T = 0: every latent at its mean
    assert (cold == cold[:1]).all() and not torch.equal(warm, flow.sample(5, seed=1))
    with pytest.raises(InputError, match="temperature"):
        flow.resolve_settings(temperature=-1)
    with pytest.raises(InputError, match="unknown sampling option"):
        flow.resolve_settings(steps=3)
    v = vector_flow()
    assert v.sample(7, seed=0).dtype == torch.float32 and v.sample(7, seed=0, temperature=0).shape == (7, 2)


def test_samples_do_not_depend_on_the_batch():
    flow = scrambled(vector_flow(), torch.randn(64, 2))
    settings = flow.resolve_settings()
    whole = flow.draw(0, 20, seed=3, settings=settings, chunk=8).images
    parts = SampleBatch.concat(flow.draw(s, min(20, s + 7), 3, settings, chunk=8) for s in range(0, 20, 7)).images
    assert torch.equal(parts, whole)


def test_class_conditional_flow_samples_labels_and_scores_the_exact_marginal():
    x = _images(8)
    flow = scrambled(image_flow(num_classes=3), x)
    flow.net(x, torch.zeros(8, dtype=torch.long))  # the class biases enter
    images, labels = flow.sample(6, seed=0, labels=torch.tensor([0, 1, 2, 2, 1, 0]))
    assert images.shape == (6, *SHAPE) and labels.tolist() == [0, 1, 2, 2, 1, 0]
    data = to_model_space(blob_images(4))
    per_class = torch.stack([flow.nll(data, torch.Generator().manual_seed(0), labels=torch.full((4,), c),
                                      condition="label").bpd for c in range(3)])
    marginal = flow.nll(data, torch.Generator().manual_seed(0))
    scale = data[0].numel() * math.log(2)
    expected = -(torch.logsumexp(-per_class * scale, 0) - math.log(3)) / scale
    torch.testing.assert_close(marginal.bpd, expected, rtol=1e-5, atol=1e-5)
    assert "marginal" in marginal.bound
    with pytest.raises(InputError, match="needs the data's labels"):
        flow.nll(data, condition="label")


def test_bad_inputs_name_the_fix():
    flow = image_flow()
    with pytest.raises(InputError, match="to_model_space"):
        flow.nll(blob_images(2))
    with pytest.raises(InputError, match="expected shape"):
        flow.nll(torch.zeros(2, 3, 4, 4))
    with pytest.raises(InputError, match="divisible by 2\\*\\*levels"):
        FlowBackend((3, 12, 12), image_net=functools.partial(GlowImageFlow, levels=3))
    with pytest.raises(InputError, match="unknown option"):
        flow.nll(to_model_space(blob_images(2)), k=3)
    with pytest.raises(InputError, match="coupling must be one of"):
        vector_flow(coupling="additive")


@pytest.mark.parametrize("model, data", [("flow", "ring"), ("flow", "cifar10_jpeg"), ("glow_cifar10", "cifar10_jpeg")])
def test_presets_compose_validate_and_build(compose, model, data):
    from hydra.utils import instantiate

    from generative_bench.validation import validate

    cfg = compose([f"model={model}", f"data={data}"])
    OmegaConf.resolve(cfg)
    validate(cfg)  # also builds the untrained backend and checks its sampling options and sweep
    assert [s["temperature"] for s in cfg.model.sampling_sweep][-1] < 1.0
    if model == "flow":  # the published preset (about 44M parameters) is built once, by validate
        conditional = compose([f"model={model}", f"data={data}", "model.backend.num_classes=${data.num_classes}"])
        OmegaConf.resolve(conditional)
        assert instantiate(conditional.model.backend).num_classes == conditional.data.num_classes
        backend = instantiate(cfg.model.backend)
        assert isinstance(backend, FlowBackend) and list(backend.data_shape) == list(cfg.data.shape)
