"""Full-evaluation speed: our harness metrics against torchmetrics' separate metric objects.

The task: score N generated images against N reference images with FID, IS and KID (and, ours
only, precision/recall and density/coverage, which torchmetrics does not offer), starting from
uint8 images, no cache. Both sides get the same images, the same Inception weights (the real
pt_inception-2015-12-05 file when GBENCH_INCEPTION_WEIGHTS points to it, else one seeded
random-init state dict saved to a temporary file), the same metric settings (IS 10 splits, KID
``--kid-subsets`` subsets of ``--kid-subset-size``) and the same thread count, in one process.

* ours: one :class:`InceptionFeatures` pass per image set (pool_3 + spatial + logits), then the
  harness's metric functions (the declarations in ``generative_bench.evaluation.suite``: FID with
  the exact symmetric-eigh trace (the code's default) or the scipy sqrtm rule, IS, KID, P/R + D/C)
  on those features, the metric caches (reference covariance factor, k-NN radii) emptied before
  every run so that nothing is reused between repeats;
* torchmetrics: ``FrechetInceptionDistance``, ``InceptionScore`` and ``KernelInceptionDistance``,
  each with its own ``NoTrainInceptionV3`` (torch-fidelity's network), fed the reference and
  generated images with ``update`` and read with ``compute``: five Inception passes (FID real +
  fake, KID real + fake, IS fake) where ours makes two. The networks are built with
  ``antialias=False``: torchmetrics >= 1.8 defaults to an antialiased torch resize, while ours
  and torch-fidelity resize to 299 with TF-1.x bilinear arithmetic (no antialias), which is also
  what ``antialias=False`` selects - so both sides resize alike.

"Generated" images are real CIFAR-10 test images with Gaussian noise (sigma 8/255), reference
images are CIFAR-10 train images (both class-balanced, from data/cifar10-jpeg), so the metrics
have a non-trivial value to agree on. Repeats are interleaved (theirs, ours, ...) after a small
warm-up of each; medians reported.

    python experiments/bench_full_evaluation.py [--n 128] [--repeats 2] [--threads 2] [--out reports/NAME]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_features import load_images  # noqa: E402

from generative_bench.evaluation import inception as inc  # noqa: E402
from generative_bench.evaluation.metrics import fid as fid_module  # noqa: E402
from generative_bench.evaluation import weights as wts  # noqa: E402
from generative_bench.evaluation.features import InceptionFeatures  # noqa: E402
from generative_bench.evaluation.reference import with_stats  # noqa: E402
from generative_bench.evaluation.schema import MetricInputs, metric  # noqa: E402
import importlib  # noqa: E402
import generative_bench.evaluation.suite  # noqa: E402,F401
from generative_bench.io import atomic_write_json, atomic_write_text  # noqa: E402
from generative_bench.records import cpu_model_name as cpu_name  # noqa: E402

prdc_module = importlib.import_module("generative_bench.evaluation.metrics.prdc")
NOISE_SIGMA = 8 / 255


def noisy(x: torch.Tensor, sigma: float, seed: int = 0) -> torch.Tensor:
    """uint8 images plus N(0, sigma^2) noise in [0, 1] units, rounded and clamped back to uint8."""
    g = torch.Generator().manual_seed(seed)
    y = x.float() / 255 + sigma * torch.randn(x.shape, generator=g)
    return (y * 255).round().clamp(0, 255).to(torch.uint8)


def ours_full(ext: InceptionFeatures, real: torch.Tensor, fake: torch.Tensor, cfg: dict, bs: int) -> dict:
    """Everything from uint8 images: two feature passes, then FID, IS, KID, P/R, D/C (caches emptied first)."""
    fid_module.clear_cache()
    prdc_module.clear_cache()
    ref = with_stats(ext.extract_tensor(real, batch_size=bs).as_dict())
    feats = ext.extract_tensor(fake, batch_size=bs).as_dict()
    out: dict[str, float] = {}
    for name in ("fid", "is", "kid", "prdc"):
        out.update(metric(name, "features").compute(MetricInputs(cfg=cfg, features=feats, reference=ref))[0])
    return out


def torchmetrics_full(weights_path: str, real: torch.Tensor, fake: torch.Tensor, cfg: dict, bs: int) -> dict:
    """torchmetrics' three metric objects, each with its own Inception, built and fed as a user would."""
    from torchmetrics.image.fid import FrechetInceptionDistance, NoTrainInceptionV3
    from torchmetrics.image.inception import InceptionScore
    from torchmetrics.image.kid import KernelInceptionDistance

    def net(feature: str):  # antialias=False: TF-1.x bilinear resize, as ours (see the module doc)
        return NoTrainInceptionV3(name="inception-v3-compat", features_list=[feature],
                                  feature_extractor_weights_path=weights_path, antialias=False)

    fid = FrechetInceptionDistance(feature=net("2048"))
    kid = KernelInceptionDistance(feature=net("2048"), subsets=cfg["kid_subsets"], subset_size=cfg["kid_subset_size"])
    iscore = InceptionScore(feature=net("logits_unbiased"), splits=cfg["is_splits"])
    for i in range(0, len(real), bs):
        fid.update(real[i:i + bs], real=True)
        kid.update(real[i:i + bs], real=True)
    for i in range(0, len(fake), bs):
        fid.update(fake[i:i + bs], real=False)
        kid.update(fake[i:i + bs], real=False)
        iscore.update(fake[i:i + bs])
    is_mean, is_std = iscore.compute()
    kid_mean, kid_std = kid.compute()
    return {"fid": float(fid.compute()), "is_mean": float(is_mean), "is_std": float(is_std),
            "kid_mean": float(kid_mean), "kid_std": float(kid_std)}


