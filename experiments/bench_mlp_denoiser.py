"""Forward speed of the toy MLP denoiser when the whole batch shares one time step (a sampler's
step): the time embedding and the blocks' time projections computed once and broadcast, against
the same network computing them for every row.

The network is ``conf/model/ddpm.yaml``'s ``vector_net`` (hidden 256, 3 blocks, time_dim 128,
64 Fourier input features), seeded, in inference mode; the zero-initialised block outputs are
randomised so that the time path reaches the output. "per row" is the forward pass written out
with one embedding per row (what ``MLPDenoiser.forward`` did before); "shared" is
``MLPDenoiser.forward``. Also checks that the two outputs are equal (bit for bit, and the largest
difference) and that a batch of different time steps is not slowed down. Repeats interleaved,
medians. Writes reports/bench_mlp_denoiser.{md,json}.

    python experiments/bench_mlp_denoiser.py [--batches 256 1024 4096] [--repeats 30] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from generative_bench.backends.nets.mlp_denoiser import MLPDenoiser  # noqa: E402
from generative_bench.backends.nets.unet import add_label_embedding  # noqa: E402
from generative_bench.io import atomic_write_json, atomic_write_text  # noqa: E402
from generative_bench.records import cpu_model_name  # noqa: E402


def per_row(net: MLPDenoiser, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The forward pass with one time embedding and one time projection per row."""
    emb = add_label_embedding(net, net.embed_time(t, x.dtype), None)
    h = net.inp(net.embed_input(x))
    for block in net.blocks:
        h = h + block.lin2(block.act(block.lin1(block.act(h)) + block.time(emb)))
    return net.out(h)


def build() -> MLPDenoiser:
    torch.manual_seed(0)
    net = MLPDenoiser(hidden=256, num_blocks=3, time_dim=128).eval()
    with torch.no_grad():
        for block in net.blocks:
            block.lin2.weight.normal_(0, 0.05)
            block.lin2.bias.normal_(0, 0.05)
    return net


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, nargs="+", default=[256, 1024, 4096])
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "reports" / "bench_mlp_denoiser"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    net = build()
    rows = []
    with torch.inference_mode():
        for b in args.batches:
            g = torch.Generator().manual_seed(b)
            x = torch.randn(b, 2, generator=g)
            shared_t = torch.full((b,), 417.0)
            varied_t = torch.rand(b, generator=g) * 999
            cases = {"per row (shared t)": lambda: per_row(net, x, shared_t),
                     "shared (shared t)": lambda: net(x, shared_t),
                     "per row (varied t)": lambda: per_row(net, x, varied_t),
                     "forward (varied t)": lambda: net(x, varied_t)}
            for fn in cases.values():  # warm-up
                fn()
            times = {k: [] for k in cases}
            for _ in range(args.repeats):
                for name, fn in cases.items():
                    t0 = time.perf_counter()
                    fn()
                    times[name].append(time.perf_counter() - t0)
            med = {k: statistics.median(v) for k, v in times.items()}
            a, ref = net(x, shared_t), per_row(net, x, shared_t)
            av, refv = net(x, varied_t), per_row(net, x, varied_t)
            rows.append({"batch": b, "median_ms": {k: v * 1e3 for k, v in med.items()},
                         "speedup_shared_t": med["per row (shared t)"] / med["shared (shared t)"],
                         "ratio_varied_t": med["per row (varied t)"] / med["forward (varied t)"],
                         "bit_identical_shared_t": bool(torch.equal(a, ref)),
                         "max_abs_diff_shared_t": float((a - ref).abs().max()),
                         "bit_identical_varied_t": bool(torch.equal(av, refv))})
            print(rows[-1], flush=True)
    env = f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} " if os.environ.get("OMP_NUM_THREADS") else ""
    command = (env + "python experiments/bench_mlp_denoiser.py " + " ".join(sys.argv[1:])).strip()
    record = {"command": command, "cpu": cpu_model_name(), "threads": args.threads, "torch": torch.__version__,
              "repeats": args.repeats, "network": "MLPDenoiser(hidden=256, num_blocks=3, time_dim=128)", "rows": rows,
              "loadavg": tuple(round(v, 2) for v in os.getloadavg())}
    out = Path(args.out)
    atomic_write_json(out.with_suffix(".json"), record)
    lines = ["# Toy MLP denoiser: shared time step embedded once (CPU)", "", f"Command: `{command}`", "",
             f"{record['cpu']}, {args.threads} thread, torch {torch.__version__}; {record['network']} (the ddpm "
             f"preset's vector_net), inference mode; {args.repeats} interleaved repeats, medians. \"per row\" "
             "computes the time embedding and every block's time projection for each row (the forward pass before); "
             "\"shared\" is `MLPDenoiser.forward`, which embeds a batch-wide time step once and broadcasts it.", "",
             "| batch | per row, shared t (ms) | shared, shared t (ms) | speed-up | per row, varied t (ms) | "
             "forward, varied t (ms) | outputs (shared t) |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        m = r["median_ms"]
        same = "bit-identical" if r["bit_identical_shared_t"] else f"max diff {r['max_abs_diff_shared_t']:.1e}"
        lines.append(f"| {r['batch']} | {m['per row (shared t)']:.2f} | {m['shared (shared t)']:.2f} | "
                     f"**{r['speedup_shared_t']:.2f}x** | {m['per row (varied t)']:.2f} | {m['forward (varied t)']:.2f} | "
                     f"{same} |")
    varied = ", ".join(f"{r['ratio_varied_t']:.2f}" for r in rows)
    lines += ["", "With different time steps per row the forward pass is the per-row one plus one equality check "
              f"(ratio per row / forward: {varied}).",
              f"Machine load average at the end {record['loadavg']} (a shared machine: the interleaved ratio is "
              "the meaningful number).", ""]
    text = "\n".join(lines)
    atomic_write_text(out.with_suffix(".md"), text)
    print(text)


if __name__ == "__main__":
    main()
