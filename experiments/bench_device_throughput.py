"""Throughput on one device: training images/s per backend, sampling images/s, feature images/s.

For each model preset (conf/model/<name>.yaml, data shape 3x32x32): training images/s through
the real :class:`~generative_bench.training.trainer.Trainer` (the preset's optimizers, EMA,
gradient clipping, AMP/channels_last as ``train`` configures them on that device) after warm-up
steps; sampling images/s of each configured sampler setting (diffusion: all T ancestral steps
vs respaced ancestral and DDIM); then feature-extraction images/s of the Inception network
(the real weights when GBENCH_INCEPTION_WEIGHTS is set, else random init: same speed) and of
the shipped domain extractor. Inputs are uniform random uint8 images: throughput does not
depend on content. CUDA timings synchronise before reading the clock.

    python experiments/bench_device_throughput.py --device cuda            # on a GPU
    python experiments/bench_device_throughput.py --device cpu --quick     # CPU, small counts

Writes reports/device_throughput_<device kind>.{md,json} (``--out`` to change).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from generative_bench.data.loading import BatchStream  # noqa: E402
from generative_bench.io import atomic_write_json, atomic_write_text  # noqa: E402
from generative_bench.records import cpu_model_name  # noqa: E402
from generative_bench.training.trainer import Trainer  # noqa: E402

DIFFUSION_SAMPLERS = ({"method": "ancestral", "steps": None}, {"method": "ancestral", "steps": 50},
                      {"method": "ddim", "steps": 50})


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_model_name()}, {torch.get_num_threads()} threads"


def build(preset: str):
    cfg = OmegaConf.merge(OmegaConf.create({"train": OmegaConf.load(ROOT / "conf" / "train" / "default.yaml")}),
                          OmegaConf.load(ROOT / "conf" / "model" / f"{preset}.yaml"),
                          OmegaConf.create({"data": {"shape": [3, 32, 32]}}))
    OmegaConf.resolve(cfg)
    return instantiate(cfg.model.backend), cfg


def train_images_per_s(preset: str, device: torch.device, steps: int, warmup: int, batch_size: int | None,
                       train_overrides: dict | None = None, channels_last: bool = False) -> dict:
    """Training images/s of ``preset`` through the real Trainer; ``train_overrides`` (e.g.
    ``{"compile": True}``) are merged into its ``train`` settings; ``channels_last`` converts the
    networks to NHWC first (the trainer itself does that on CUDA only)."""
    torch.manual_seed(0)
    backend, cfg = build(preset)
    if channels_last:
        backend = backend.to(memory_format=torch.channels_last)
    bs = int(batch_size or cfg.train.batch_size)
    x = torch.randint(0, 256, (max(4 * bs, 256), 3, 32, 32), dtype=torch.uint8,
                      generator=torch.Generator().manual_seed(0))
    train_cfg = OmegaConf.merge(cfg.train, {"max_steps": warmup + steps, "max_minutes": None, "max_images": None,
                                            "batch_size": bs, "log_every": 1, "checkpoint_every": 10**9,
                                            "resume": False}, train_overrides or {})
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(backend.to(device), BatchStream(x, bs, seed=0, device=device), train_cfg, run_dir, device)
        trainer.fit(progress=False)  # logs every step: its float losses synchronise CUDA each step
        log = pd.read_csv(Path(run_dir) / "train_log.csv")
    # time from the end of warm-up step `warmup` to the end of the last step
    t = log.set_index("step")["wall_s"]
    wall = float(t.loc[warmup + steps] - t.loc[warmup])
    first_losses = {c: float(log[c].iloc[0]) for c in log.columns if "loss" in c}
    return {"batch_size": bs, "steps_timed": steps, "seconds": round(wall, 3), "first_step_losses": first_losses,
            "images_per_s": round(steps * bs / wall, 1), "parameters": backend.describe().get("parameters"),
            "amp": str(train_cfg.amp), "backend": backend, "cfg": cfg}


def sample_images_per_s(backend, cfg, device: torch.device, n: int, batch_size: int) -> list[dict]:
    family = backend.describe().get("family")
    settings_list = DIFFUSION_SAMPLERS if family == "diffusion" else ({},)
    out = []
    backend.eval()
    for extra in settings_list:
        settings = backend.resolve_settings(**{**OmegaConf.to_container(cfg.model.sampling), **extra})
        g = torch.Generator(device=device).manual_seed(0)
        backend.sample(min(n, batch_size), generator=g, batch_size=batch_size, **settings)  # warm-up
        sync(device)
        t0 = time.perf_counter()
        backend.sample(n, generator=g, batch_size=batch_size, **settings)
        sync(device)
        wall = time.perf_counter() - t0
        out.append({"settings": settings, "images": n, "seconds": round(wall, 3), "images_per_s": round(n / wall, 2)})
    return out


def feature_images_per_s(device: torch.device, n: int, batch_size: int) -> list[dict]:
    import os

    from generative_bench.evaluation import weights as wts
    from generative_bench.evaluation.domain.extractor import DomainFeatures
    from generative_bench.evaluation.features import InceptionFeatures

    x = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8)
    real = os.environ.get(wts.ENV_WEIGHTS)
    extractors = {"inception-v3 (pool_3 + spatial + logits)":
                  InceptionFeatures(weights=real, device=device) if real else
                  InceptionFeatures(pretrained=False, seed=0, device=device),
                  "cifar10-resnet (domain)": DomainFeatures(asset="cifar10_resnet", device=device)}
    out = []
    for name, ext in extractors.items():
        ext.extract_tensor(x[:batch_size], batch_size=batch_size)
        sync(device)
        t0 = time.perf_counter()
        ext.extract_tensor(x, batch_size=batch_size)
        sync(device)
        wall = time.perf_counter() - t0
        out.append({"extractor": name, "images": n, "batch_size": batch_size, "seconds": round(wall, 3),
                    "images_per_s": round(n / wall, 1), "weights": ext.describe().get("weights") or ext.describe().get("name")})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--models", nargs="+", default=["gan", "vae", "ddpm", "iddpm"],
                    help="model presets, e.g. sngan_cifar10 ddpm_cifar10 for the published configurations")
    ap.add_argument("--train-steps", type=int, default=50)
    ap.add_argument("--warmup-steps", type=int, default=10)
    ap.add_argument("--train-batch-size", type=int, default=None, help="default: the preset's")
    ap.add_argument("--samples", type=int, default=256)
    ap.add_argument("--sample-batch-size", type=int, default=256)
    ap.add_argument("--features", type=int, default=2048)
    ap.add_argument("--feature-batch-size", type=int, default=256)
    ap.add_argument("--quick", action="store_true", help="small counts for a CPU check")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.quick:
        args.train_steps, args.warmup_steps, args.samples, args.features = 3, 1, 4, 16
        args.sample_batch_size = args.feature_batch_size = 4
    device = torch.device(args.device)
    torch.manual_seed(0)
    rows, sampling = [], []
    for preset in args.models:
        t = train_images_per_s(preset, device, args.train_steps, args.warmup_steps, args.train_batch_size)
        backend, cfg = t.pop("backend"), t.pop("cfg")
        rows.append({"model": preset, **t})
        print(f"train {preset}: {t['images_per_s']} img/s", flush=True)
        for s in sample_images_per_s(backend, cfg, device, args.samples, args.sample_batch_size):
            sampling.append({"model": preset, **s})
            print(f"sample {preset} {s['settings']}: {s['images_per_s']} img/s", flush=True)
        del backend
    features = feature_images_per_s(device, args.features, args.feature_batch_size)
    command = "python experiments/bench_device_throughput.py " + " ".join(sys.argv[1:])
    record = {"command": command.strip(), "device": device_name(device), "torch": torch.__version__,
              "train": rows, "sampling": sampling, "features": features}
    out = Path(args.out or ROOT / "reports" / f"device_throughput_{device.type}")
    atomic_write_json(out.with_suffix(".json"), record)
    md = [f"# Throughput on {record['device']}", "", f"Command: `{record['command']}`  ", f"torch {torch.__version__}; "
          "random uint8 inputs (throughput does not depend on content); CUDA timings synchronised.", "",
          "## Training", "", "| model | parameters | batch | AMP | steps timed | images/s |", "|---|---|---|---|---|---|"]
    md += [f"| {r['model']} | {r['parameters']:,} | {r['batch_size']} | {r['amp']} | {r['steps_timed']} | {r['images_per_s']} |"
           for r in rows]
    md += ["", "## Sampling", "", "| model | settings | images | images/s |", "|---|---|---|---|"]
    md += [f"| {s['model']} | {json.dumps(s['settings'])} | {s['images']} | {s['images_per_s']} |" for s in sampling]
    md += ["", "## Feature extraction", "", "| extractor | weights | batch | images | images/s |", "|---|---|---|---|---|"]
    md += [f"| {f['extractor']} | {f['weights']} | {f['batch_size']} | {f['images']} | {f['images_per_s']} |"
           for f in features]
    atomic_write_text(out.with_suffix(".md"), "\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
