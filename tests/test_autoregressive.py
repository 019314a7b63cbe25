"""Autoregressive backend: causal masks (by gradients over every position and channel), exact
normalised likelihoods, sequential sampling with NFE = H*W*C (or d), per-image reproducibility,
class-conditional models, presets."""

from __future__ import annotations

import functools
import itertools
import math

import pytest
import torch
from omegaconf import OmegaConf

from generative_bench.backends.autoregressive import AutoregressiveBackend, GatedPixelCNN, MADEMixture
from generative_bench.backends.vae import DiscretizedLogisticMixture
from generative_bench.data.codec import to_model_space
from generative_bench.data.loading import BatchStream
from generative_bench.errors import InputError
from generative_bench.sampler import SampleBatch
from generative_bench.training.trainer import Trainer
from tests.test_vae_backend import blob_images

SHAPE = (3, 4, 4)


def pixelcnn(seed: int = 0, shape=SHAPE, bits: int = 8, num_classes: int = 0, layers: int = 3) -> AutoregressiveBackend:
    torch.manual_seed(seed)
    net = functools.partial(GatedPixelCNN, hidden=6, layers=layers, kernel=3, first_kernel=3)
    return AutoregressiveBackend(shape, image_net=net, image_likelihood=DiscretizedLogisticMixture(2, bits=bits),
                                 num_classes=num_classes)


def made(seed: int = 0, d: int = 2, num_classes: int = 0) -> AutoregressiveBackend:
    torch.manual_seed(seed)
    return AutoregressiveBackend([d], vector_net=functools.partial(MADEMixture, hidden=16, depth=2, num_mixtures=3),
                                 num_classes=num_classes)


def _raster(t: torch.Tensor) -> torch.Tensor:
    """(C, H, W) -> (H*W*C,): sub-pixels in raster order, channels inside a pixel."""
    return t.permute(1, 2, 0).reshape(-1)


def test_pixelcnn_output_i_depends_only_on_sub_pixels_before_i():
    model = pixelcnn()
    c, h, w = SHAPE
    x = (torch.rand(8, *SHAPE) * 2 - 1).requires_grad_(True)  # 8 inputs: no dependency hidden by a dead ReLU
    out = model.net(x).view(8, 3, 2, c, h, w)  # the likelihood's (logit, mean, log-scale) x K per sub-pixel
    for i, j, ch in itertools.product(range(h), range(w), range(c)):
        grad, = torch.autograd.grad(out[:, :, :, ch, i, j].sum(), x, retain_graph=True)
        order = (i * w + j) * c + ch
        seen = _raster(grad.abs().sum(0)) > 0
        leaks = seen[order:].nonzero().flatten() + order
        assert not seen[order:].any(), f"sub-pixel {(i, j, ch)} sees sub-pixels {leaks.tolist()}"
        if ch > 0:  # the earlier colours of its own pixel
            assert seen[order - ch:order].all()
        if j > 0:  # every colour of the pixel to the left and of the pixel above
            assert seen[order - ch - c:order - ch].all()
        if i > 0:
            above = ((i - 1) * w + j) * c
            assert seen[above:above + c].all()


def test_made_output_i_depends_only_on_dimensions_before_i():
    model = made(d=4)
    x = torch.randn(1, 4, requires_grad=True)
    logits, means, log_stds = model.net.params(x)
    for i in range(4):
        grad, = torch.autograd.grad((logits[0, i] + means[0, i] + log_stds[0, i]).sum(), x, retain_graph=True)
        seen = grad[0].abs() > 0
        assert not seen[i:].any() and seen[:i].all(), (i, grad)


def test_pixelcnn_likelihood_is_normalised_over_every_image():
    """2-bit images of 2 RGB pixels: the 4**6 = 4096 images have probabilities summing to 1."""
    model = pixelcnn(shape=(3, 1, 2), bits=2).eval()
    levels = torch.tensor(list(itertools.product(range(4), repeat=6)), dtype=torch.float32)
    x = (levels / 1.5 - 1.0).view(-1, 1, 2, 3).permute(0, 3, 1, 2)  # (N, C=3, H=1, W=2)
    with torch.no_grad():
        total = torch.logsumexp(model.log_prob(x), 0).exp()
    assert abs(total.item() - 1.0) < 1e-4, total


def test_made_density_integrates_to_one():
    model = made().eval()
    t = torch.linspace(-6, 6, 601)
    grid = torch.cartesian_prod(t, t)
    with torch.no_grad():
        p = model.log_prob(grid).exp().view(601, 601)
    assert abs(torch.trapezoid(torch.trapezoid(p, t, dim=1), t).item() - 1.0) < 1e-3


def test_nll_is_exact_finite_and_names_its_kind():
    img = pixelcnn()
    res = img.nll(to_model_space(blob_images(3, size=4)))
    assert torch.isfinite(res.bpd).all() and (res.bpd > 0).all()
    assert res.bound.startswith("exact NLL (autoregressive") and "8-bit" in res.bound
    vec = made().nll(torch.randn(5, 2))
    assert torch.isfinite(vec.bpd).all() and "continuous density" in vec.bound
    with pytest.raises(InputError, match="to_model_space"):
        img.nll(blob_images(2, size=4))
    with pytest.raises(InputError, match="unknown option"):
        img.nll(to_model_space(blob_images(2, size=4)), k=4)


