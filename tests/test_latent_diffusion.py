"""Latent diffusion (Rombach et al. 2022): the first stage, the latent scale, the stage switch of
one training run, exact resume on either side of the switch, sampling through every diffusion
option (guidance included), the missing NLL and the Hydra presets."""

from __future__ import annotations

import csv
import functools
import math

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from generative_bench.backends.diffusion import DiffusionBackend
from generative_bench.backends.latent import KLAutoencoder, LatentDiffusionBackend, estimate_latent_scale
from generative_bench.backends.nets.classifier import NoisyImageClassifier
from generative_bench.backends.nets.unet import UNet
from generative_bench.backends.vae.nets import ConvVAENet
from generative_bench.data.loading import BatchStream
from generative_bench.errors import InputError, NLLNotDefined
from generative_bench.sampler import SampleBatch
from generative_bench.training.trainer import Trainer

SHAPE = [3, 8, 8]
STAGE1 = 4
AE = functools.partial(KLAutoencoder, net=functools.partial(ConvVAENet, channels=[8], latent_channels=2, res_blocks=1,
                                                             stem_stride=2))
UNET = functools.partial(UNet, ch=32, ch_mult=(1,), num_res_blocks=1, attn_resolutions=(), dropout=0.0)
CLASSIFIER = functools.partial(NoisyImageClassifier, ch=32, ch_mult=(1,), num_res_blocks=1, attn_resolutions=())


def _backend(num_classes: int = 0, classifier: bool = False, **kw) -> LatentDiffusionBackend:
    torch.manual_seed(0)
    diffusion = functools.partial(DiffusionBackend, image_net=UNET, timesteps=40, classifier=classifier,
                                  image_classifier=CLASSIFIER)
    kw = {"stage1_steps": STAGE1, "autoencoder_optim": {"lr": 3e-3}, **kw}
    return LatentDiffusionBackend(SHAPE, autoencoder=AE, diffusion=diffusion, num_classes=num_classes, **kw)


def _images(n: int = 48, seed: int = 0) -> torch.Tensor:
    """Smooth uint8 8x8 images (colour ramps): easy to compress, so a few steps show progress."""
    g = torch.Generator().manual_seed(seed)
    a, b = torch.rand(n, 3, 1, 1, generator=g), torch.rand(n, 3, 1, 1, generator=g)
    ramp = torch.linspace(0, 1, 8).view(1, 1, 1, 8)
    return ((a + (b - a) * ramp).expand(n, 3, 8, 8) * 255).round().to(torch.uint8).contiguous()


X = _images()
LABELS = torch.arange(len(X)) % 3


def _cfg(steps: int):
    return OmegaConf.create({"max_steps": steps, "batch_size": 16, "grad_clip": 1.0, "ema_decay": 0.9,
                             "log_every": 1, "checkpoint_every": 1000,
                             "optim": {"_target_": "torch.optim.Adam", "lr": 1e-3}})


def _train(backend, run_dir, steps: int, labels=None) -> Trainer:
    trainer = Trainer(backend, BatchStream(X, 16, seed=0, labels=labels), _cfg(steps), run_dir)
    trainer.fit(progress=False)
    return trainer


