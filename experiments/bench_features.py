"""Feature-extraction speed: our InceptionFeatures against torch-fidelity's FeatureExtractorInceptionV3.

Both get the same weights (the real pt_inception-2015-12-05 file when GBENCH_INCEPTION_WEIGHTS
points to it, else one seeded random-init state dict saved to a temporary file), the same N real
CIFAR-10 test images (uint8, 32x32, class-balanced, from data/cifar10-jpeg; random uint8 images
if the folder is missing), the same batch sizes and thread count, in the same process. Ours is
timed through the public ``extract_tensor`` (validation, pool_3 + spatial + logits, numpy
output); torch-fidelity's module is called on each batch for its pool_3 + unbiased logits.
Repeats are interleaved (theirs, ours, theirs, ...) after one warm-up pass each so machine load
affects both alike; medians are reported. Also checks that the two agree on these images.

    python experiments/bench_features.py [--n 256] [--batch-sizes 64 128] [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from generative_bench.data.images import pil_to_uint8_chw  # noqa: E402
from generative_bench.evaluation import inception as inc  # noqa: E402
from generative_bench.evaluation import weights as wts  # noqa: E402
from generative_bench.evaluation.features import InceptionFeatures  # noqa: E402
from generative_bench.io import atomic_write_json, atomic_write_text  # noqa: E402
from generative_bench.records import cpu_model_name as cpu_name  # noqa: E402


def load_images(n: int, root: Path) -> tuple[torch.Tensor, str]:
    """n class-balanced CIFAR-10 test JPEGs as uint8 NCHW (or random uint8 if absent)."""
    classes = sorted(p for p in root.glob("*") if p.is_dir()) if root.is_dir() else []
    if not classes:
        g = torch.Generator().manual_seed(0)
        return torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8), "random uint8 32x32"
    from PIL import Image

    per = -(-n // len(classes))
    files = [f for c in classes for f in sorted(c.glob("*.jpg"))[:per]]
    files = sorted(files, key=lambda f: (f.name, f.parent.name))[:n]  # interleave classes
    return torch.stack([pil_to_uint8_chw(Image.open(f)) for f in files]), f"CIFAR-10 test JPEGs ({root})"


def network_flops_per_image(net: torch.nn.Module) -> float:
    """Multiply-adds x 2 of every convolution and of the logits matmul for one 299x299 image,
    counted from the shapes of one forward pass (hooks on the convs)."""
    total = 0.0

    def count(mod, inputs, out):
        nonlocal total
        w = mod.weight
        total += 2.0 * out.shape[0] * out.shape[2] * out.shape[3] * w.shape[0] * w[0].numel()

    convs = [m for m in net.modules() if isinstance(m, (inc.FusedConv, torch.nn.Conv2d))]
    hooks = [m.register_forward_hook(count) for m in convs]
    try:
        with torch.inference_mode():
            net(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    finally:
        for h in hooks:
            h.remove()
    return total + 2.0 * inc.POOL_DIM * inc.NUM_CLASSES


def matmul_peak_gflops(repeats: int = 5, size: int = 4096) -> float:
    """The fp32 peak this process reaches: best of ``repeats`` (size x size/2) @ (size/2 x size)
    torch matmuls on the current thread count."""
    a, b = torch.randn(size, size // 2), torch.randn(size // 2, size)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2.0 * size * (size // 2) * size / best / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data", default=str(ROOT / "data" / "cifar10-jpeg" / "test"))
    ap.add_argument("--out", default=str(ROOT / "reports" / "bench_features"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from torch_fidelity import __version__ as tfid_version
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    x, source = load_images(args.n, Path(args.data))
    real = os.environ.get(wts.ENV_WEIGHTS)
    tmp = tempfile.TemporaryDirectory()
    if real:
        ours = InceptionFeatures(weights=real)
        weights_path = real
    else:
        ours = InceptionFeatures(pretrained=False, seed=0)
        weights_path = str(Path(tmp.name) / "random_inception.pth")
        torch.save(inc.init_random_(inc.FIDInceptionV3(), seed=0).state_dict(), weights_path)
    theirs = FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"],
                                         feature_extractor_weights_path=weights_path)

    def run_theirs(bs: int) -> dict[str, np.ndarray]:
        pools, logits = [], []
        with torch.inference_mode():
            for i in range(0, len(x), bs):
                p, lg = theirs(x[i:i + bs])
                pools.append(p.numpy())
                logits.append(lg.numpy())
        return {"pool": np.concatenate(pools), "logits": np.concatenate(logits)}

    def run_ours(bs: int):
        return ours.extract_tensor(x, batch_size=bs)

    flops = network_flops_per_image(ours.net)
    load_before = os.getloadavg()
    peaks = [matmul_peak_gflops()]
    results = []
    for bs in args.batch_sizes:
        warm = x[:bs]
        with torch.inference_mode():
            theirs(warm)
        ours.extract_tensor(warm, batch_size=bs)
        times: dict[str, list[float]] = {"torch-fidelity": [], "ours": []}
        outputs = {}
        for r in range(args.repeats):
            for name, fn in (("torch-fidelity", run_theirs), ("ours", run_ours)):
                t0 = time.perf_counter()
                outputs[name] = fn(bs)
                times[name].append(time.perf_counter() - t0)
                print(f"batch {bs} repeat {r}: {name} {args.n / times[name][-1]:.2f} img/s", flush=True)
        rel = {k: float(np.abs(outputs["ours"][k] - outputs["torch-fidelity"][k]).max()
                        / np.abs(outputs["torch-fidelity"][k]).max()) for k in ("pool", "logits")}
        ips = {k: args.n / statistics.median(v) for k, v in times.items()}
        best_ours = args.n / min(times["ours"])  # the fastest repeat: the least disturbed by other load
        results.append({"batch_size": bs, "seconds": times, "images_per_s": ips,
                        "ratio_ours_vs_torch_fidelity": ips["ours"] / ips["torch-fidelity"], "max_rel_diff": rel,
                        "ours_gflops_median": ips["ours"] * flops / 1e9, "ours_gflops_best": best_ours * flops / 1e9})
        peaks.append(matmul_peak_gflops())
    load_after = os.getloadavg()
    peak = max(peaks)
    for r in results:
        r["ours_share_of_peak_median"] = r["ours_gflops_median"] / peak
        r["ours_share_of_peak_best"] = r["ours_gflops_best"] / peak
    best = max(results, key=lambda r: r["ours_share_of_peak_best"])

    command = "python experiments/bench_features.py " + " ".join(sys.argv[1:])
    desc = ours.describe()
    record = {
        "command": command.strip(), "images": args.n, "source": source, "threads": args.threads,
        "repeats": args.repeats, "results": results, "weights": desc["weights"],
        "weights_sha256": desc["weights_sha256"], "comparable": desc["comparable"],
        "oneDNN_fused_conv": inc.onednn_fused_conv_available(), "torch": torch.__version__,
        "torch_fidelity": tfid_version, "cpu": cpu_name(),
        "loadavg_before": load_before, "loadavg_after": load_after,
        "flops_per_image": flops, "matmul_peak_gflops": peaks,
    }
    out = Path(args.out)
    atomic_write_json(out.with_suffix(".json"), record)
    rows = "\n".join(
        f"| {r['batch_size']} | {k} | {r['images_per_s'][k]:.2f} | {statistics.median(v):.1f} | "
        f"{', '.join(f'{t:.1f}' for t in v)} | {r['ratio_ours_vs_torch_fidelity']:.2f}x |"
        for r in results for k, v in r["seconds"].items())
    ratios = ", ".join(f"{r['ratio_ours_vs_torch_fidelity']:.2f}x at batch {r['batch_size']}" for r in results)
    worst = {k: max(r["max_rel_diff"][k] for r in results) for k in ("pool", "logits")}
    peak_rows = "\n".join(
        f"| {r['batch_size']} | {r['ours_gflops_median']:.1f} | {100 * r['ours_share_of_peak_median']:.0f}% | "
        f"{r['ours_gflops_best']:.1f} | {100 * r['ours_share_of_peak_best']:.0f}% |" for r in results)
    md = f"""# Inception feature extraction: ours vs torch-fidelity (CPU)

