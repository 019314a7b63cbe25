"""How far the Inception resize mode moves FID (eval.features.resize), on the same images.

Reference: a class-balanced subset of the CIFAR-10 train split (JPEG copy); sample sets: test
images as they are, and the same test images with Gaussian pixel noise. Features are extracted
once per resize mode (tf1_bilinear, clean_bicubic, torchvision_antialias); the report gives FID
of each sample set with reference and samples in the same mode, and with the samples in one mode
against a tf1_bilinear reference (what mixing two tools' statistics does).

    OMP_NUM_THREADS=1 python experiments/resize_modes.py --n 200 --out reports/resize_modes.md

Without the real Inception weights the network is randomly initialised: the figures show how much
the resize matters in this pipeline and are NOT comparable to published FIDs.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="images per set (reference and each sample set)")
    ap.add_argument("--noise", type=float, default=8.0, help="std of the pixel noise of the second sample set")
    ap.add_argument("--data-root", default=str(ROOT / "data" / "cifar10-jpeg"))
    ap.add_argument("--out", default=str(ROOT / "reports" / "resize_modes.md"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)

    from generative_bench.data.loading import load_split
    from generative_bench.evaluation.features import InceptionFeatures
    from generative_bench.evaluation.metrics import fid_from_features
    from generative_bench.evaluation.resize import MODES

    data = OmegaConf.load(ROOT / "conf" / "data" / "cifar10_jpeg.yaml")
    data.source.root = args.data_root
    ref = load_split(data, "train", subset=args.n).x
    test = load_split(data, "test", subset=args.n).x
    g = torch.Generator().manual_seed(0)
    noisy = (test.float() + args.noise * torch.randn(test.shape, generator=g)).round().clamp(0, 255).to(torch.uint8)
    sets = {"test images": test, f"test images + N(0, {args.noise:g}²) noise": noisy}

    ext = InceptionFeatures(pretrained="auto", batch_size=50)
    feats: dict[str, dict[str, np.ndarray]] = {}
    t0 = time.perf_counter()
    for mode in MODES:
        ext.resize = mode
        feats[mode] = {"reference": ext.extract_tensor(ref)["pool"]}
        for name, x in sets.items():
            feats[mode][name] = ext.extract_tensor(x)["pool"]
    wall = time.perf_counter() - t0
    desc = ext.describe()

    lines = [
        "# Inception resize modes: how far they move FID",
        "",
        "Command: `OMP_NUM_THREADS=1 python experiments/resize_modes.py " + " ".join(argv or sys.argv[1:]) + "`",
        "",
        f"Reference: {args.n} CIFAR-10 train images (JPEG copy, class-balanced subset); sample sets: {args.n} test "
        f"images, and the same images with Gaussian pixel noise (std {args.noise:g}, rounded and clipped). "
        f"Feature extractor: {desc['name']}, weights {desc['weights']} (sha256 {str(desc['weights_sha256'])[:12]}…), "
        f"{'pretrained' if desc['pretrained'] else 'random initialisation'}; 1 CPU thread, {wall / 60:.1f} min "
        "for all features.",
        "",
    ]
    if not desc["comparable"]:
        lines += ["**NOT comparable to published figures**: the real Inception weights were not available, so the "
                  "network is randomly initialised. The differences between rows show how much the resize mode moves "
                  "FID in this pipeline, not the size of the effect with the real network.", ""]
    lines += [f"FID with {args.n} images per set is rank-deficient (N < 2048) and biased upward; compare rows, not "
              "absolute values.", ""]
    names = list(sets)
    lines += ["## Same mode for reference and samples", "",
              "| resize mode | " + " | ".join(f"FID: {n}" for n in names) + " |",
              "| --- | " + " | ".join("---:" for _ in names) + " |"]
    base = {n: fid_from_features(feats["tf1_bilinear"][n], feats["tf1_bilinear"]["reference"]) for n in names}
    for mode in MODES:
        vals = [fid_from_features(feats[mode][n], feats[mode]["reference"]) for n in names]
        cells = [f"{v:.3f} ({100 * (v / base[n] - 1):+.1f}% vs tf1)" if mode != "tf1_bilinear" else f"{v:.3f}"
                 for v, n in zip(vals, names)]
        lines.append(f"| {mode} | " + " | ".join(cells) + " |")
    lines += ["", "## Samples in one mode against a tf1_bilinear reference (mixing tools)", "",
              "| samples' resize mode | " + " | ".join(f"FID: {n}" for n in names) + " |",
              "| --- | " + " | ".join("---:" for _ in names) + " |"]
    for mode in MODES:
        vals = [fid_from_features(feats[mode][n], feats["tf1_bilinear"]["reference"]) for n in names]
        lines.append(f"| {mode} | " + " | ".join(f"{v:.3f}" for v in vals) + " |")
    lines += ["", "Reading: a statistics file made with one tool's resize and samples scored with another's differ by "
              "the amounts in the second table even for identical images; the suite records the mode "
              "(`eval.features.resize`) in every fingerprint and refuses a reference file made with another mode.", ""]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
