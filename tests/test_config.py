"""Hydra composition of the real conf/ tree: every preset composes and builds; typos fail loudly."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate
from omegaconf import OmegaConf

from generative_bench.backends.base import Backend
from generative_bench.cli.main import config_dir, hydra_args

SMALL_MODELS = ["gan", "vae", "ddpm", "iddpm", "gaussian", "flow", "pixelcnn"]
EXPERIMENTS = sorted(p.stem for p in (Path(config_dir()) / "experiment").glob("*.yaml"))


def test_default_is_the_four_backend_benchmark_on_the_ring(compose):
    cfg = compose(return_hydra_config=True)
    assert cfg.data.name == "ring8" and cfg.stage == "pipeline"
    assert str(cfg.hydra.mode) == "RunMode.MULTIRUN"
    assert cfg.hydra.sweeper.params.model == "gan,vae,ddpm,iddpm"


@pytest.mark.parametrize("data", ["ring", "grid", "cifar10_jpeg"])
@pytest.mark.parametrize("model", SMALL_MODELS)
def test_small_presets_compose_and_build(compose, model, data):
    cfg = compose([f"model={model}", f"data={data}"])
    OmegaConf.resolve(cfg)
    backend = instantiate(cfg.model.backend)
    assert isinstance(backend, Backend)
    assert list(backend.data_shape) == list(cfg.data.shape)
    assert backend.resolve_settings(**OmegaConf.to_container(cfg.model.sampling)) is not None
    for extra in cfg.model.get("sampling_sweep", []):
        backend.resolve_settings(**{**OmegaConf.to_container(cfg.model.sampling), **OmegaConf.to_container(extra)})


@pytest.mark.parametrize("data", ["cifar10_jpeg", "ring"])
def test_image_only_presets_build_on_images_and_name_the_fix_on_vectors(compose, data):
    """model=ldm (latent diffusion) needs images; on 2-D data the error names model=ddpm."""
    from generative_bench.config import instantiate as build
    from generative_bench.errors import InputError

    cfg = compose(["model=ldm", f"data={data}"])
    OmegaConf.resolve(cfg)
    if data == "ring":
        with pytest.raises(InputError, match="use model=ddpm"):
            build(cfg.model.backend)
        return
    backend = build(cfg.model.backend)
    assert isinstance(backend, Backend) and list(backend.data_shape) == list(cfg.data.shape)
    for extra in cfg.model.get("sampling_sweep", []):
        backend.resolve_settings(**{**OmegaConf.to_container(cfg.model.sampling), **OmegaConf.to_container(extra)})


def test_model_preset_sets_its_own_learning_rate_and_user_override_wins(compose):
    assert compose(["model=gaussian"]).train.optim.lr == pytest.approx(1e-2)
    assert compose(["model=gaussian", "train.optim.lr=0.5"]).train.optim.lr == pytest.approx(0.5)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiments_compose(compose, name):
    cfg = compose([f"experiment={name}"], return_hydra_config=True)
    OmegaConf.resolve(cfg.data)
    preset = OmegaConf.load(Path(config_dir()) / "experiment" / f"{name}.yaml")
    # the preset wins over the primary config's own values (its protocol, its benchmark name)
    assert cfg.protocol.name == preset.protocol.name and cfg.protocol.description
    assert cfg.benchmark_name == preset.benchmark_name
    sweep = OmegaConf.select(preset, "hydra.sweeper.params.model")
    if sweep is not None:  # e.g. cifar10_full sweeps the published configurations
        assert cfg.hydra.sweeper.params.model == sweep


def test_unknown_override_key_is_an_error(compose):
    with pytest.raises(ConfigCompositionException, match="trian"):
        compose(["trian.max_steps=5"])


def test_unknown_model_name_lists_the_choices(compose):
    with pytest.raises(Exception, match="(?s)modle.*Available options.*ddpm"):
        compose(["model=modle"])


def test_verbs_map_to_single_run_stages():
    assert hydra_args(["train", "model=vae"]) == ["stage=train", "hydra.mode=RUN", "model=vae"]
    assert hydra_args(["run", "-m", "seed=0,1"]) == ["-m", "stage=pipeline", "seed=0,1"]
    # Hydra reads its flags before the overrides: a verb with -m after an override is a sweep too
    assert hydra_args(["train", "model=a,b", "-m"]) == ["-m", "stage=train", "model=a,b"]
    assert hydra_args(["model=vae"]) == ["model=vae"]


@pytest.mark.parametrize("launcher, key", [("local_parallel", "n_jobs"), ("slurm_gpu", "gpus_per_node")])
def test_cluster_launcher_presets_compose(compose, launcher, key):
    cfg = compose([f"hydra/launcher={launcher}"], return_hydra_config=True)
    assert key in cfg.hydra.launcher and "_target_" in cfg.hydra.launcher


def test_per_model_settings_of_a_preset_apply_to_their_model_only(compose):
    """conf/per_model/<experiment>/<model>.yaml is composed by Hydra for that model of the preset only."""
    from generative_bench.errors import InputError
    from generative_bench.validation import validate

    for model, steps, timesteps in (("ddpm", 25, 100), ("iddpm", 50, 100)):
        cfg = compose(["experiment=cifar_cpu_hour", f"model={model}"])
        OmegaConf.resolve(cfg)
        assert cfg.model.sampling.steps == steps and cfg.model.nll.timesteps == timesteps
        assert cfg.eval.features.asset == "cifar10_resnet" and "sfid" not in cfg.eval.metrics
    gan = compose(["experiment=cifar_cpu_hour", "model=gan"])
    assert OmegaConf.to_container(gan.model.sampling) == {}
    assert OmegaConf.to_container(compose(["model=ddpm"]).model.sampling)["steps"] == 50  # no preset: the model's own
    # a shared sweep is one file: both diffusion families of the guidance preset read it
    sweeps = [OmegaConf.to_container(compose(["experiment=guidance_ring", f"model={m}"]).model.sampling_sweep)
              for m in ("ddpm", "iddpm")]
    assert sweeps[0] == sweeps[1] and {"classifier_scale": 2.0} in sweeps[0]
    assert OmegaConf.to_container(compose(["model=ddpm"]).model.sampling_sweep) == \
        OmegaConf.to_container(compose(["model=ldm", "data=cifar10_jpeg"]).model.sampling_sweep)
    old = compose(["model=ddpm", "+per_model={ddpm: {model: {sampling: {steps: 5}}}}"])
    OmegaConf.resolve(old)
    with pytest.raises(InputError, match="per_model is no longer read.*conf/per_model/<experiment>/<model>.yaml"):
        validate(old)


def _sweep_models(cfg) -> list[str]:
    return [m.strip() for m in str(cfg.hydra.sweeper.params.model).split(",")]


def _job(compose, preset: str, model: str):
    """The resolved config one job of ``preset``'s sweep runs with (its per-model file composed)."""
    cfg = compose([f"experiment={preset}", f"model={model}"])
    OmegaConf.resolve(cfg)
    return cfg


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_model_of_every_preset_validates(compose, name):
    """Each (preset, model) job of a preset's sweep passes the up-front checks (which also build the
    untrained backend and check its sampling options), so no preset fails after training."""
    from generative_bench.validation import validate

    for model in _sweep_models(compose([f"experiment={name}"], return_hydra_config=True)):
        validate(_job(compose, name, model))


