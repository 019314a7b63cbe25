"""``gbench score SAMPLES REFERENCE [--metrics fid,kid] [--features F] [--num-samples N] [--json FILE]``:
one line for people coming from other evaluators; the numbers of ``gbench evaluate`` (it is
:func:`generative_bench.evaluate`), printed as a table, no run folder written.

SAMPLES: an ``.npz`` (``arr_0`` uint8 NHWC) or a folder of images. REFERENCE: a data config name
(``cifar10_jpeg``), a folder of images, an npz of images or a reference file (pytorch-fid
statistics, a guided-diffusion reference batch, a reference cache entry). Exit codes as ``gbench``'s.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

PROG = "gbench score"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Score samples against a reference in one line (the numbers "
                                "of gbench evaluate, no run folder written).")
    p.add_argument("samples", help="an .npz (arr_0 uint8 NHWC) or a folder of images")
    p.add_argument("reference", help="a data config name, a folder of images, an npz of images or a reference file")
    p.add_argument("--metrics", default=None, help="comma-separated eval.metrics names (default: the feature space's list)")
    p.add_argument("--features", default=None, help="eval/features choice: inception, cifar10_resnet, dinov2_vitl14, ...")
    p.add_argument("--num-samples", type=int, default=None, help="score the first N samples (default: all)")
    p.add_argument("--reference-subset", type=int, default=None, help="class-balanced subset of a data split")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, metavar="FILE", help="also write the result as JSON")
    p.add_argument("overrides", nargs="*", help="more eval.* / data.* overrides, e.g. eval.kid_subset_size=100")
    return p


def score_main(argv: list[str]) -> int:
    from generative_bench.api import evaluate
    from generative_bench.cli.task import one_line_warnings
    from generative_bench.errors import GBenchError
    from generative_bench.io import atomic_write_json

    args = _parser().parse_intermixed_args(argv)
    one_line_warnings()
    try:
        result = evaluate(args.samples, args.reference,
                          metrics=[m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else None,
                          features=args.features, num_samples=args.num_samples, seed=args.seed,
                          reference_subset=args.reference_subset, overrides=args.overrides)
    except GBenchError as e:
        print(f"{PROG}: error: {' '.join(str(e).split())}", file=sys.stderr)
        return e.exit_code
    width = max((len(k) for k in result.metrics), default=0)
    for key, value in result.metrics.items():
        if isinstance(value, float):
            print(f"{key:<{width}}  {value:.6g}" if math.isfinite(value) else f"{key:<{width}}  {value}")
    features = result.protocol.get("features") or {}
    print(f"features: {features.get('name')} (weights sha256 {str(features.get('weights_sha256'))[:12]}); "
          f"{result.protocol.get('num_samples')} samples" + ("" if result.comparable else
                                                              "; NOT comparable to published figures"))
    if args.json:
        atomic_write_json(args.json, {"metrics": result.metrics, "protocol": result.protocol,
                                      "comparable": result.comparable, "warnings": result.warnings})
        print(f"result: {args.json}")
    return 0


__all__ = ["score_main"]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(score_main(sys.argv[1:]))
