"""Sanity of a domain feature space: do FD / KD / CS / P-R-D-C behave like FID & co?

    .venv/bin/python experiments/domain_feature_sanity.py            # shipped cifar10_resnet
    .venv/bin/python experiments/domain_feature_sanity.py --weights RUN/cifar10_resnet.pt --n 5000

On real CIFAR-10 (the JPEG copy, data=cifar10_jpeg) it measures, with the project's metric
functions on the extractor's float32 features:

1. FD between a class-balanced train subset and a test subset (should be small),
2. FD / KD as the test images are degraded by Gaussian noise of growing sigma and Gaussian blur of
   growing radius (should grow monotonically),
3. mode dropping: "samples" = train images from only 10, 8, 5, 2, 1 classes against the test
   subset (recall and coverage should fall, precision stay high),
4. the classifier score (the Inception-Score formula on the classifier's logits) of the real test
   set against its upper bound, the number of classes (10 splits after torch-fidelity's seeded
   shuffle: the sets here are sorted by class, and class-pure splits would score ~1).

Writes reports/domain_features_sanity.{md,json,png} with the command that produced them.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from generative_bench.data.loading import load_split  # noqa: E402
from generative_bench.data.subsets import class_balanced_indices  # noqa: E402
from generative_bench.evaluation import metrics as M  # noqa: E402
from generative_bench.evaluation.domain.extractor import DomainFeatures  # noqa: E402
from generative_bench.evaluation.domain.naming import metric_label  # noqa: E402
from generative_bench.io import atomic_write_json, atomic_write_text  # noqa: E402

NOISE_SIGMAS = (0, 4, 8, 16, 32, 64)          # uint8 units (of 255)
BLUR_RADII = (0, 0.5, 1.0, 1.5, 2.0, 3.0)     # Gaussian sigma in pixels
KEEP_CLASSES = (10, 8, 5, 2, 1)


def data_cfg(root: Path) -> dict:
    return {"name": "cifar10-jpeg", "source": {"_target_": "generative_bench.data.images.ImageFolderImages",
                                               "root": str(root), "name": "cifar10-jpeg",
                                               "variant": "JPEG q75 re-encoding of CIFAR-10"}}


def add_noise(x: torch.Tensor, sigma: float, seed: int) -> torch.Tensor:
    if sigma == 0:
        return x
    g = torch.Generator().manual_seed(seed)
    return (x.float() + sigma * torch.randn(x.shape, generator=g)).round().clamp(0, 255).to(torch.uint8)


def blur(x: torch.Tensor, radius: float) -> torch.Tensor:
    from torchvision.transforms.functional import gaussian_blur

    if radius == 0:
        return x
    k = 2 * math.ceil(3 * radius) + 1
    return gaussian_blur(x.float(), [k, k], [radius, radius]).round().clamp(0, 255).to(torch.uint8)


def scores(ref: dict, feats, seed: int = 0) -> dict[str, float]:
    """FD, KD (100 subsets of 1000), P/R (k=3, <=), D/C (k=5, <), CS (10 splits) of ``feats`` vs ``ref``."""
    out = {"fd": M.fid_from_features(ref["pool"], feats["pool"])}
    kd = M.kernel_inception_distance(feats["pool"], ref["pool"], subsets=100, subset_size=1000, seed=seed)
    out.update(kd_mean=kd.mean, kd_std=kd.std)
    out.update(M.prdc(ref["pool"], feats["pool"], pr_k=3, dc_k=5))
    cs = M.inception_score(feats["logits"], splits=10)  # canonical order: sets are sorted by class
    out.update(cs_mean=cs.mean, cs_std=cs.std)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default=None, help="a trained extractor .pt (default: the shipped cifar10_resnet)")
    ap.add_argument("--data", default=str(ROOT / "data" / "cifar10-jpeg"))
    ap.add_argument("--n", type=int, default=5000, help="images per set")
    ap.add_argument("--out", default=str(ROOT / "reports" / "domain_features_sanity"))
    args = ap.parse_args(argv)
    t_start = time.perf_counter()
    torch.manual_seed(0)
    ext = DomainFeatures(weights=args.weights) if args.weights else DomainFeatures(asset="cifar10_resnet")
    desc = ext.describe()
    n = args.n

    def feats_of(x):
        return ext.extract((x[i:i + 500] for i in range(0, len(x), 500)), total=len(x), progress=False)

    train = load_split(data_cfg(Path(args.data)), "train", progress=True)
    test = load_split(data_cfg(Path(args.data)), "test", subset=n)
    k = int(train.labels.max()) + 1
    train_idx = class_balanced_indices(train.labels, n, seed=1)
    t0 = time.perf_counter()
    f_test = feats_of(test.x)
    t_feat = (time.perf_counter() - t0) / len(test.x)
    f_train = feats_of(train.x[torch.from_numpy(train_idx)])
    ref_train = {"pool": f_train["pool"]}
    ref_test = {"pool": f_test["pool"]}
    rows: dict[str, list[dict]] = {"baseline": [], "noise": [], "blur": [], "classes": []}

    base = scores(ref_train, f_test)
    base["cs_train"] = M.inception_score(f_train["logits"], splits=10).mean
    base["accuracy_test_subset"] = float((f_test["logits"].argmax(1) == test.labels).mean())
    rows["baseline"].append({"comparison": f"train subset ({n}) vs test subset ({n})", **base})
    print("baseline", {k_: round(v, 4) for k_, v in base.items()})
    for s in NOISE_SIGMAS:
        r = scores(ref_train, feats_of(add_noise(test.x, s, seed=int(s))))
        rows["noise"].append({"sigma": s, **r})
        print("noise", s, round(r["fd"], 3))
    for rad in BLUR_RADII:
        r = scores(ref_train, feats_of(blur(test.x, rad)))
        rows["blur"].append({"radius": rad, **r})
        print("blur", rad, round(r["fd"], 3))
    rng = np.random.default_rng(2)
    for keep in KEEP_CLASSES:
        kept = np.arange(keep)
        pool = np.flatnonzero(np.isin(train.labels, kept))
        idx = np.sort(np.concatenate([rng.permutation(np.flatnonzero(train.labels == c))[:n // keep + (i < n % keep)]
                                      for i, c in enumerate(kept)]))
        assert len(idx) == n and np.isin(idx, pool).all()
        r = scores(ref_test, feats_of(train.x[torch.from_numpy(idx)]))
        rows["classes"].append({"classes_kept": keep, **r})
        print("classes", keep, {k_: round(v, 3) for k_, v in r.items()})

    fd_noise = [r["fd"] for r in rows["noise"]]
    fd_blur = [r["fd"] for r in rows["blur"]]
    recall = [r["recall"] for r in rows["classes"]]
    checks = {
        "fd_monotone_in_noise": bool(all(b > a for a, b in zip(fd_noise, fd_noise[1:]))),
        "fd_monotone_in_blur": bool(all(b > a for a, b in zip(fd_blur, fd_blur[1:]))),
        "recall_falls_with_fewer_classes": bool(all(b < a for a, b in zip(recall, recall[1:]))),
        "precision_min_when_dropping_classes": float(min(r["precision"] for r in rows["classes"])),
        "cs_test_over_upper_bound": base["cs_mean"] / k,
    }
    command = "OMP_NUM_THREADS=1 .venv/bin/python experiments/domain_feature_sanity.py" + (
        f" --weights {args.weights}" if args.weights else "") + (f" --n {n}" if n != 5000 else "")
    result = {"command": command, "extractor": desc, "images_per_set": n, "rows": rows, "checks": checks,
              "feature_ms_per_image": round(1000 * t_feat, 3), "wall_s": round(time.perf_counter() - t_start, 1),
              "torch": torch.__version__, "threads": torch.get_num_threads()}
    out = Path(args.out)
    atomic_write_json(out.with_suffix(".json"), result)
    atomic_write_text(out.with_suffix(".md"), render_markdown(result, k))
    plot(result, out.with_suffix(".png"))
    print(json.dumps(checks, indent=1))
    return 0


def _f(v: float, nd: int = 3) -> str:
    return f"{v:.{nd}f}"


def render_markdown(res: dict, k: int) -> str:
    d = res["extractor"]
    lab = lambda m: metric_label(d, m)  # noqa: E731
    rows, c = res["rows"], res["checks"]
    b = rows["baseline"][0]
    lines = [
        f"# Domain feature space sanity: {d['name']}",
        "",
        f"Command: `{res['command']}`  ",
        f"Extractor: {d['architecture']} ({d['parameters']:,} parameters), features {d['dims']['pool']}-d, "
        f"weights sha256 `{d['weights_sha256']}`, trained on {d['training']['dataset']} {d['training']['split']} "
        f"({d['training']['examples']} images), test accuracy {100 * d['test_accuracy']:.2f}% (flip TTA={d['tta_flip']}).  ",
        f"Data: real CIFAR-10 (JPEG q75 copy), {res['images_per_set']} images per set; metrics from "
        "generative_bench.evaluation.metrics (FD float64, KD 100 subsets of 1000 with the cubic kernel, "
        "P/R k=3 '<=', D/C k=5, CS 10 splits after torch-fidelity's seeded shuffle, since the sets are sorted by "
        "class).  ",
        f"These are **{lab('fid')}**, **{lab('kid_mean')}**, **{lab('is_mean')}** ... in the classifier's feature "
        "space: not FID/KID/IS and not comparable to published figures.  ",
        f"Wall time {res['wall_s']} s on {res['threads']} thread(s); features {res['feature_ms_per_image']} ms/image.",
        "",
        "## Real vs real",
        "",
        f"| comparison | {lab('fid')} | {lab('kid_mean')} | precision | recall | density | coverage | {lab('is_mean')} (test) |",
        "|---|---|---|---|---|---|---|---|",
        f"| {b['comparison']} | {_f(b['fd'])} | {b['kd_mean']:.5f} | {_f(b['precision'])} | {_f(b['recall'])} | "
        f"{_f(b['density'])} | {_f(b['coverage'])} | {_f(b['cs_mean'], 2)} ± {_f(b['cs_std'], 2)} |",
        "",
        f"Classifier score of the real test subset: {_f(b['cs_mean'], 2)} of an upper bound of {k} (number of classes) "
        f"= {100 * c['cs_test_over_upper_bound']:.1f}%; train subset: {_f(b['cs_train'], 2)}. Top-1 accuracy on this "
        f"test subset {100 * b['accuracy_test_subset']:.2f}%.",
        "",
        "## Degraded test images vs the train subset",
        "",
        f"| degradation | {lab('fid')} | {lab('kid_mean')} | precision | recall | {lab('is_mean')} |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows["noise"]:
        lines.append(f"| Gaussian noise sigma={r['sigma']}/255 | {_f(r['fd'])} | {r['kd_mean']:.5f} | {_f(r['precision'])} | "
                     f"{_f(r['recall'])} | {_f(r['cs_mean'], 2)} |")
    for r in rows["blur"]:
        lines.append(f"| Gaussian blur radius={r['radius']} px | {_f(r['fd'])} | {r['kd_mean']:.5f} | {_f(r['precision'])} | "
                     f"{_f(r['recall'])} | {_f(r['cs_mean'], 2)} |")
    lines += [
        "",
        f"FD grows monotonically with noise: **{c['fd_monotone_in_noise']}**; with blur: **{c['fd_monotone_in_blur']}**.",
        "",
        "## Mode dropping: train images of only K classes vs the test subset",
        "",
        f"| classes kept | {lab('fid')} | {lab('kid_mean')} | precision | recall | density | coverage | {lab('is_mean')} |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows["classes"]:
        lines.append(f"| {r['classes_kept']} | {_f(r['fd'])} | {r['kd_mean']:.5f} | {_f(r['precision'])} | {_f(r['recall'])} | "
                     f"{_f(r['density'])} | {_f(r['coverage'])} | {_f(r['cs_mean'], 2)} |")
    lines += [
        "",
        f"Recall falls as classes are dropped: **{c['recall_falls_with_fewer_classes']}**; lowest precision "
        f"{_f(c['precision_min_when_dropping_classes'])}.",
        "",
    ]
    return "\n".join(lines)


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = res["extractor"]
    rows = res["rows"]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    ax = axes[0]
    ax.plot([r["sigma"] for r in rows["noise"]], [r["fd"] for r in rows["noise"]], "o-")
    ax.set(xlabel="Gaussian noise sigma (of 255)", ylabel=metric_label(d, "fid"), title="noise", yscale="symlog")
    ax = axes[1]
    ax.plot([r["radius"] for r in rows["blur"]], [r["fd"] for r in rows["blur"]], "o-", color="C1")
    ax.set(xlabel="Gaussian blur radius (px)", ylabel=metric_label(d, "fid"), title="blur", yscale="symlog")
    ax = axes[2]
    ks = [r["classes_kept"] for r in rows["classes"]]
    for key, style in (("precision", "o-"), ("recall", "s-"), ("density", "^--"), ("coverage", "v--")):
        ax.plot(ks, [r[key] for r in rows["classes"]], style, label=key)
    ax.set(xlabel="classes kept", title="mode dropping", ylim=(0, 1.1))
    ax.invert_xaxis()
    ax.legend(fontsize=8)
    fig.suptitle(f"{d['name']} feature space (sha256 {d['weights_sha256'][:12]}), {res['images_per_set']} images/set",
                 fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
