"""Training-step speed of the DDPM CIFAR-10 UNet against diffusers' UNet2DModel built the same way.

Both networks get the configuration of Ho et al. (2020) for CIFAR-10 (ch 128, mult 1,2,2,2, two
residual blocks per level, single-head attention at 16x16, dropout 0.1; 35.7M parameters each) and
run the same step in the same process: forward on a noisy batch, MSE against the noise, backward,
Adam. Repeats are interleaved (ours, theirs, ours, ...) so machine load affects both alike; the
median is reported. Writes reports/diffusion_unet_vs_diffusers.{md,json}.

    python experiments/bench_unet_vs_diffusers.py [--batch 8] [--repeats 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from generative_bench.backends.nets.unet import UNet  # noqa: E402
from generative_bench.records import cpu_model_name  # noqa: E402


def ours(channels_last: bool = False) -> torch.nn.Module:
    return UNet(in_channels=3, out_channels=3, image_size=32, ch=128, ch_mult=(1, 2, 2, 2), num_res_blocks=2,
                attn_resolutions=(16,), num_heads=1, dropout=0.1, channels_last=channels_last)


def theirs() -> torch.nn.Module:
    from diffusers import UNet2DModel

    return UNet2DModel(sample_size=32, in_channels=3, out_channels=3, block_out_channels=(128, 256, 256, 256),
                       layers_per_block=2, down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"), dropout=0.1,
                       attention_head_dim=None, flip_sin_to_cos=False, freq_shift=1, norm_num_groups=32)


def make_step(net: torch.nn.Module, x: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, is_diffusers: bool):
    opt = torch.optim.Adam(net.parameters(), lr=2e-4)
    net.train()

    def step() -> float:
        t0 = time.perf_counter()
        out = net(x, t).sample if is_diffusers else net(x, t.float())
        loss = torch.nn.functional.mse_loss(out, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return time.perf_counter() - t0

    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "reports"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import diffusers

    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 3, 32, 32, generator=g)
    noise = torch.randn(args.batch, 3, 32, 32, generator=g)
    t = torch.randint(0, 1000, (args.batch,), generator=g)
    nets = {"ours": ours(), "ours_channels_last": ours(channels_last=True), "diffusers": theirs()}
    params = {k: sum(p.numel() for p in n.parameters()) for k, n in nets.items()}
    assert len(set(params.values())) == 1, f"the networks differ in size: {params}"
    steps = {k: make_step(n, x, t, noise, k == "diffusers") for k, n in nets.items()}
    load_before = os.getloadavg()
    for s in steps.values():  # warm-up (allocator, oneDNN primitive caches)
        s()
    times: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(args.repeats):
        for k, s in steps.items():
            times[k].append(s())
    load_after = os.getloadavg()
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "command": "python experiments/bench_unet_vs_diffusers.py " + " ".join(sys.argv[1:]),
        "what": "one training step (forward + MSE + backward + Adam) of the DDPM CIFAR-10 UNet, 32x32",
        "batch": args.batch, "repeats": args.repeats, "threads": args.threads, "parameters": params,
        "median_s": med, "all_s": times,
        "ratio_ours_over_diffusers": med["ours"] / med["diffusers"],
        "ratio_ours_channels_last_over_diffusers": med["ours_channels_last"] / med["diffusers"],
        "torch": torch.__version__, "diffusers": diffusers.__version__, "python": platform.python_version(),
        "cpu": cpu_model_name(), "loadavg_before": load_before, "loadavg_after": load_after,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "diffusion_unet_vs_diffusers.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "diffusion_unet_vs_diffusers.md").write_text(_markdown(result))
    print(_markdown(result))




def _markdown(r: dict) -> str:
    rows = "\n".join(f"| {k} | {r['parameters'][k]:,} | {r['median_s'][k]:.3f} | "
                     f"{r['median_s'][k] / r['median_s']['diffusers']:.3f} | "
                     f"{', '.join(f'{v:.2f}' for v in r['all_s'][k])} |" for k in r["median_s"])
    return f"""# DDPM CIFAR-10 UNet: training-step time vs diffusers UNet2DModel

Command: `{r['command']}`

{r['what']}; batch {r['batch']}, median of {r['repeats']} interleaved repeats after one warm-up step,
{r['threads']} CPU threads ({r['cpu']}), torch {r['torch']}, diffusers {r['diffusers']}. Both networks have
the same configuration and parameter count; ratio < 1 means ours is faster.

| network | parameters | median s/step | ratio vs diffusers | all repeats (s) |
|---|---|---|---|---|
{rows}

**ours / diffusers = {r['ratio_ours_over_diffusers']:.3f}** (channels_last variant: {r['ratio_ours_channels_last_over_diffusers']:.3f}).

Machine load average (1, 5, 15 min) before {tuple(round(v, 2) for v in r['loadavg_before'])}, after
{tuple(round(v, 2) for v in r['loadavg_after'])}: the machine is shared, so absolute times are noisy; the
interleaved repeats make the ratio the meaningful figure. On a shared machine use `--threads 1`: OpenMP
threads spin-wait whenever another process holds a core, which made 2 threads many times slower than 1 here.
"""


if __name__ == "__main__":
    main()
