"""Class-conditional networks: num_classes=0 is the unconditional net, conditioning paths, truncation."""

import math

import pytest
import torch
import torch.nn.functional as F
from scipy.stats import truncnorm

from generative_bench.backends.gan.batchnorm import batchnorm_mode, batchnorms, has_batchnorm
from generative_bench.backends.gan.conditional import ConditionalBatchNorm2d, ProjectionHead
from generative_bench.backends.gan.nets_dcgan import DCGANDiscriminator, DCGANGenerator
from generative_bench.backends.gan.nets_mlp import MLPDiscriminator, MLPGenerator
from generative_bench.backends.gan.nets_sngan import SNGANDiscriminator, SNGANGenerator
from generative_bench.backends.gan.truncation import truncated_latents, truncation_threshold
from generative_bench.backends.nets.classifier import NoisyImageClassifier, NoisyVectorClassifier
from generative_bench.backends.nets.mlp_denoiser import MLPDenoiser
from generative_bench.backends.nets.unet import UNet
from generative_bench.backends.vae.nets import ConvVAENet, MLPVAENet
from generative_bench.sampler import GeneratorNoise, ImageNoise

K = 3  # classes


def _jitter(net, seed=5, scale=0.05):
    """Perturb every parameter (zero-initialised layers would hide the conditioning paths)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return net


UNET = dict(image_size=8, ch=16, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,), dropout=0.0, norm_groups=8)
MLPD = dict(hidden=32, num_blocks=2, time_dim=16, input_features=4)

# (factory, inputs(batch) -> positional args before y)
NETS = {
    "unet": (lambda **kw: UNet(**UNET, **kw), lambda b: (torch.randn(b, 3, 8, 8), torch.rand(b) * 1000)),
    "mlp_denoiser": (lambda **kw: MLPDenoiser(**MLPD, **kw), lambda b: (torch.randn(b, 2), torch.rand(b) * 1000)),
    "dcgan_g": (lambda **kw: DCGANGenerator([3, 8, 8], z_dim=8, ch=16, **kw), lambda b: (torch.randn(b, 8),)),
    "sngan_g": (lambda **kw: SNGANGenerator([3, 8, 8], z_dim=8, ch=8, **kw), lambda b: (torch.randn(b, 8),)),
    "mlp_g": (lambda **kw: MLPGenerator([2], z_dim=4, hidden=16, **kw), lambda b: (torch.randn(b, 4),)),
    "dcgan_d": (lambda **kw: DCGANDiscriminator([3, 8, 8], ch=4, **kw), lambda b: (torch.randn(b, 3, 8, 8),)),
    "dcgan_d_bn": (lambda **kw: DCGANDiscriminator([3, 8, 8], ch=4, norm="batch", **kw),
                   lambda b: (torch.randn(b, 3, 8, 8),)),
    "sngan_d": (lambda **kw: SNGANDiscriminator([3, 8, 8], ch=8, **kw), lambda b: (torch.randn(b, 3, 8, 8),)),
    "mlp_d": (lambda **kw: MLPDiscriminator([2], hidden=16, spectral=True, **kw), lambda b: (torch.randn(b, 2),)),
}
VAES = {
    "conv_spatial": lambda **kw: ConvVAENet([3, 8, 8], 6, channels=(8, 16), latent_channels=4, **kw),
    "conv_flat": lambda **kw: ConvVAENet([3, 8, 8], 6, channels=(8, 16), latent_channels=4, latent_dim=5,
                                         stem_stride=1, **kw),
    "mlp": lambda **kw: MLPVAENet([2], 4, hidden=16, latent_dim=2, **kw),
}
LABEL_PARAMS = {  # name fragments of the parameters that carry the class
    "unet": "label_embed", "mlp_denoiser": "label_embed", "dcgan_g": ("gamma", "beta"), "sngan_g": ("gamma", "beta"),
    "mlp_g": "label_embed", "dcgan_d": "projection", "dcgan_d_bn": "projection", "sngan_d": "projection",
    "mlp_d": "projection",
}


def _build(factory, **kw):
    torch.manual_seed(0)
    return factory(**kw)


def _same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("name", list(NETS))
def test_num_classes_zero_is_the_unconditional_net(name):
    factory, inputs = NETS[name]
    nets = [_build(factory), _build(factory, num_classes=0), _build(factory)]
    assert _same_state(nets[0], nets[1]) and _same_state(nets[0], nets[2])
    nets[1].load_state_dict(nets[0].state_dict(), strict=True)
    for net in nets:
        _jitter(net)
    torch.manual_seed(1)
    args = inputs(4)
    for mode in ("train", "eval"):
        outs = [getattr(net, mode)()(*args) for net in nets]
        assert torch.equal(outs[0], outs[1]) and torch.equal(outs[0], outs[2])
    with pytest.raises(ValueError, match="unconditional"):
        nets[0](*args, torch.zeros(4, dtype=torch.long))


@pytest.mark.parametrize("name", list(NETS))
def test_conditional_nets_use_the_class(name):
    factory, inputs = NETS[name]
    base, net = _build(factory), _build(factory, num_classes=K)
    extra = set(net.state_dict()) - set(base.state_dict())
    assert extra and all(any(f in k for f in ([LABEL_PARAMS[name]] if isinstance(LABEL_PARAMS[name], str)
                                              else LABEL_PARAMS[name])) for k in extra)
    _jitter(net)
    torch.manual_seed(1)
    args = inputs(4)
    y0, y1 = torch.zeros(4, dtype=torch.long), torch.full((4,), 2)
    out0, out1 = net(*args, y0), net(*args, y1)
    assert out0.shape == base(*args).shape
    assert not torch.allclose(out0, out1)
    net.zero_grad()
    net(*args, torch.tensor([0, 1, 2, 1])).square().sum().backward()
    label_grads = [p.grad for k, p in net.named_parameters() if k in extra]
    assert label_grads and all(g is not None and g.abs().sum() > 0 for g in label_grads)


@pytest.mark.parametrize("name", ["dcgan_g", "sngan_g", "mlp_g", "dcgan_d", "sngan_d", "mlp_d"])
def test_gan_nets_require_labels_when_conditional(name):
    factory, inputs = NETS[name]
    with pytest.raises(ValueError, match="labels"):
        _build(factory, num_classes=K)(*inputs(2))


@pytest.mark.parametrize("name", ["unet", "mlp_denoiser"])
def test_denoiser_without_labels_is_the_null_class(name):
    factory, inputs = NETS[name]
    net = _jitter(_build(factory, num_classes=K)).eval()
    assert net.num_classes == K and net.label_embed.num_embeddings == K + 1
    args = inputs(3)
    assert torch.equal(net(*args), net(*args, torch.full((3,), K)))
    assert not torch.allclose(net(*args), net(*args, torch.zeros(3, dtype=torch.long)))


@pytest.mark.parametrize("name", ["unet", "mlp_denoiser", "dcgan_d", "sngan_d", "mlp_d", "mlp_g"])
def test_conditioning_modules_are_created_after_the_others(name):
    factory, _ = NETS[name]
    base, net = _build(factory).state_dict(), _build(factory, num_classes=K).state_dict()
    assert all(torch.equal(base[k], net[k]) for k in base)


@pytest.mark.parametrize("name", list(VAES))
def test_vae_nets(name):
    factory = VAES[name]
    a, b, net = _build(factory), _build(factory, num_classes=0), _build(factory, num_classes=K)
    assert _same_state(a, b) and a.latent_shape == net.latent_shape
    base = a.state_dict()
    assert all(torch.equal(base[k], net.state_dict()[k]) for k in base)
    assert net.output_layer is net.decoder[-1]
    torch.manual_seed(1)
    x = torch.randn(4, *(a.encoder[0].in_channels, 8, 8) if name != "mlp" else (2,))
    z = torch.randn(4, *a.latent_shape)
    ma, la = a.encode(x)
    mb, lb = b.encode(x)
    assert torch.equal(ma, mb) and torch.equal(la, lb) and torch.equal(a.decode(z), b.decode(z))
    y0, y1 = torch.zeros(4, dtype=torch.long), torch.full((4,), 2)
    m0, _ = net.encode(x, y0)
    m1, _ = net.encode(x, y1)
    assert m0.shape == ma.shape and not torch.allclose(m0, m1)
    d0, d1 = net.decode(z, y0), net.decode(z, y1)
    assert d0.shape == a.decode(z).shape and not torch.allclose(d0, d1)
    mean, log_var = net.encode(x, torch.tensor([0, 1, 2, 0]))
    (net.decode(mean + log_var.exp(), torch.tensor([2, 1, 0, 0])).square().sum()).backward()
    assert net.enc_label_embed.weight.grad.abs().sum() > 0 and net.dec_label_embed.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="labels"):
        net.encode(x)
    with pytest.raises(ValueError, match="labels"):
        net.decode(z)


def test_conditional_batchnorm():
    torch.manual_seed(0)
    bn = ConditionalBatchNorm2d(5, K)
    x, y = torch.randn(6, 5, 3, 3) * 2 + 1, torch.tensor([0, 1, 2, 2, 1, 0])
    assert torch.equal(bn.gamma.weight, torch.ones(K, 5)) and torch.equal(bn.beta.weight, torch.zeros(K, 5))
    assert torch.allclose(bn(x, y), F.batch_norm(x, None, None, training=True), atol=1e-6)
    with torch.no_grad():
        bn.gamma.weight.normal_()
        bn.beta.weight.normal_()
    for training in (True, False):
        bn.train(training)
        ref = F.batch_norm(x, bn.running_mean.clone(), bn.running_var.clone(), training=training)
        out = bn(x, y)
        for i in range(len(x)):
            expected = bn.gamma.weight[y[i]][:, None, None] * ref[i] + bn.beta.weight[y[i]][:, None, None]
            assert torch.allclose(out[i], expected, atol=1e-5)
    with pytest.raises(ValueError, match="labels"):
        bn(x)
    assert has_batchnorm(bn) and isinstance(bn, torch.nn.BatchNorm2d) and not bn.affine


def test_conditional_generators_are_seen_by_the_batchnorm_modes():
    for factory in (NETS["dcgan_g"][0], NETS["sngan_g"][0]):
        g = _build(factory, num_classes=K)
        bns = batchnorms(g)
        assert has_batchnorm(g) and bns and all(isinstance(m, ConditionalBatchNorm2d) for _, m in bns)
        assert len(bns) == len(batchnorms(_build(factory)))
        z, y = torch.randn(4, 8), torch.tensor([0, 1, 2, 0])
        g.train()
        with batchnorm_mode(g, "running"):
            assert all(not m.training for _, m in bns)
            a = g(z, y)
        g.eval()
        assert torch.equal(a, g(z, y))
        before = [m.running_mean.clone() for _, m in bns]
        with batchnorm_mode(g, "batch"):
            g(z, y)
        assert all(torch.equal(b, m.running_mean) for b, (_, m) in zip(before, bns))


@pytest.mark.parametrize("spectral", [False, True])
def test_projection_head_is_the_inner_product(spectral):
    torch.manual_seed(0)
    head = ProjectionHead(7, K, spectral)
    h, y = torch.randn(5, 7), torch.tensor([2, 0, 1, 1, 2])
    head.eval()
    out = head(h, y)
    w = head.embed.weight
    expected = torch.stack([sum(w[y[i], k] * h[i, k] for k in range(7)) for i in range(5)])
    assert out.shape == (5,) and torch.allclose(out, expected, atol=1e-5)
    if spectral:
        head.train()
        with torch.no_grad():
            for _ in range(30):
                head(h, y)
        head.eval()
        assert torch.linalg.matrix_norm(head.embed.weight.detach(), 2).item() == pytest.approx(1.0, abs=1e-3)


def test_truncation_threshold_and_validation():
    assert math.isinf(truncation_threshold(1.0))
    assert truncation_threshold(0.6826894921370859) == pytest.approx(1.0, abs=1e-9)
    for psi in (0.0, -0.5, 1.5, float("nan"), "x"):
        with pytest.raises(ValueError, match="psi"):
            truncation_threshold(psi)
        with pytest.raises(ValueError, match="psi"):
            truncated_latents(GeneratorNoise(torch.Generator().manual_seed(0)), (2, 3), psi)


def test_truncation_psi_one_is_the_plain_draw():
    seeds = [11, 12, 13]
    assert torch.equal(truncated_latents(ImageNoise(seeds), (3, 16), 1.0), ImageNoise(seeds).randn((3, 16)))
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(truncated_latents(GeneratorNoise(g1), (4, 16), 1.0), torch.randn(4, 16, generator=g2))


@pytest.mark.parametrize("psi", [0.3, 0.7])
def test_truncated_latents_are_within_tau_and_per_image(psi):
    tau = truncation_threshold(psi)
    seeds = [101, 202, 303]
    batch = truncated_latents(ImageNoise(seeds), (3, 64), psi)
    assert batch.shape == (3, 64) and batch.abs().max() <= tau
    for i, s in enumerate(seeds):
        assert torch.equal(truncated_latents(ImageNoise([s]), (1, 64), psi)[0], batch[i])
    z = truncated_latents(GeneratorNoise(torch.Generator().manual_seed(0)), (4, 64), psi)
    assert z.abs().max() <= tau


def test_truncated_distribution_matches_the_truncated_normal():
    psi = 0.5
    tau = truncation_threshold(psi)
    z = truncated_latents(GeneratorNoise(torch.Generator().manual_seed(0)), (100, 2000), psi)
    expected = truncnorm(-tau, tau).std()
    assert z.std().item() < 1.0
    assert z.std().item() == pytest.approx(expected, rel=0.01)
    assert z.mean().item() == pytest.approx(0.0, abs=0.01)


def test_noise_aware_classifiers():
    torch.manual_seed(0)
    img = _jitter(NoisyImageClassifier(in_channels=3, image_size=8, num_classes=4, ch=16, ch_mult=(1, 2),
                                       attn_resolutions=(4,), norm_groups=8)).eval()
    vec = _jitter(NoisyVectorClassifier(dim=2, num_classes=5, hidden=32, num_blocks=2, time_dim=16,
                                        input_features=4)).eval()
    for net, x, c in [(img, torch.randn(3, 3, 8, 8), 4), (vec, torch.randn(3, 2), 5)]:
        t0, t1 = torch.full((3,), 10.0), torch.full((3,), 900.0)
        logits = net(x, t0)
        assert logits.shape == (3, c)
        assert not torch.allclose(logits, net(x, t1))
        logits.logsumexp(1).sum().backward()
        assert net.time_embed[0].weight.grad.abs().sum() > 0
