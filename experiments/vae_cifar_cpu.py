"""Time the small VAE preset on CIFAR-10 32x32 and train it for a fixed wall-clock budget.

Writes reports/vae_cifar_cpu.{json,md,png}: seconds per training step at batch 64, and the
test-subset negative ELBO and IWAE bound (bits/dim) after ``--minutes`` of training on a
class-balanced CIFAR-10 subset, plus test images, reconstructions and samples at several
temperatures (decoder means).

    python experiments/vae_cifar_cpu.py --root data/cifar10-jpeg --train-subset 5000 --minutes 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch.utils.data import Subset

from generative_bench.data.codec import to_model_space
from generative_bench.data.images import ImageFolderImages
from generative_bench.data.loading import BatchStream, _stack
from generative_bench.data.subsets import class_balanced_indices
from generative_bench.io import atomic_write_json, atomic_write_text
from generative_bench.training.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]


def load_subset(root: str, split: str, n: int) -> torch.Tensor:
    src = ImageFolderImages(root, split)
    idx = class_balanced_indices(src.labels, n, 0)
    return _stack(Subset(src, idx.tolist()))[0]


def build_backend(preset: str, overrides: list[str]):
    cfg = OmegaConf.load(REPO / "conf" / "model" / f"{preset}.yaml")
    cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(["data.shape=[3,32,32]", *overrides]))
    return instantiate(cfg.model.backend), cfg


def time_steps(preset: str, overrides: list[str], x: torch.Tensor, batch_size: int, steps: int, threads: int) -> float:
    """Median seconds per training step (forward, backward, Adam) of a fresh backend at ``threads``."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        backend, _ = build_backend(preset, overrides)
        opt = torch.optim.Adam(backend.parameters(), 1e-3)
        batch = to_model_space(x[:batch_size])
        times = []
        for _ in range(steps + 1):
            t0 = time.perf_counter()
            mean, log_var = backend.net.encode(batch)
            z = mean + torch.exp(0.5 * log_var) * torch.randn_like(mean)
            loss = -backend._log_lik(batch, backend.net.decode(z)).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            times.append(time.perf_counter() - t0)
        return float(np.median(times[1:]))
    finally:
        torch.set_num_threads(before)


TEMPERATURES = (1.0, 0.7, 0.4)


