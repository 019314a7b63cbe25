"""Sampling speed of the diffusion backend: 1000-step ancestral DDPM vs 50-step DDIM (and 50-step
respaced ancestral) on the same small model, through the public ``backend.sample`` interface.

The model is the small ``ddpm`` preset's UNet for CIFAR-sized images (weights untrained: speed does
not depend on them). Each setting is timed end to end (noise, every network call, uint8 conversion)
and compared with (number of network evaluations) x (median time of one network forward at the same
batch), so the sampler's own overhead is visible. Writes reports/diffusion_sampling_speed.{md,json}.

    python experiments/bench_diffusion_sampling.py [--batch 8] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def build(model: str):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[f"model={model}", "data=cifar10"])
    OmegaConf.resolve(cfg)
    torch.manual_seed(0)
    return instantiate(cfg.model.backend).eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="ddpm")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3, help="repeats of the short samplers (1000-step: once)")
    ap.add_argument("--out", default=str(ROOT / "reports"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    backend = build(args.model)
    n = args.batch
    x = torch.randn(n, *backend.data_shape)
    t = torch.randint(0, 1000, (n,)).float()

    def forward_time() -> float:
        with torch.inference_mode():
            return statistics.median(_timed(lambda: backend.net(x, t)) for _ in range(10))

    forward_time()  # warm-up
    settings = {
        "ancestral, 1000 steps (DDPM)": ({"method": "ancestral", "steps": None}, 1),
        "DDIM, 50 steps, eta=0": ({"method": "ddim", "steps": 50, "eta": 0.0}, args.repeats),
        "ancestral, 50 steps (respaced)": ({"method": "ancestral", "steps": 50}, args.repeats),
    }
    load_before = os.getloadavg()
    rows = []
    for name, (s, reps) in settings.items():
        nfe = backend.respaced(s["steps"]).num_timesteps
        g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
        fwd = forward_time()  # measured next to each setting: the machine's load drifts
        secs = statistics.median(_timed(lambda: backend.sample(n, generator=g(), batch_size=n, **s)) for _ in range(reps))
        rows.append({"sampler": name, "settings": backend.resolve_settings(**s), "nfe": nfe, "repeats": reps,
                     "seconds": secs, "images_per_s": n / secs, "forward_s": fwd, "network_only_s": nfe * fwd,
                     "sampler_overhead": secs / (nfe * fwd) - 1.0})
    base = rows[0]["seconds"]
    for r in rows:
        r["speedup_vs_1000_step"] = base / r["seconds"]
    result = {"command": "python experiments/bench_diffusion_sampling.py " + " ".join(sys.argv[1:]),
              "model": args.model, "parameters": sum(p.numel() for p in backend.parameters()), "batch": n,
              "threads": args.threads, "rows": rows, "torch": torch.__version__,
              "loadavg_before": load_before, "loadavg_after": os.getloadavg()}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "diffusion_sampling_speed.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "diffusion_sampling_speed.md").write_text(_markdown(result))
    print(_markdown(result))


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _markdown(r: dict) -> str:
    rows = "\n".join(f"| {x['sampler']} | {x['nfe']} | {x['seconds']:.2f} | {x['images_per_s']:.3f} | "
                     f"{x['speedup_vs_1000_step']:.1f}x | {1000 * x['forward_s']:.1f} | {100 * x['sampler_overhead']:+.1f}% |" for x in r["rows"])
    return f"""# Diffusion sampling speed: 1000-step ancestral vs 50-step DDIM

Command: `{r['command']}`

Model: the `{r['model']}` preset's image UNet ({r['parameters']:,} parameters, untrained weights), 3x32x32,
batch {r['batch']}, {r['threads']} CPU threads, torch {r['torch']}; end-to-end `backend.sample` calls (noise,
all network evaluations, uint8 conversion), median of the stated repeats. "Overhead" compares the
sampler's time with NFE x one network forward at the same batch (median of 10, timed just before each
setting); values within a few percent of zero, either sign, mean the sampler's own work is too small to
measure here.

| sampler | network evaluations | seconds / batch | images / s | speed-up | forward (ms) | overhead vs network |
|---|---|---|---|---|---|---|
{rows}

Load average before {tuple(round(v, 2) for v in r['loadavg_before'])}, after
{tuple(round(v, 2) for v in r['loadavg_after'])} (shared machine: absolute times are noisy). On a shared
machine use `--threads 1`: OpenMP threads spin-wait whenever another process holds a core, which made
2 threads many times slower than 1 here.
"""


if __name__ == "__main__":
    main()
