"""Sample quality against network evaluations (NFE) for every diffusion solver on the 8-mode ring.

    .venv/bin/python experiments/solvers_quality_vs_nfe.py                  # train ddpm + iddpm, 2,000 steps each
    .venv/bin/python experiments/solvers_quality_vs_nfe.py --run ddpm=runs/ddpm-ring8-s0_<key> --models ddpm

Trains the default benchmark presets ``model=ddpm`` and ``model=iddpm`` on ``data=ring`` with the
generic Trainer for the config's ``train.max_steps`` (2,000; exactly the Hydra configuration a
user gets, plus ``--set`` overrides), or loads the EMA weights of a run folder given with
``--run MODEL=DIR`` (pass the overrides it was trained with). Every solver of the backend then
draws ``--samples`` points with per-image seeds at several step counts:

* ancestral (Ho et al. 2020) and DDIM (eta = 0; Song et al. 2021) on uniform respacing and on
  DDIM's quadratic spacing (``ddim_quadN``);
* DPM-Solver++ (2M) (Lu et al. 2022) on uniform and quadratic spacing;
* Heun and Euler on the probability-flow ODE over the Karras et al. (2022) rho = 7 grid.

Scores are the toy metrics of the benchmark (modes captured, high-quality share within 3 std,
reverse KL over the modes, k-NN precision / recall against held-out points) and the wall time
per image (one torch thread, batches of ``--samples`` drawn in chunks of 32). The reference curve
is the same sampler with the exact Bayes-optimal denoiser of the ring (closed-form E[eps | x_t]
on the preset's schedule), i.e. the quality each solver reaches with a perfect network. Also
reported: the NLL of held-out points by the variational bound and by the probability-flow ODE
(exact divergence, RK4) for each trained model and for the exact denoiser, against the exact data
NLL.

Writes reports/solvers_ring.md (tables and the exact command), reports/solvers_ring.png (high-quality
share against NFE, wall time per image against NFE) and reports/solvers_ring.json.
"""

from __future__ import annotations

import argparse
import json
import math
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

from generative_bench.backends.diffusion import DiffusionBackend, GaussianDiffusion, make_betas  # noqa: E402
from generative_bench.backends.diffusion.ode import sigma_of_timestep  # noqa: E402
from generative_bench.data.loading import BatchStream, load_split  # noqa: E402
from generative_bench.evaluation.toy_metrics import toy_metrics  # noqa: E402
from generative_bench.io import atomic_write_text  # noqa: E402
from generative_bench.training.trainer import Trainer  # noqa: E402

#: (curve label, method, steps specs); one line of the figure each
CURVES = [
    ("ancestral", "ancestral", [10, 20, 50, 100]),
    ("DDIM uniform", "ddim", [10, 20, 50]),
    ("DDIM quadratic", "ddim", ["ddim_quad10", "ddim_quad20", "ddim_quad50"]),
    ("DPM-Solver++ 2M uniform", "dpmpp_2m", [10, 20, 50]),
    ("DPM-Solver++ 2M quadratic", "dpmpp_2m", ["ddim_quad10", "ddim_quad20", "ddim_quad50"]),
    ("Heun (Karras grid)", "heun", [5, 10, 25]),
    ("Euler ODE (Karras grid)", "euler_ode", [10, 20, 50]),
]
COLUMNS = ["toy_modes", "toy_high_quality", "toy_reverse_kl", "toy_precision", "toy_recall"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["ddpm", "iddpm"])
    p.add_argument("--run", nargs="*", default=[], help="MODEL=DIR: load this run folder instead of training")
    p.add_argument("--steps", type=int, default=None, help="training steps (default: the config's train.max_steps)")
    p.add_argument("--samples", type=int, default=1000, help="points drawn per setting (and held-out points scored)")
    p.add_argument("--nll-examples", type=int, default=500, help="held-out points for the NLL comparison")
    p.add_argument("--ode-steps", type=int, default=100, help="RK4 steps of the ODE likelihood")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (small MLPs run fastest on one)")
    p.add_argument("--set", nargs="*", default=[], dest="overrides", help="extra Hydra overrides")
    p.add_argument("--out", default=str(ROOT / "reports"))
    return p.parse_args(argv)


def compose_cfg(model: str, seed: int, steps: int | None, overrides: list[str], checkpoint: str | None = None):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base=None):
        extra = [f"train.max_steps={steps}"] if steps else []
        extra += [f"checkpoint={checkpoint}"] if checkpoint else []
        return compose("config", overrides=[f"model={model}", "data=ring", f"seed={seed}", *extra, *overrides])