def _count_passes(model: AutoregressiveBackend, fn):
    calls = []
    hook = model.net.register_forward_hook(lambda *a: calls.append(1)) if model.is_image else None
    if hook is None:
        original = model.net.params
        model.net.params = lambda *a, **k: (calls.append(1), original(*a, **k))[1]
    try:
        out = fn()
    finally:
        if hook is not None:
            hook.remove()
        else:
            del model.net.params
    return out, len(calls)


def test_sequential_sampling_reports_its_network_evaluations():
    img, vec = pixelcnn(), made(d=3)
    assert img.network_evaluations(img.resolve_settings()) == 4 * 4 * 3
    assert vec.network_evaluations(vec.resolve_settings()) == 3
    x, passes = _count_passes(img, lambda: img.sample(5, seed=0, chunk=8))
    assert passes == 48 and x.shape == (5, *SHAPE) and x.dtype == torch.uint8
    v, passes = _count_passes(vec, lambda: vec.sample(5, seed=0, chunk=8))
    assert passes == 3 and v.shape == (5, 3) and v.dtype == torch.float32
    with pytest.raises(InputError, match="unknown sampling option"):
        img.resolve_settings(temperature=0.5)


@pytest.mark.parametrize("kind", ["image", "vector"])
def test_same_seed_same_samples_whatever_the_batch_and_chunk(kind):
    model = pixelcnn(shape=(3, 2, 3)) if kind == "image" else made()
    settings = model.resolve_settings()
    whole = model.draw(0, 12, seed=5, settings=settings, chunk=12).images
    for bs, chunk in ((1, 12), (5, 12), (12, 4), (7, 5)):
        parts = SampleBatch.concat(model.draw(s, min(12, s + bs), 5, settings, chunk=chunk)
                                   for s in range(0, 12, bs)).images
        assert torch.equal(parts, whole), (bs, chunk)
    assert not torch.equal(model.draw(0, 12, seed=6, settings=settings, chunk=12).images, whole)


def _cfg(steps: int):
    return OmegaConf.create({"max_steps": steps, "batch_size": 16,
                             "optim": {"_target_": "torch.optim.Adam", "lr": 3e-3},
                             "grad_clip": 1.0, "ema_decay": 0.9, "log_every": 5, "checkpoint_every": 1000})


def test_training_lowers_the_nll(tmp_path):
    model = pixelcnn()
    train, test = blob_images(64, size=4), to_model_space(blob_images(16, seed=1, size=4))
    before = model.nll(test).bpd.mean()
    Trainer(model, BatchStream(train, 16, seed=0), _cfg(30), tmp_path).fit(progress=False)
    after = model.nll(test).bpd.mean()
    assert after < before - 0.5, (before, after)


def test_class_conditional_models_sample_labels_and_score_the_exact_marginal():
    for model, data in ((pixelcnn(num_classes=3), to_model_space(blob_images(4, size=4))),
                        (made(num_classes=3), torch.randn(4, 2))):
        with torch.no_grad():  # move the class biases off zero so the classes differ
            for name, p in model.named_parameters():
                if "class" in name:
                    p.normal_(0, 0.5)
        samples, labels = model.sample(4, seed=0, labels=torch.tensor([2, 0, 1, 2]))
        assert len(samples) == 4 and labels.tolist() == [2, 0, 1, 2]
        per_class = torch.stack([model.nll(data, labels=torch.full((4,), c), condition="label").bpd for c in range(3)])
        assert not torch.allclose(per_class[0], per_class[1])
        scale = data[0].numel() * math.log(2)
        expected = -(torch.logsumexp(-per_class * scale, 0) - math.log(3)) / scale
        torch.testing.assert_close(model.nll(data).bpd, expected, rtol=1e-5, atol=1e-5)


def test_bad_shapes_name_the_fix():
    with pytest.raises(InputError, match="multiple of the 3 image channels"):
        AutoregressiveBackend(SHAPE, image_net=functools.partial(GatedPixelCNN, hidden=8))
    with pytest.raises(InputError, match="odd kernels"):
        AutoregressiveBackend(SHAPE, image_net=functools.partial(GatedPixelCNN, hidden=6, kernel=4))


@pytest.mark.parametrize("model, data", [("pixelcnn", "ring"), ("pixelcnn", "cifar10_jpeg"),
                                         ("pixelcnnpp_cifar10", "cifar10_jpeg")])
def test_presets_compose_validate_and_build(compose, model, data):
    from hydra.utils import instantiate

    from generative_bench.validation import validate

    cfg = compose([f"model={model}", f"data={data}"])
    OmegaConf.resolve(cfg)
    validate(cfg)  # also builds the untrained backend (once, for the published preset)
    if model == "pixelcnn":
        conditional = compose([f"model={model}", f"data={data}", "model.backend.num_classes=${data.num_classes}"])
        OmegaConf.resolve(conditional)
        assert instantiate(conditional.model.backend).num_classes == conditional.data.num_classes
        backend = instantiate(cfg.model.backend)
        assert isinstance(backend, AutoregressiveBackend) and list(backend.data_shape) == list(cfg.data.shape)
        assert backend.network_evaluations({}) == math.prod(cfg.data.shape)
