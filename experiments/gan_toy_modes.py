"""Mode coverage of the GAN on the 2-D ring (8 modes) and grid (25 modes): is there mode collapse?

    .venv/bin/python experiments/gan_toy_modes.py                     # model=gan, 2,000 steps each
    .venv/bin/python experiments/gan_toy_modes.py --datasets ring --set model.backend.vector_overrides.r1_gamma=0 --tag no_r1

Trains ``model=<model>`` (its MLP generator/discriminator pair) on ``data=ring`` and ``data=grid``
with the generic Trainer, using exactly the Hydra configuration a user gets (plus ``--set``
overrides). Training runs in ``--chunks`` pieces that resume from the checkpoint (same LR
schedule), and after every piece ``--samples`` points from the online and the EMA generator are
scored with the toy metrics (modes captured, high-quality share, reverse KL, k-NN precision /
recall) against held-out points of the mixture, so collapse shows up when it happens. The true
mixture scored the same way is the reference row.

Writes reports/gan_toy_modes.png (samples over the true modes; modes captured over training) and
reports/gan_toy_modes.md (tables and the exact command).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.utils import instantiate  # noqa: E402

from generative_bench.data.loading import BatchStream, load_split  # noqa: E402
from generative_bench.evaluation.toy_metrics import mode_statistics, toy_metrics  # noqa: E402
from generative_bench.io import atomic_write_text  # noqa: E402
from generative_bench.training.trainer import Trainer  # noqa: E402

COLUMNS = ["toy_modes", "toy_high_quality", "toy_reverse_kl", "toy_precision", "toy_recall"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="gan")
    p.add_argument("--datasets", nargs="+", default=["ring", "grid"])
    p.add_argument("--steps", type=int, default=None, help="training steps (default: the config's train.max_steps)")
    p.add_argument("--chunks", type=int, default=8, help="evaluations during training")
    p.add_argument("--samples", type=int, default=2500, help="generated and held-out points scored (PacGAN: 2,500)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (small MLPs run fastest on one)")
    p.add_argument("--set", nargs="*", default=[], dest="overrides", help="extra Hydra overrides")
    p.add_argument("--out", default=str(ROOT / "reports"))
    p.add_argument("--tag", default="", help="suffix of the output names: gan_toy_modes_<tag>.md/.png")
    return p.parse_args(argv)


def compose_cfg(model: str, data: str, seed: int, steps: int | None, overrides: list[str]):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base=None):
        extra = [f"train.max_steps={steps}"] if steps else []
        return compose("config", overrides=[f"model={model}", f"data={data}", f"seed={seed}", *extra, *overrides])


def score(backend, mixture, reference, n: int, seed: int) -> dict:
    x = backend.sample(n, torch.Generator().manual_seed(seed + 1), batch_size=n)
    out = toy_metrics(x, mixture, reference=reference)
    out["counts"] = mode_statistics(x, mixture)["counts"]
    return {"x": x, **out}


def run_dataset(args, data: str) -> dict:
    cfg = compose_cfg(args.model, data, args.seed, args.steps, args.overrides)
    train = load_split(cfg.data, "train")
    test = load_split(cfg.data, "test", subset=args.samples)
    mixture = train.source
    torch.manual_seed(args.seed)
    total = int(cfg.train.max_steps)
    per_step = int(cfg.train.batch_size) * int(cfg.model.backend.get("n_dis", 1))
    history, t0 = [], time.perf_counter()
    with tempfile.TemporaryDirectory() as run_dir:
        for c in range(1, args.chunks + 1):
            step = round(total * c / args.chunks)
            backend = instantiate(cfg.model.backend)
            stream = BatchStream(train.x, int(cfg.train.batch_size), seed=args.seed)
            # stop by images so the LR schedule (linear decay to train.max_steps) is the full run's
            tcfg = cfg.train.copy()
            tcfg.max_images = step * per_step
            tcfg.checkpoint_every = total + 1
            trainer = Trainer(backend, stream, tcfg, run_dir)
            summary = trainer.fit(progress=False)
            online = score(trainer.backend, mixture, test.x, args.samples, args.seed)
            ema = score(trainer.ema.shadow, mixture, test.x, args.samples, args.seed)
            history.append({"step": trainer.step, "online": online, "ema": ema, "losses": summary.last_losses})
            print(f"[{data}] step {trainer.step:5d}  online modes {online['toy_modes']:.0f} hq {online['toy_high_quality']:.3f}"
                  f"  ema modes {ema['toy_modes']:.0f} hq {ema['toy_high_quality']:.3f}  {summary.last_losses}", flush=True)
    wall = time.perf_counter() - t0
    truth = score_truth(mixture, test.x, args.samples, args.seed)
    return {"cfg": cfg, "mixture": mixture, "history": history, "truth": truth, "wall_s": wall,
            "describe": backend.describe()}


def score_truth(mixture, reference, n: int, seed: int) -> dict:
    x = mixture.sample(n, torch.Generator().manual_seed(seed + 10_000))
    return {"x": x, **toy_metrics(x, mixture, reference=reference), "counts": mode_statistics(x, mixture)["counts"]}


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(results), 3, figsize=(13, 4.2 * len(results)), squeeze=False)
    for row, (name, r) in zip(axes, results.items()):
        mu, s = r["mixture"].means.numpy(), r["mixture"].std
        last = r["history"][-1]
        for ax, which in zip(row[:2], ("ema", "online")):
            x = last[which]["x"].numpy()
            ax.scatter(x[:, 0], x[:, 1], s=2, alpha=0.35, color="tab:blue")
            for m in mu:
                ax.add_patch(plt.Circle(m, 3 * s, fill=False, color="tab:red", lw=0.8))
            ax.scatter(mu[:, 0], mu[:, 1], marker="+", s=20, lw=0.6, color="tab:red")
            pad = 0.6 if name.startswith("ring") else 1.2
            ax.set_xlim(mu[:, 0].min() - pad, mu[:, 0].max() + pad)
            ax.set_ylim(mu[:, 1].min() - pad, mu[:, 1].max() + pad)
            ax.set_aspect("equal")
            m = last[which]
            ax.set_title(f"{name}: {which} G, step {last['step']}\nmodes {m['toy_modes']:.0f}/{len(mu)}, "
                         f"high quality {m['toy_high_quality']:.2f}, rev. KL {m['toy_reverse_kl']:.3f}\n"
                         "blue: generated; red: true modes, 3-std circles", fontsize=9)
        ax = row[2]
        steps = [h["step"] for h in r["history"]]
        for which, style in (("ema", "-o"), ("online", "--s")):
            ax.plot(steps, [h[which]["toy_modes"] for h in r["history"]], style, label=f"modes captured ({which})")
        ax.axhline(len(mu), color="gray", lw=0.8, ls=":")
        ax.set_xlabel("training step")
        ax.set_ylabel("modes captured")
        ax.set_ylim(0, len(mu) + 1)
        ax2 = ax.twinx()
        ax2.plot(steps, [h["ema"]["toy_high_quality"] for h in r["history"]], "-^", color="tab:green", label="high quality (ema)")
        ax2.set_ylim(0, 1.05)
        ax2.set_ylabel("high-quality share")
        ax.legend(loc="lower left", fontsize=7)
        ax2.legend(loc="lower right", fontsize=7)
        ax.set_title(f"{name}: modes captured during training", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _row(label: str, m: dict, k: int) -> str:
    return (f"| {label} | {m['toy_modes']:.0f} / {k} | {m['toy_high_quality']:.3f} | {m['toy_reverse_kl']:.4f} | "
            f"{m['toy_precision']:.3f} | {m['toy_recall']:.3f} |")


def report(args, results: dict, command: str, png: Path) -> str:
    lines = ["# GAN on the 2-D toy mixtures: modes captured", "", f"Command: `{command}`", "",
             f"Generated by `experiments/gan_toy_modes.py` on {time.strftime('%Y-%m-%d')} (CPU, "
             f"{args.threads} torch thread(s)). Figure: [{png.name}]({png.name}).", "",
             f"Metrics on {args.samples} generated points against {args.samples} held-out points "
             "(generative_bench/evaluation/toy_metrics.py): a point is *high quality* within 3 std "
             "(Mahalanobis) of its nearest mode; a mode is *captured* with at least 20/2500 of the points "
             "(PacGAN's rule); reverse KL is KL(high-quality mode histogram || uniform); precision/recall "
             "use k-NN balls (k=3) in data space. Samples come from the EMA generator (what the benchmark "
             "evaluates) and the online one.", "",
             "Reading the numbers: *modes captured* counts high-quality points only, so a generator that "
             "spreads over the support without concentrating on the modes (low high-quality share, high "
             "recall) also scores few modes; mode collapse proper shows as few modes with a high-quality "
             "share near 1 and low recall.", ""]
    for name, r in results.items():
        cfg, k, d = r["cfg"], len(r["mixture"].means), r["describe"]
        lines += [f"## {name} ({k} modes, std {r['mixture'].std})", "",
                  f"model={args.model}: {d['generator']} ({d['generator_parameters']:,} params, z_dim {d['z_dim']}) vs "
                  f"{d['discriminator']} ({d['discriminator_parameters']:,}); loss {d['loss']}, n_dis {d['n_dis']}, "
                  f"r1_gamma {d['r1_gamma']}, optimizer overrides G {d['g_optim']} D {d['d_optim']}; "
                  f"train: {cfg.train.max_steps} steps, batch {cfg.train.batch_size}, lr_decay {cfg.train.lr_decay}, "
                  f"ema_decay {cfg.train.ema_decay}. Wall time {r['wall_s']:.0f} s (training + evaluations).", "",
                  "| samples | modes captured | high quality | reverse KL | precision | recall |",
                  "|---|---|---|---|---|---|"]
        last = r["history"][-1]
        lines += [_row(f"EMA generator, step {last['step']}", last["ema"], k),
                  _row(f"online generator, step {last['step']}", last["online"], k),
                  _row("true mixture (reference)", r["truth"], k), "",
                  f"Exact NLL of held-out data under the true density (floor): "
                  f"{r['truth']['data_nll_floor_bpd']:.4f} bits/dim.", "",
                  "High-quality points per mode (EMA, last step): " + ", ".join(map(str, last["ema"]["counts"])), "",
                  "Over training (modes captured / high-quality share):", "",
                  "| step | EMA modes | EMA high quality | online modes | online high quality | d_loss | g_loss | d_acc |",
                  "|---|---|---|---|---|---|---|---|"]
        for h in r["history"]:
            loss = h["losses"]
            lines.append(f"| {h['step']} | {h['ema']['toy_modes']:.0f} | {h['ema']['toy_high_quality']:.3f} | "
                         f"{h['online']['toy_modes']:.0f} | {h['online']['toy_high_quality']:.3f} | "
                         f"{loss.get('d_loss', float('nan')):.3f} | {loss.get('g_loss', float('nan')):.3f} | "
                         f"{loss.get('d_acc', float('nan')):.2f} |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    command = "python experiments/gan_toy_modes.py " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    results = {}
    for data in args.datasets:
        r = run_dataset(args, data)
        results[r["mixture"].name] = r
    out = Path(args.out)
    stem = "gan_toy_modes" + (f"_{args.tag}" if args.tag else "")
    png = out / f"{stem}.png"
    plot(results, png)
    md = report(args, results, command.strip(), png)
    atomic_write_text(out / f"{stem}.md", md + "\n")
    print(md)


if __name__ == "__main__":
    main()