def save_panels(panels: dict[str, torch.Tensor], path: Path, nrow: int = 8) -> None:
    """One PNG: a titled grid of uint8 NCHW images per panel, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from torchvision.utils import make_grid

    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.6))
    for ax, (title, x) in zip(axes, panels.items()):
        ax.imshow(make_grid(x, nrow=nrow, padding=1).permute(1, 2, 0).numpy())
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@torch.no_grad()
def reconstructions(model, x_uint8: torch.Tensor) -> torch.Tensor:
    """Decoder means at the posterior means of ``x_uint8`` (what the latent keeps of an image)."""
    mean, _ = model.net.encode(to_model_space(x_uint8))
    params = model.net.decode(mean)
    return ((model.likelihood.mean(params, x_uint8.shape[1]) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default="data/cifar10-jpeg")
    ap.add_argument("--preset", default="vae")
    ap.add_argument("--train-subset", type=int, default=5000)
    ap.add_argument("--test-subset", type=int, default=500)
    ap.add_argument("--minutes", type=float, default=2.0)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--iwae-k", type=int, default=64)
    ap.add_argument("--iwae-examples", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="torch threads for the run (default: torch's own)")
    ap.add_argument("--time-steps", type=int, default=10, help="steps timed at 1 and 2 threads before the run")
    ap.add_argument("--out", default="reports/vae_cifar_cpu")
    ap.add_argument("overrides", nargs="*", help="dotlist overrides of the preset, e.g. model.backend.decode=sample")
    args = ap.parse_args(argv)
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()

    x_train = load_subset(args.root, "train", args.train_subset)
    x_test = load_subset(args.root, "test", args.test_subset)
    backend, cfg = build_backend(args.preset, args.overrides)
    timing = {n: time_steps(args.preset, args.overrides, x_train, args.batch_size, args.time_steps, n)
              for n in (1, 2)} if args.time_steps else {}
    torch.manual_seed(args.seed)
    lr = float(OmegaConf.select(cfg, "train.optim.lr", default=1e-3))
    train_cfg = {"max_minutes": args.minutes, "batch_size": args.batch_size,
                 "optim": {"_target_": "torch.optim.Adam", "lr": lr}, "grad_clip": 1.0,
                 "ema_decay": 0.999, "log_every": 25, "checkpoint_every": 10**9, "amp": "off"}
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(backend, BatchStream(x_train, args.batch_size, seed=args.seed, hflip=True), train_cfg, run_dir)
        summary = trainer.fit(progress=False)
        log = (Path(run_dir) / "train_log.csv").read_text()
    step_s = summary.wall_s / summary.steps
    load_after = os.getloadavg()

    results = {}
    for name, model in [("raw", trainer.backend), ("ema", trainer.ema.shadow)]:
        xt = to_model_space(x_test)
        t0 = time.perf_counter()
        elbo = model.nll(xt, torch.Generator().manual_seed(1), k=1).terms["elbo_bpd"]
        iw = model.nll(xt[:args.iwae_examples], torch.Generator().manual_seed(2), k=args.iwae_k)
        results[name] = {"test_elbo_bpd": float(elbo.mean()), f"test_iwae{args.iwae_k}_bpd": float(iw.bpd.mean()),
                         f"test_elbo_bpd_first{args.iwae_examples}": float(iw.terms["elbo_bpd"].mean()),
                         "eval_s": round(time.perf_counter() - t0, 1)}
    ema = trainer.ema.shadow
    shown = x_test[torch.linspace(0, len(x_test) - 1, 32).long()]  # the subset is sorted by class: span it
    panels = {"test images": shown, "reconstructions (EMA)": reconstructions(ema, shown)}
    for t in TEMPERATURES:
        panels[f"samples T={t}"] = ema.sample(32, generator=torch.Generator().manual_seed(args.seed), temperature=t)
    out = REPO / args.out if not Path(args.out).is_absolute() else Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_panels(panels, out.with_suffix(".png"), nrow=4)
    record = {
        "command": " ".join(["python experiments/vae_cifar_cpu.py", *map(shlex.quote, sys.argv[1:] if argv is None else argv)]),
        "preset": args.preset, "overrides": args.overrides, "backend": backend.describe(),
        "train_subset": args.train_subset, "test_subset": args.test_subset, "batch_size": args.batch_size,
        "lr": lr, "minutes": args.minutes, "timed_seconds_per_step_by_threads": timing, "steps": summary.steps, "seconds_per_step": round(step_s, 4),
        "images_per_s": round(args.batch_size / step_s, 1), "train": {"last": summary.last_losses},
        "eval": results, "nll_bound": trainer.backend.nll_bound_name(args.iwae_k),
        "threads": torch.get_num_threads(), "load_average_1min": {"before": round(load_before[0], 2),
                                                                   "after_training": round(load_after[0], 2)}, "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
        "samples_png": str(out.with_suffix(".png").relative_to(REPO)) if out.is_relative_to(REPO) else str(out),
    }
    atomic_write_json(out.with_suffix(".json"), record)
    md = [f"# VAE small preset on CIFAR-10 ({args.train_subset}-image train subset, CPU)", "",
          f"Command: `{record['command']}`", "",
          f"- {summary.steps} steps in {summary.wall_s:.0f} s: **{step_s:.3f} s/step** at batch {args.batch_size} "
          f"({torch.get_num_threads()} thread(s), torch {torch.__version__}; 1-min load average "
          f"{load_before[0]:.1f} before / {load_after[0]:.1f} after training on this shared machine)",
          *[f"- timed separately ({args.time_steps} steps, median): {t:.3f} s/step with {n} thread(s)"
            for n, t in timing.items()],
          f"- parameters: {record['backend']['parameters']:,}; latent {record['backend']['latent_shape']}; "
          f"{record['backend']['likelihood']}", "",
          f"| weights | test -ELBO bpd ({args.test_subset} img, k=1) | IWAE k={args.iwae_k} bpd ({args.iwae_examples} img) "
          f"| -ELBO bpd same {args.iwae_examples} img |", "|---|---|---|---|"]
    for name, r in results.items():
        md.append(f"| {name} | {r['test_elbo_bpd']:.3f} | {r[f'test_iwae{args.iwae_k}_bpd']:.3f} | "
                  f"{r[f'test_elbo_bpd_first{args.iwae_examples}']:.3f} |")
    md += ["", f"All three columns are upper bounds on the test NLL: {record['nll_bound']}; -ELBO = reconstruction "
           "(mean over the samples) + analytic KL. EMA decay 0.999 with warm-up."]
    md += ["", f"Figure `{record['samples_png']}`: 32 test images, their reconstructions (decoder mean at the "
           f"posterior mean), and samples (EMA weights, decoder mean) at prior temperatures "
           f"{', '.join(map(str, TEMPERATURES))}.", "",
           "Training log (bits/dim):", "", "```", log.strip(), "```", ""]
    atomic_write_text(out.with_suffix(".md"), "\n".join(md))
    print(json.dumps({k: record[k] for k in ("steps", "seconds_per_step", "eval")}, indent=1))


if __name__ == "__main__":
    main()