def test_guidance_presets_make_every_family_conditional_with_its_knob(compose):
    knobs = {"gan": "truncation", "vae": "temperature", "ddpm": "classifier_scale", "iddpm": "cfg_scale"}
    for name, classes in (("guidance_ring", 8), ("guidance_cifar_cpu", 10)):
        for model, knob in knobs.items():
            cfg = _job(compose, name, model)
            assert cfg.model.backend.num_classes == classes
            assert any(knob in s for s in cfg.model.sampling_sweep), (name, model)
            if model in ("ddpm", "iddpm"):
                assert cfg.model.backend.classifier is True


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_wall_clock_presets_run_one_job_at_a_time(compose, name):
    """A preset with a wall-clock training budget must not share the CPU between its jobs (that would
    change every job's number of steps); step-budget sweeps run one job per core."""
    import os

    cfg = compose([f"experiment={name}"], return_hydra_config=True)
    jobs = cfg.hydra.launcher.n_jobs
    if cfg.train.get("max_minutes"):
        assert jobs == 1, f"{name}: wall-clock budget but {jobs} jobs at a time"
    elif name == "guidance_ring":
        assert jobs == len(os.sched_getaffinity(0))


def test_ring_all_families_is_the_default_benchmark_plus_the_exact_likelihood_families(compose):
    """Same data, budget and metrics as the default `gbench`, with the flow and the MADE added (every
    job's up-front checks: test_every_model_of_every_preset_validates)."""
    default = compose(return_hydra_config=True)
    cfg = compose(["experiment=ring_all_families"], return_hydra_config=True)
    assert _sweep_models(cfg) == _sweep_models(default) + ["flow", "pixelcnn"]
    assert cfg.data.name == default.data.name and cfg.train.max_steps == default.train.max_steps
    assert cfg.eval.num_samples == default.eval.num_samples


def test_new_families_cifar_cpu_runs_the_three_new_image_families_one_at_a_time(compose):
    cfg = compose(["experiment=new_families_cifar_cpu"], return_hydra_config=True)
    assert _sweep_models(cfg) == ["ldm", "flow", "pixelcnn"] and cfg.hydra.launcher.n_jobs == 1
    assert cfg.data.name.startswith("cifar10") and cfg.eval.features.asset == "cifar10_resnet"
    budgets = {}
    for model in _sweep_models(cfg):
        job = _job(compose, "new_families_cifar_cpu", model)
        budgets[model] = (job.train.max_steps, job.eval.num_samples)
    # latent diffusion trains past its first stage; the PixelCNN draws few (sequential) samples
    assert budgets["ldm"][0] > 600 and budgets["pixelcnn"] == (150, 16) and budgets["flow"] == (600, 200)
