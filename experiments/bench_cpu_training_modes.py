"""CPU training and sampling throughput per small preset: eager vs ``torch.compile`` vs channels_last.

For each model preset (3x32x32 random uint8 data, the preset's batch size and optimizers), the
real :class:`~generative_bench.training.trainer.Trainer` is timed three ways in one process:

* eager (the default on CPU);
* ``train.compile=true``: every network of the backend compiled with inductor (the step logic
  stays eager), timed after warm-up steps that include the compilation;
* channels_last: the networks converted to NHWC before training (the trainer does this by itself
  on CUDA only).

Semantics are checked on the same data and seed: the first step's losses of each mode against
eager's (inductor reorders float reductions, so a small difference is expected; the table gives
it). Sampling images/s of the preset's default sampler, eager vs compiled networks, comes last.
A mode is worth adopting as a CPU default only if it is faster for every preset; the script
states which. Writes reports/cpu_training_modes.{md,json}.

    OMP_NUM_THREADS=2 python experiments/bench_cpu_training_modes.py
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_device_throughput import build, train_images_per_s  # noqa: E402

from generative_bench.io import atomic_write_json, atomic_write_text  # noqa: E402
from generative_bench.records import cpu_model_name  # noqa: E402

MODES = {"eager": ({}, False), "compile": ({"compile": True}, False), "channels_last": ({}, True)}


def sample_rate(preset: str, compiled: bool, n: int) -> dict:
    torch.manual_seed(0)
    backend, cfg = build(preset)
    backend.eval()
    if compiled:
        for child in backend.children():
            child.compile()
    settings = backend.resolve_settings(**OmegaConf.to_container(cfg.model.sampling))
    backend.sample(min(n, 8), generator=torch.Generator().manual_seed(0), batch_size=n, **settings)  # warm-up/compile
    t0 = time.perf_counter()
    x = backend.sample(n, generator=torch.Generator().manual_seed(1), batch_size=n, **settings)
    wall = time.perf_counter() - t0
    return {"settings": settings, "images": n, "seconds": round(wall, 3), "images_per_s": round(n / wall, 2),
            "samples": x}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=["gan", "vae", "ddpm", "iddpm"])
    ap.add_argument("--train-steps", type=int, default=20)
    ap.add_argument("--warmup-steps", type=int, default=5)
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--out", default=str(ROOT / "reports" / "cpu_training_modes"))
    args = ap.parse_args()
    device = torch.device("cpu")
    rows, sampling = [], []
    for preset in args.models:
        base = None
        for mode, (overrides, nhwc) in MODES.items():
            t0 = time.perf_counter()
            r = train_images_per_s(preset, device, args.train_steps, args.warmup_steps, None, overrides, nhwc)
            r.pop("backend"), r.pop("cfg")
            r.update(model=preset, mode=mode, total_s=round(time.perf_counter() - t0, 1))
            if base is None:
                base = r
            r["speedup"] = round(r["images_per_s"] / base["images_per_s"], 3)
            r["first_loss_max_rel_diff"] = max(
                (abs(v - base["first_step_losses"][k]) / max(abs(base["first_step_losses"][k]), 1e-12)
                 for k, v in r["first_step_losses"].items()), default=0.0)
            rows.append(r)
            print(f"train {preset} {mode}: {r['images_per_s']} img/s ({r['speedup']}x)", flush=True)
        eager = sample_rate(preset, False, args.samples)
        compiled = sample_rate(preset, True, args.samples)
        diff = (eager.pop("samples").float() - compiled.pop("samples").float()).abs().max().item()
        sampling.append({"model": preset, "eager": eager, "compiled": compiled, "max_abs_sample_diff": diff,
                         "speedup": round(compiled["images_per_s"] / eager["images_per_s"], 3)})
        print(f"sample {preset}: eager {eager['images_per_s']}, compiled {compiled['images_per_s']} img/s", flush=True)

    adopt = {m: all(r["speedup"] > 1.05 for r in rows if r["mode"] == m) for m in ("compile", "channels_last")}
    command = ("OMP_NUM_THREADS={} python experiments/bench_cpu_training_modes.py ".format(
        os.environ.get("OMP_NUM_THREADS", "unset")) + " ".join(sys.argv[1:])).strip()
    record = {"command": command, "cpu": cpu_model_name(), "threads": torch.get_num_threads(),
              "torch": torch.__version__, "train": rows, "sampling": sampling, "faster_for_every_preset": adopt,
              "loadavg_after": os.getloadavg()}
    out = Path(args.out)
    atomic_write_json(out.with_suffix(".json"), record)
    md = [f"# CPU training modes: eager vs torch.compile vs channels_last", "", f"Command: `{command}`", "",
          f"{cpu_model_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}; random uint8 "
          f"3x32x32 data, each preset's batch size and optimizers, {args.train_steps} steps timed after "
          f"{args.warmup_steps} warm-up steps (compilation happens in the warm-up; `total s` includes it).", "",
          "| model | mode | batch | images/s | speed-up vs eager | total s | first-step loss, max rel. diff vs eager |",
          "|---|---|---|---|---|---|---|"]
    md += [f"| {r['model']} | {r['mode']} | {r['batch_size']} | {r['images_per_s']} | {r['speedup']:.2f}x | "
           f"{r['total_s']} | {r['first_loss_max_rel_diff']:.1e} |" for r in rows]
    md += ["", "Sampling (the preset's default sampler), eager vs compiled networks:", "",
           "| model | settings | eager images/s | compiled images/s | speed-up | max abs sample diff (uint8) |",
           "|---|---|---|---|---|---|"]
    md += [f"| {s['model']} | `{s['eager']['settings']}` | {s['eager']['images_per_s']} | {s['compiled']['images_per_s']} "
           f"| {s['speedup']:.2f}x | {s['max_abs_sample_diff']:.0f} |" for s in sampling]
    verdict = ", ".join(f"{m}: {'faster for every preset' if ok else 'not faster for every preset'}"
                        for m, ok in adopt.items())
    md += ["", f"Verdict: {verdict}. The recorded defaults (conf/train/default.yaml) stay `compile: false` and "
           "`channels_last` on CUDA only unless a mode is faster for every preset here; both remain options "
           "(`train.compile=true`). Load average at the end "
           f"{tuple(round(v, 2) for v in os.getloadavg())}: a shared machine, so ratios are the meaningful numbers."]
    atomic_write_text(out.with_suffix(".md"), "\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