def feature_agreement(ext: InceptionFeatures, weights_path: str, images: torch.Tensor, bs: int) -> dict:
    """Max |difference| of pool_3 features: ours vs NoTrainInceptionV3 with antialias False / True."""
    from torchmetrics.image.fid import NoTrainInceptionV3

    ours = torch.from_numpy(ext.extract_tensor(images, batch_size=bs).as_dict()["pool"]).double()
    out = {"images": len(images)}
    for antialias in (False, True):
        net = NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"],
                                 feature_extractor_weights_path=weights_path, antialias=antialias)
        with torch.inference_mode():
            theirs = torch.cat([net(images[i:i + bs]).double() for i in range(0, len(images), bs)])
        diff = (ours - theirs).abs().max().item()
        out[f"antialias_{str(antialias).lower()}"] = {"max_abs": diff, "max_rel": diff / ours.abs().max().item()}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=128, help="generated and reference images (each)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--kid-subsets", type=int, default=50)
    ap.add_argument("--kid-subset-size", type=int, default=64)
    ap.add_argument("--data", default=str(ROOT / "data" / "cifar10-jpeg"))
    ap.add_argument("--out", default=str(ROOT / "reports" / "bench_full_evaluation"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import torchmetrics

    real, source = load_images(args.n, Path(args.data) / "train")
    test, _ = load_images(args.n, Path(args.data) / "test")
    fake = noisy(test, NOISE_SIGMA)
    cfg = {"fid_method": "eigh", "is_splits": 10, "kid_subsets": args.kid_subsets,
           "kid_subset_size": args.kid_subset_size, "pr_k": 3, "dc_k": 5}
    tmp = tempfile.TemporaryDirectory()
    real_weights = os.environ.get(wts.ENV_WEIGHTS)
    if real_weights:
        ext, weights_path = InceptionFeatures(weights=real_weights), real_weights
    else:
        ext = InceptionFeatures(pretrained=False, seed=0)
        weights_path = str(Path(tmp.name) / "random_inception.pth")
        torch.save(inc.init_random_(inc.FIDInceptionV3(), seed=0).state_dict(), weights_path)

    warm = min(args.batch_size, 16, args.n)
    warm_cfg = {**cfg, "kid_subset_size": warm // 2, "kid_subsets": 2, "is_splits": 1}
    ours_full(ext, real[:warm], fake[:warm], warm_cfg, args.batch_size)
    torchmetrics_full(weights_path, real[:warm], fake[:warm], warm_cfg, args.batch_size)

    load_before = os.getloadavg()
    evaluators = {
        "torchmetrics": lambda: torchmetrics_full(weights_path, real, fake, cfg, args.batch_size),
        "ours": lambda: ours_full(ext, real, fake, cfg, args.batch_size),
        "ours (sqrtm)": lambda: ours_full(ext, real, fake, {**cfg, "fid_method": "sqrtm"}, args.batch_size),
    }
    times: dict[str, list[float]] = {k: [] for k in evaluators}
    values: dict[str, dict] = {}
    for r in range(args.repeats):
        for name, fn in evaluators.items():
            t0 = time.perf_counter()
            values[name] = fn()
            times[name].append(time.perf_counter() - t0)
            print(f"repeat {r}: {name} {times[name][-1]:.1f} s", flush=True)
    load_after = os.getloadavg()
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = med["torchmetrics"] / med["ours"]
    ratio_sqrtm = med["torchmetrics"] / med["ours (sqrtm)"]
    sqrtm_rel = abs(values["ours (sqrtm)"]["fid"] - values["ours"]["fid"]) / abs(values["ours (sqrtm)"]["fid"])
    fid_rel = abs(values["ours"]["fid"] - values["torchmetrics"]["fid"]) / abs(values["torchmetrics"]["fid"])
    feat = feature_agreement(ext, weights_path, fake[:min(64, args.n)], args.batch_size)

    desc = ext.describe()
    command = ("python experiments/bench_full_evaluation.py " + " ".join(sys.argv[1:])).strip()
    record = {"command": command, "images_each": args.n, "source": source, "generated": f"test images + N(0, ({NOISE_SIGMA:.4f})^2)",
              "threads": args.threads, "batch_size": args.batch_size, "repeats": args.repeats, "metric_settings": cfg,
              "torchmetrics_antialias": False, "seconds": times, "median_s": med,
              "ratio_torchmetrics_over_ours": ratio, "ratio_torchmetrics_over_ours_sqrtm": ratio_sqrtm,
              "fid_eigh_vs_sqrtm_relative_difference": sqrtm_rel, "values": values,
              "fid_relative_difference": fid_rel, "pool_feature_agreement": feat,
              "weights": desc["weights"], "weights_sha256": desc["weights_sha256"],
              "comparable": desc["comparable"], "torch": torch.__version__, "torchmetrics": torchmetrics.__version__,
              "cpu": cpu_name(), "loadavg_before": load_before, "loadavg_after": load_after}
    out = Path(args.out)
    atomic_write_json(out.with_suffix(".json"), record)
    o, t = values["ours"], values["torchmetrics"]
    weights_line = ("the pretrained pt_inception-2015-12-05 file" if desc["comparable"] else
                    f"{desc['weights']} (sha256 `{desc['weights_sha256'][:16]}...`), the same tensors for both: the speed "
                    "is that of the real network, but the values are NOT comparable to published figures")
    md = f"""# Full evaluation: ours vs torchmetrics (CPU)

Command: `{command}`

{args.n} generated images (CIFAR-10 test JPEGs + Gaussian noise sigma 8/255) scored against
{args.n} reference images (CIFAR-10 train JPEGs), from uint8, nothing cached; {args.threads} CPU
threads, batch {args.batch_size}, torch {torch.__version__}, torchmetrics {torchmetrics.__version__},
{cpu_name()}. Weights: {weights_line}. Settings for both: IS {cfg['is_splits']} splits, KID
{cfg['kid_subsets']} subsets of {cfg['kid_subset_size']}. Both sides resize alike: torchmetrics'
`NoTrainInceptionV3` is built with `antialias=False` (TF-1.x bilinear, as ours and torch-fidelity;
torchmetrics >= 1.8 defaults to an antialiased resize). {args.repeats} interleaved repeats after a
warm-up; medians. Our metric caches are emptied before every run (nothing reused between repeats).

| evaluator | what it computes | Inception passes | median s | all repeats (s) |
|---|---|---|---|---|
| torchmetrics (FrechetInceptionDistance + InceptionScore + KernelInceptionDistance, `antialias=False`) | FID, IS, KID | 5 | {med['torchmetrics']:.1f} | {', '.join(f'{s:.1f}' for s in times['torchmetrics'])} |
| ours, `fid_method=eigh` (InceptionFeatures + harness metrics) | FID, IS, KID, precision, recall, density, coverage (+ sFID features) | 2 | {med['ours']:.1f} | {', '.join(f'{s:.1f}' for s in times['ours'])} |
| ours, `fid_method=sqrtm` (guided-diffusion rule) | the same | 2 | {med['ours (sqrtm)']:.1f} | {', '.join(f'{s:.1f}' for s in times['ours (sqrtm)'])} |

**ours / torchmetrics (speed): {ratio:.2f}x with the exact eigh FID, {ratio_sqrtm:.2f}x with the scipy-sqrtm
rule**, while computing more metrics. `eigh` takes the trace term from symmetric eigendecompositions
(the reference covariance factor once, then one `eigvalsh`); `sqrtm` is scipy.linalg.sqrtm of the
2048x2048 product; the two FIDs here differ by {sqrtm_rel:.1e} relative.

Same resize, same features: on the first {feat['images']} generated images the pool_3 features of ours and of
torchmetrics' `antialias=False` network differ by at most {feat['antialias_false']['max_abs']:.1e} (relative
to the largest feature {feat['antialias_false']['max_rel']:.1e}); with torchmetrics' default `antialias=True`
they differ by up to {feat['antialias_true']['max_abs']:.1e} ({feat['antialias_true']['max_rel']:.1e}).

Values (one run of each): FID ours {o['fid']:.4f}, torchmetrics {t['fid']:.4f} (relative
difference {fid_rel:.1e}, absolute {abs(o['fid'] - t['fid']):.1e}: torchmetrics takes the trace term from
the eigenvalues of the non-symmetric product sigma1 sigma2 in float64, which is noisy when the covariances are
rank-deficient, as here with {args.n} samples in 2048 dimensions; fed the same features, the tests check
the agreement); IS ours {o['is_mean']:.4f} ± {o['is_std']:.4f}, torchmetrics
{t['is_mean']:.4f} ± {t['is_std']:.4f}; KID ours {o['kid_mean']:.5f} ± {o['kid_std']:.5f}, torchmetrics
{t['kid_mean']:.5f} ± {t['kid_std']:.5f}. IS splits and KID subsets are drawn by different random
generators on the two sides, so those two agree only within their spreads; the exact agreement
checks (same IS split, same KID index sets) are in tests/test_metrics_is_kid.py. Ours
also gave precision {o['precision']:.3f}, recall {o['recall']:.3f}, density {o['density']:.3f},
coverage {o['coverage']:.3f}.

Where the speed comes from: one feature pass per image set shared by every metric (torchmetrics
runs a separate network per metric object), the faster extractor of reports/bench_features.md,
and the metric kernels of reports/bench_metrics.md. Machine load average (1, 5, 15 min) before
{tuple(round(v, 2) for v in load_before)}, after {tuple(round(v, 2) for v in load_after)}: this
2-core machine is shared, so the interleaved ratio is the meaningful number.
"""
    atomic_write_text(out.with_suffix(".md"), md)
    print(md)


if __name__ == "__main__":
    main()