class ExactRingDenoiser(torch.nn.Module):
    """Bayes-optimal eps of the isotropic ring mixture at the (fractional) model time of the
    process: E[x_0 | x_t] in closed form (the PF-ODE of this denoiser is the true one)."""

    def __init__(self, dim, out_dim, means, std, schedule, timesteps, rescale=True):
        super().__init__()
        self.process = GaussianDiffusion(make_betas(schedule, timesteps))
        self.register_buffer("means", means.double().clone())
        self.std = float(std)
        self.scale = 1000.0 / timesteps if rescale else 1.0

    def forward(self, x, t):
        sigma = sigma_of_timestep(self.process, t.double() / self.scale)[:, None]
        ab = 1.0 / (1.0 + sigma ** 2)
        xd = x.double()
        var = ab * self.std ** 2 + 1 - ab
        centred = xd[:, None, :] - ab.sqrt()[:, None] * self.means[None]
        w = torch.softmax(-0.5 * centred.pow(2).sum(-1) / var, dim=1)
        post = self.means[None] + (self.std ** 2 * ab.sqrt() / var)[:, None] * centred
        x0 = (w[:, :, None] * post).sum(1)
        return ((xd - ab.sqrt() * x0) / (1 - ab).sqrt()).to(x.dtype)


def exact_backend(cfg, mixture, data_min, data_max) -> DiffusionBackend:
    """The preset's schedule with the exact denoiser (learned-range variance -> fixed-small: the
    oracle predicts eps only)."""
    b = cfg.model.backend
    variance = "fixed_small" if b.variance == "learned_range" else str(b.variance)
    net = lambda dim, out_dim: ExactRingDenoiser(dim, out_dim, mixture.means, mixture.std, str(b.schedule),  # noqa: E731
                                                 int(b.timesteps), bool(b.rescale_timesteps))
    out = DiffusionBackend([2], vector_net=net, timesteps=int(b.timesteps), schedule=str(b.schedule),
                           variance=variance, rescale_timesteps=bool(b.rescale_timesteps))
    out.data_min.copy_(data_min)
    out.data_max.copy_(data_max)
    return out.eval()


def train_or_load(args, model: str, runs: dict[str, str]):
    cfg = compose_cfg(model, args.seed, args.steps, args.overrides, runs.get(model))
    train = load_split(cfg.data, "train")
    t0 = time.perf_counter()
    if model in runs:
        from generative_bench.pipeline import load_trained

        backend = load_trained(cfg, Path(runs[model]), torch.device("cpu"))
        info = {"loaded": runs[model]}
    else:
        torch.manual_seed(args.seed)
        backend = instantiate(cfg.model.backend)
        stream = BatchStream(train.x, int(cfg.train.batch_size), seed=args.seed)
        with tempfile.TemporaryDirectory() as run_dir:
            tcfg = cfg.train.copy()
            tcfg.checkpoint_every = int(tcfg.max_steps) + 1
            trainer = Trainer(backend, stream, tcfg, run_dir)
            summary = trainer.fit(progress=False)
            backend = trainer.ema.shadow.eval()
        info = {"trained_steps": int(summary.steps), "last_losses": summary.last_losses}
    info["wall_s"] = round(time.perf_counter() - t0, 1)
    return cfg, train.source, backend, info


def evaluate(backend, mixture, reference, n: int, seed: int) -> list[dict]:
    rows = []
    for label, method, specs in CURVES:
        for spec in specs:
            settings = backend.resolve_settings(method=method, steps=spec)
            nfe = backend.network_evaluations(settings)
            t0 = time.perf_counter()
            x = backend.sample(n, seed=seed, batch_size=n, **settings)
            wall = time.perf_counter() - t0
            m = toy_metrics(x, mixture, reference=reference)
            rows.append({"curve": label, "method": method, "steps": spec, "nfe": nfe,
                         "ms_per_image": 1000.0 * wall / n, **{k: m[k] for k in COLUMNS}})
            print(f"  {label:26s} steps={str(spec):12s} NFE {nfe:4d}  modes {m['toy_modes']:.0f}  "
                  f"hq {m['toy_high_quality']:.3f}  {1000 * wall / n:.3f} ms/image", flush=True)
    return rows