Command: `{record['command']}`

{args.n} images ({source}), {args.threads} CPU threads (`torch.set_num_threads`),
torch {torch.__version__}, torch-fidelity {tfid_version}, {record['cpu']}. For each batch size
(the same for both): one warm-up batch each, then {args.repeats} interleaved repeats (theirs,
ours, ...); medians reported. Weights: {desc['weights']} (sha256 `{desc['weights_sha256'][:16]}...`),
the same tensors for both{'' if desc['comparable'] else ' (random init: the speed is that of the real weights, but these features are NOT comparable to published figures)'}.
Ours computes pool_3 + sFID spatial + unbiased logits through `InceptionFeatures.extract_tensor`
(input checks, numpy output included); torch-fidelity's module computes pool_3 + unbiased logits.

| batch | extractor | images/s (median) | median s | all repeats (s) | ours / theirs |
|---|---|---|---|---|---|
{rows}

**ours / torch-fidelity (images/s): {ratios}.**

Agreement on these images (max |ours - theirs| / max |theirs|): pool_3 {worst['pool']:.1e},
unbiased logits {worst['logits']:.1e}.

Share of the fp32 peak: the network is {flops / 1e9:.2f} GFLOP per image (2 x the multiply-adds
of its convolutions and the logits matmul, counted from one forward pass), and the peak is the
best rate of a (4096 x 2048) @ (2048 x 4096) float32 torch matmul on the same threads, measured
before the first and after every batch size ({', '.join(f'{p:.1f}' for p in peaks)} GFLOP/s;
the highest, {peak:.1f}, is used). Whole extraction time counts (resize, pools, concatenations
and the numpy copy included):

| batch | ours GFLOP/s (median) | share of peak | ours GFLOP/s (fastest repeat) | share of peak |
|---|---|---|---|---|
{peak_rows}

**At its best batch size ({best['batch_size']}) the extraction runs at
{100 * best['ours_share_of_peak_best']:.0f}% of the measured fp32 matmul peak (fastest repeat;
{100 * best['ours_share_of_peak_median']:.0f}% at the median).**

Where the speed comes from (each exact in real arithmetic): BatchNorm folded into the conv
weights in float64 at load time; on CPU each conv + bias + ReLU is one oneDNN call with the ReLU
as post-op and the weights prepacked once (oneDNN fused conv available here:
{record['oneDNN_fused_conv']}), instead of conv, BatchNorm and ReLU passes and a weight reorder
per call; channels_last activations end to end; the pool branches' average pools moved after
their 1x1 conv (fewer channels to pool); the TF-1 resize gathers columns then rows once, in
NHWC; one matmul for the logits.

Machine load average (1, 5, 15 min) before {tuple(round(v, 2) for v in load_before)}, after
{tuple(round(v, 2) for v in load_after)}: the 2-core machine is shared, so absolute figures are
noisy; the interleaved repeats make the ratio the meaningful number.
"""
    atomic_write_text(out.with_suffix(".md"), md)
    print(md)


if __name__ == "__main__":
    main()