def _rows(run_dir):
    with open(run_dir / "train_log.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A backend trained through the switch: 4 autoencoder steps, then 4 diffusion steps."""
    run = tmp_path_factory.mktemp("ldm")
    backend = _backend()
    net0 = {k: v.clone() for k, v in backend.diffusion.state_dict().items()}
    trainer = Trainer(backend, BatchStream(X, 16, seed=0), _cfg(STAGE1), run)
    trainer.fit(progress=False)
    ae_at_switch = {k: v.clone() for k, v in backend.first_stage.state_dict().items()}
    net_at_switch = {k: v.clone() for k, v in backend.diffusion.state_dict().items()}
    trainer = Trainer(backend, BatchStream(X, 16, seed=0), _cfg(2 * STAGE1), run)
    trainer.fit(progress=False)
    return {"trainer": trainer, "run": run, "net0": net0, "ae_at_switch": ae_at_switch, "net_at_switch": net_at_switch}


# ------------------------------------------------------------------ first stage and scale
def test_first_stage_reuses_the_vae_net_with_a_spatial_latent():
    b = _backend()
    assert isinstance(b.first_stage.net, ConvVAENet)
    assert b.latent_shape == (2, 4, 4) and b.downsampling_factor == 2 and b.diffusion.data_shape == (2, 4, 4)
    with pytest.raises(InputError, match="spatial latent.*latent_dim=null"):
        KLAutoencoder(SHAPE, net=functools.partial(ConvVAENet, channels=[8], latent_dim=4))


def test_reconstruction_error_is_recorded_and_finite(trained):
    backend = trained["trainer"].ema.shadow

    class PixelFeatures:  # a stand-in feature space: the flattened pixels
        def extract_tensor(self, x):
            return {"pool": x.flatten(1).double().numpy()[:, :16]}

        def describe(self):
            return {"name": "pixels", "comparable": False}

    from generative_bench.evaluation.metrics.fid import feature_frechet

    rec = backend.first_stage_report(_images(32, seed=1), batch_size=10, distance=feature_frechet(PixelFeatures()))
    assert rec["examples"] == 32 and rec["downsampling_factor"] == 2 and rec["latent_shape"] == [2, 4, 4]
    for key in ("psnr_db", "psnr_db_std", "mse_uint8", "rfd", "latent_scale"):
        assert math.isfinite(rec[key]), key
    assert rec["psnr_db"] > 5 and rec["rfd"] >= 0 and rec["rfd_features"] == "pixels"
    # a perfect reconstruction has an infinite per-image PSNR: those are left out, not averaged as inf
    assert backend.first_stage_report(_images(4), batch_size=4)["examples"] == 4


def test_latent_scale_is_estimated_at_the_switch_and_makes_latents_unit_std(trained):
    backend = trained["trainer"].backend
    assert bool(backend.scale_estimated) and float(backend.latent_scale) != 1.0
    assert float(trained["trainer"].ema.shadow.latent_scale) == float(backend.latent_scale)  # the buffer is copied
    torch.manual_seed(0)
    z = backend.encode_latents(BatchStream(X, 48, seed=0).__next__())
    assert abs(float(z.std()) - 1.0) < 0.15
    assert "estimated" in backend.describe()["latent_scale_source"]
    assert float(estimate_latent_scale(torch.randn(4000) * 3.0)) == pytest.approx(1 / 3.0, rel=0.05)
    fixed = _backend(latent_scale=0.5)
    assert bool(fixed.scale_estimated) and float(fixed.latent_scale) == 0.5
    with pytest.raises(InputError, match="latent_scale must be > 0"):
        _backend(latent_scale=0.0)


def test_the_global_step_picks_the_stage_and_stage_one_is_frozen_after(trained):
    rows = _rows(trained["run"])
    assert [int(float(r["stage"])) for r in rows] == [1] * STAGE1 + [2] * STAGE1
    for r in rows[:STAGE1]:
        assert math.isfinite(float(r["ae_loss"])) and math.isfinite(float(r["ae_psnr"])) and math.isnan(float(r["loss"]))
    for r in rows[STAGE1:]:
        assert math.isfinite(float(r["loss"])) and math.isnan(float(r["ae_loss"])) and float(r["latent_scale"]) > 0
    backend = trained["trainer"].backend
    # stage 1 leaves the denoiser alone, stage 2 leaves the autoencoder alone
    assert all(torch.equal(v, trained["net_at_switch"][k]) for k, v in trained["net0"].items())
    assert not all(torch.equal(v, backend.diffusion.state_dict()[k]) for k, v in trained["net_at_switch"].items())
    assert all(torch.equal(v, backend.first_stage.state_dict()[k]) for k, v in trained["ae_at_switch"].items())
    # the EMA model decodes with exactly the autoencoder its denoiser was trained on
    shadow = trained["trainer"].ema.shadow
    assert all(torch.equal(v, shadow.first_stage.state_dict()[k]) for k, v in backend.first_stage.state_dict().items())
    assert set(trained["trainer"].optimizers) == {"autoencoder", "model"}


# ------------------------------------------------------------------ exact resume
@pytest.mark.parametrize("stop", [2, STAGE1, STAGE1 + 1], ids=["in-stage-1", "at-the-switch", "right-after"])
def test_resume_across_the_switch_is_bit_exact(tmp_path, stop):
    torch.manual_seed(123)
    full = _train(_backend(), tmp_path / "full", 2 * STAGE1 + 1)
    torch.manual_seed(123)
    _train(_backend(), tmp_path / "cut", stop)
    torch.manual_seed(999)  # another global RNG state: the resume must restore it
    resumed = _train(_backend(), tmp_path / "cut", 2 * STAGE1 + 1)
    assert resumed.resumed_from_step == stop and resumed.step == 2 * STAGE1 + 1
    for a, b in ((full.backend.state_dict(), resumed.backend.state_dict()),
                 (full.ema.shadow.state_dict(), resumed.ema.shadow.state_dict())):
        assert a.keys() == b.keys() and "latent_scale" in a
        for k in a:
            assert torch.equal(a[k], b[k]), k
    for name, opt in full.state_dict()["optimizers"].items():
        other = resumed.state_dict()["optimizers"][name]["state"]
        for pid, st in opt["state"].items():
            for k, v in st.items():
                assert torch.equal(v, other[pid][k]) if torch.is_tensor(v) else v == other[pid][k], (name, pid, k)
    settings = full.ema.shadow.resolve_settings(method="ddim", steps=5)
    assert torch.equal(full.ema.shadow.sample(6, seed=3, **settings), resumed.ema.shadow.sample(6, seed=3, **settings))


# ------------------------------------------------------------------ sampling
def test_samples_are_uint8_images_reproducible_by_seed_for_any_batch_size(trained):
    backend = trained["trainer"].ema.shadow
    settings = backend.resolve_settings(method="ancestral", steps=5)
    assert settings["clip_denoised"] is False
    whole = backend.draw(0, 24, seed=5, settings=settings, chunk=8).images
    assert whole.dtype == torch.uint8 and whole.shape == (24, *SHAPE)
    for bs in (1, 7, 24):
        parts = SampleBatch.concat(backend.draw(s, min(24, s + bs), 5, settings, chunk=8)
                                   for s in range(0, 24, bs)).images
        assert torch.equal(parts, whole), bs
    assert torch.equal(backend.draw(13, 14, 5, settings, chunk=8).images[0], whole[13])
    assert not torch.equal(backend.draw(0, 24, seed=6, settings=settings, chunk=8).images, whole)
    # another network chunk may move the lowest float bits, never more than one grey level
    other = backend.draw(0, 24, seed=5, settings=settings, chunk=5).images
    assert (other.int() - whole.int()).abs().max() <= 1
    assert torch.equal(backend.sample(24, seed=5, batch_size=10, chunk=8, **settings), whole)


def test_every_diffusion_sampling_option_works_unchanged(trained):
    backend = trained["trainer"].ema.shadow
    for settings in ({"method": "ddim", "steps": 5, "eta": 0.5}, {"method": "ancestral", "steps": None},
                     {"method": "dpmpp_2m", "steps": "ddim_quad4"}, {"method": "heun", "steps": 3},
                     {"method": "euler_ode", "steps": 4}, {"method": "ddim", "steps": "ddim5"}):
        resolved = backend.resolve_settings(**settings)
        x = backend.sample(3, seed=0, **resolved)
        assert x.shape == (3, *SHAPE) and x.dtype == torch.uint8
        assert backend.network_evaluations(resolved) == backend.diffusion.network_evaluations(resolved)
    assert backend.network_evaluations(backend.resolve_settings(method="heun", steps=3)) == 5
    with pytest.raises(InputError, match="latents are not bounded"):
        backend.resolve_settings(clip_denoised=True)
    with pytest.raises(InputError, match="unknown sampling option"):
        backend.resolve_settings(temperature=0.5)
    with pytest.raises(InputError, match="eta"):
        backend.resolve_settings(method="heun", steps=3, eta=0.3)
    with pytest.raises(InputError, match="cfg_scale"):
        backend.sample_model_space(2, None, cfg_scale=1.0, method="ddim", steps=3)


def test_guidance_knobs_on_a_class_conditional_latent_model(tmp_path):
    backend = _backend(num_classes=3, classifier=True)
    trainer = _train(backend, tmp_path, STAGE1 + 2, labels=LABELS)
    assert set(trainer.optimizers) == {"autoencoder", "model", "classifier"}
    model = trainer.ema.shadow
    assert model.knobs() == {"classifier_scale": 0.0, "cfg_scale": 0.0}
    given = torch.tensor([2, 0, 1, 1])
    for settings in ({"cfg_scale": 1.5, "method": "ddim", "steps": 4},
                     {"classifier_scale": 2.0, "method": "ancestral", "steps": 4},
                     {"cfg_scale": 1.0, "classifier_scale": 1.0, "method": "ddim", "steps": 4, "eta": 1.0}):
        resolved = model.resolve_settings(**settings)
        x, y = model.sample(4, seed=1, labels=given, **resolved)
        assert torch.equal(y, given) and x.shape == (4, *SHAPE) and x.dtype == torch.uint8
    w0 = model.resolve_settings(method="ddim", steps=4)
    assert model.network_evaluations(model.resolve_settings(method="ddim", steps=4, cfg_scale=2.0)) == \
        2 * model.network_evaluations(w0)
    # s = 0 and w = 0 are the unguided conditional model, bit for bit
    a = model.sample(4, seed=2, labels=given, **w0)[0]
    b = model.sample(4, seed=2, labels=given, **model.resolve_settings(method="ddim", steps=4, classifier_scale=0.0))[0]
    assert torch.equal(a, b)


# ------------------------------------------------------------------ likelihood and bad inputs
def test_nll_is_not_defined_and_recorded_with_its_reason():
    from generative_bench.pipeline import nll
    from generative_bench.reporting.leaderboard import _nll_summary

    backend = _backend()
    with pytest.raises(NLLNotDefined, match="decoder is deterministic"):
        backend.nll(torch.zeros(2, *SHAPE))

    class Record:
        data: dict = {}

        def update(self, **kw):
            self.data.update(kw)

    record = Record()
    nll(OmegaConf.create({"eval": {"nll": {"enabled": True}}}), backend, record, torch.device("cpu"), {})
    assert record.data["nll"] == {"defined": False, "reason": "latent_diffusion: no bound on the data likelihood: "
                                                              "the decoder is deterministic"}
    summary = _nll_summary([{"run_dir": "r", "family": "latent_diffusion", "backend": "ldm", "nll": record.data["nll"]}])
    assert summary["nll_status"] == "undefined" and "decoder is deterministic" in summary["nll_reason"]


def test_vector_data_and_bad_settings_are_clear_errors(tmp_path):
    with pytest.raises(InputError, match="use model=ddpm"):
        LatentDiffusionBackend([2])
    with pytest.raises(InputError, match="stage1_steps"):
        _backend(stage1_steps=-1)
    with pytest.raises(InputError, match="reconstruction must be one of"):
        KLAutoencoder(SHAPE, reconstruction="lpips")
    with pytest.raises(InputError, match="class-conditional"):
        _train(_backend(num_classes=3), tmp_path, 1)


# ------------------------------------------------------------------ presets
def test_ldm_preset_composes_builds_and_validates_on_cifar(compose):
    from generative_bench.validation import validate

    cfg = compose(["model=ldm", "data=cifar10_jpeg"])
    OmegaConf.resolve(cfg)
    validate(cfg)
    backend = instantiate(cfg.model.backend)
    assert isinstance(backend, LatentDiffusionBackend) and backend.downsampling_factor == 4
    assert backend.latent_shape == (4, 8, 8) and backend.first_stage.kl_weight == pytest.approx(1e-6)
    base = OmegaConf.to_container(cfg.model.sampling)
    assert backend.resolve_settings(**base)["clip_denoised"] is False
    steps = []
    for extra in OmegaConf.to_container(cfg.model.sampling_sweep):
        backend.resolve_settings(**{**base, **extra})
        steps.append(extra.get("steps"))
    assert {10, 25, 50, None, "ddim_quad10"}.issubset(steps)
    cond = compose(["model=ldm", "data=cifar10_jpeg", "model.backend.num_classes=${data.num_classes}",
                    "model.backend.diffusion.classifier=true"])
    OmegaConf.resolve(cond)
    knobs = instantiate(cond.model.backend).knobs()
    assert knobs == {"classifier_scale": 0.0, "cfg_scale": 0.0}


def test_ldm_cifar10_preset_is_the_published_style_configuration(compose):
    cfg = compose(["model=ldm_cifar10", "data=cifar10_jpeg"])
    OmegaConf.resolve(cfg)
    b, net = cfg.model.backend, cfg.model.backend.diffusion.image_net
    assert b.autoencoder.kl_weight == pytest.approx(1e-6) and list(b.autoencoder.net.channels) == [128]
    assert net.ch == 224 and list(net.ch_mult) == [1, 2, 3, 4] and list(net.attn_resolutions) == [8, 4, 2]
    assert cfg.train.max_steps == b.stage1_steps + 500000 and cfg.train.ema_decay == pytest.approx(0.9999)
    assert cfg.model.sampling.method == "ddim" and cfg.model.sampling.steps == 200


def test_published_latent_diffusion_figures_are_declared_as_anchors():
    from generative_bench.reporting.anchors import anchors_frame
    from pathlib import Path

    from omegaconf import OmegaConf

    headline = anchors_frame({"latent_diffusion"})
    assert set(headline["Source"]) == {"Rombach et al. 2022, CVPR, Table 1"}
    assert "4.02" in set(headline["FID"]) and not headline["NLL (bits/dim)"].any()
    guided = anchors_frame({"latent_diffusion"}, guidance=True)
    assert list(guided["FID"]) == ["10.56", "3.60"] and set(guided["Source"]) == {"Rombach et al. 2022, CVPR, Table 3"}
    first = anchors_frame(first_stage=True)
    assert list(first.columns[3:5]) == ["rFID", "PSNR (dB)"] and first["rFID"].iloc[0] == "0.27"
    preset = OmegaConf.load(Path(__file__).parents[1] / "conf" / "model" / "ldm.yaml")
    assert preset.model.display_name == "latent diffusion (LDM)"  # what the record and the report call it