def likelihoods(backend, points: torch.Tensor, ode_steps: int, seed: int) -> dict:
    out = {}
    for name, kw in (("vlb", {}), ("ode", {"method": "ode", "ode_steps": ode_steps})):
        t0 = time.perf_counter()
        res = backend.nll(points, generator=torch.Generator().manual_seed(seed), **kw)
        bpd = res.bpd.double()
        out[name] = {"bpd": float(bpd.mean()), "sem": float(bpd.std() / math.sqrt(len(bpd))), "bound": res.bound,
                     "wall_s": round(time.perf_counter() - t0, 1)}
    return out


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(results)
    fig, axes = plt.subplots(1, len(models) + 1, figsize=(5.4 * (len(models) + 1), 4.4), squeeze=False)
    colors = {label: f"C{i}" for i, (label, _, _) in enumerate(CURVES)}
    for ax, model in zip(axes[0], models):
        for which, style, alpha in (("exact", "--", 0.55), ("trained", "-o", 1.0)):
            for label, _, _ in CURVES:
                rows = sorted((r for r in results[model][which] if r["curve"] == label), key=lambda r: r["nfe"])
                ax.plot([r["nfe"] for r in rows], [r["toy_high_quality"] for r in rows], style, ms=4,
                        color=colors[label], alpha=alpha, label=label if which == "trained" else None)
        ax.set_xscale("log")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("network evaluations per image (NFE)")
        ax.set_ylabel("high-quality share (within 3 std of a mode)")
        ax.set_title(f"{model} on ring8 (solid: trained, {results[model]['train'].get('trained_steps', 'loaded')} "
                     "steps;\ndashed: exact denoiser on the same schedule)", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    ax = axes[0][-1]
    for model, marker in zip(models, "os^v"):
        rows = sorted(results[model]["trained"], key=lambda r: r["nfe"])
        ax.plot([r["nfe"] for r in rows], [r["ms_per_image"] for r in rows], marker, ms=4, label=model, alpha=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("network evaluations per image (NFE)")
    ax.set_ylabel("wall time per image (ms, 1 CPU thread)")
    ax.set_title("sampling cost (trained MLP denoisers)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _load() -> str:
    try:
        import os

        return ", ".join(f"{v:.1f}" for v in os.getloadavg())
    except (OSError, AttributeError):
        return "unknown"


def _fmt(v, spec="{:.3f}"):
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else spec.format(v)


def write_report(args, results: dict, wall: float, cpu: float, out: Path, argv: list[str], load: str) -> None:
    cmd = "OMP_NUM_THREADS=1 .venv/bin/python experiments/solvers_quality_vs_nfe.py" + \
        ("" if not argv else " " + " ".join(shlex.quote(a) for a in argv))
    lines = ["# Diffusion solvers on the ring: quality against NFE", "",
             f"Command: `{cmd}`", "",
             f"CPU time: {cpu / 60:.1f} min (process time: training, sampling, NLL, figure) on {args.threads} torch "
             f"thread(s); wall time {wall / 60:.1f} min on a shared machine (load average {load} at the end). "
             f"{args.samples} samples per setting drawn with per-image seeds (set seed {args.seed}); wall times per "
             "image below are from the same shared machine, so compare them with each other, not across machines.",
             "",
             "![quality vs NFE](solvers_ring.png)", "",
             "Every solver runs through `DiffusionBackend.sample(n, method=..., steps=...)`; NFE is "
             "`network_evaluations(settings)` (the denoiser calls per image: one per step for ancestral, DDIM and "
             "DPM-Solver++ (2M), 2N - 1 for Heun and N for Euler on the N-level Karras grid). "
             "`ddim_quadN` is DDIM's quadratic spacing (N = 50 merges the repeated first step: 49 steps). "
             "High quality: within 3 standard deviations (0.03) of a mode; a mode is captured with at least 0.8 % of "
             "the samples there. The exact denoiser is the closed-form E[eps | x_t] of the mixture on the preset's "
             "schedule (for improved DDPM with the fixed-small variance, since it predicts eps only), so its row is "
             "the quality the solver itself allows.", ""]
    lines += ["## Best at a budget", "", "| model | denoiser | NFE <= 10 | NFE <= 20 |", "|---|---|---|---|"]
    for model, r in results.items():
        for who in ("trained", "exact"):
            cells = []
            for budget in (10, 20):
                rows = [row for row in r[who] if row["nfe"] <= budget]
                best = max(rows, key=lambda row: row["toy_high_quality"])
                cells.append(f"{best['curve']} `{best['steps']}`: {best['toy_high_quality']:.3f} "
                             f"({best['toy_modes']:.0f} modes)")
            lines.append(f"| {model} | {'trained' if who == 'trained' else 'exact'} | {cells[0]} | {cells[1]} |")
    lines.append("")
    for model, r in results.items():
        tr = r["train"]
        how = f"loaded from `{tr['loaded']}`" if "loaded" in tr else f"trained {tr['trained_steps']} steps"
        lines += [f"## {model} ({how}, {tr['wall_s']} s)", "",
                  "| solver | steps | NFE | modes | high quality | reverse KL | precision | recall | ms / image "
                  "| exact: modes | exact: high quality |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for row, ex in zip(r["trained"], r["exact"]):
            lines.append(f"| {row['curve']} | `{row['steps']}` | {row['nfe']} | {row['toy_modes']:.0f} | "
                         f"{row['toy_high_quality']:.3f} | {_fmt(row['toy_reverse_kl'])} | {row['toy_precision']:.3f} | "
                         f"{row['toy_recall']:.3f} | {row['ms_per_image']:.3f} | {ex['toy_modes']:.0f} | "
                         f"{ex['toy_high_quality']:.3f} |")
        lines.append("")
    lines += ["## Likelihoods of held-out points (bits/dim)", "",
              f"{args.nll_examples} test points; the exact data NLL (mixture `log_prob`) is the floor. The variational "
              "bound is an upper bound of the model's NLL; the probability-flow ODE likelihood is the exact density "
              "of the model's deterministic flow (a different model of the same network), so it may lie on either "
              "side of the bound.", "",
              "| model | exact data NLL | variational bound | PF-ODE likelihood | ODE wall time (s) |",
              "|---|---:|---:|---:|---:|"]
    for model, r in results.items():
        for who in ("trained", "exact"):
            nll = r[f"nll_{who}"]
            lines.append(f"| {model} ({'trained' if who == 'trained' else 'exact denoiser'}) | {r['floor']:.3f} | "
                         f"{nll['vlb']['bpd']:.3f} ± {nll['vlb']['sem']:.3f} | {nll['ode']['bpd']:.3f} ± "
                         f"{nll['ode']['sem']:.3f} | {nll['ode']['wall_s']} |")
    lines.append("")
    for model, r in results.items():
        lines += [f"{model}, ODE: {r['nll_trained']['ode']['bound']}.", "",
                  f"{model}, bound: {r['nll_trained']['vlb']['bound']}.", ""]
    atomic_write_text(out / "solvers_ring.md", "\n".join(lines))


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    runs = dict(item.split("=", 1) for item in args.run)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0, c0 = time.perf_counter(), time.process_time()
    results = {}
    for model in args.models:
        print(f"[{model}]", flush=True)
        cfg, mixture, backend, info = train_or_load(args, model, runs)
        test = load_split(cfg.data, "test", subset=args.samples)
        exact = exact_backend(cfg, mixture, backend.data_min, backend.data_max)
        print(" trained:", flush=True)
        trained_rows = evaluate(backend, mixture, test.x, args.samples, args.seed)
        print(" exact denoiser:", flush=True)
        exact_rows = evaluate(exact, mixture, test.x, args.samples, args.seed)
        points = test.x[:args.nll_examples]
        floor = float(mixture.nll_bits_per_dim(points).mean())
        results[model] = {"train": info, "trained": trained_rows, "exact": exact_rows, "floor": floor,
                          "nll_trained": likelihoods(backend, points, args.ode_steps, args.seed),
                          "nll_exact": likelihoods(exact, points, args.ode_steps, args.seed)}
        print(f" NLL floor {floor:.3f}; trained vlb {results[model]['nll_trained']['vlb']['bpd']:.3f} "
              f"ode {results[model]['nll_trained']['ode']['bpd']:.3f}; exact vlb "
              f"{results[model]['nll_exact']['vlb']['bpd']:.3f} ode {results[model]['nll_exact']['ode']['bpd']:.3f}",
              flush=True)
    plot(results, out / "solvers_ring.png")
    wall, cpu, load = time.perf_counter() - t0, time.process_time() - c0, _load()
    write_report(args, results, wall, cpu, out, argv, load)
    atomic_write_text(out / "solvers_ring.json", json.dumps({"args": vars(args), "wall_s": round(wall, 1),
                                                             "cpu_s": round(cpu, 1), "load_average": load,
                                                             "results": results}, indent=1, default=str))
    print(f"wrote {out / 'solvers_ring.md'} ({wall / 60:.1f} min)")


if __name__ == "__main__":
    main()
