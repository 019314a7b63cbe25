"""Copy a finished sweep into reports/ without its weights, and rebuild its report there.

Keeps, per run: results.json, config.yaml, .hydra/overrides.yaml, train_log.csv and the sample
grids (samples/*_grid.png); drops checkpoints and sample .npz files (megabytes each). Then runs
the report builder on the copy, so every link of the HTML report resolves inside reports/.
A ``RUN.md`` beside it records the command that made the sweep, its wall time and machine.

    python experiments/publish_sweep.py runs/<sweep> reports/<name> --command "gbench ..." --wall "16 min 44 s"
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from generative_bench.io import atomic_write_text  # noqa: E402
from generative_bench.reporting import build_report  # noqa: E402

KEEP = ("results.json", "config.yaml", ".hydra/overrides.yaml", "train_log.csv")


def copy_sweep(src: Path, dst: Path) -> list[Path]:
    """The kept files of every run folder (one holding results.json) under ``src``."""
    runs = sorted(p.parent for p in src.glob("*/results.json"))
    if not runs:
        raise SystemExit(f"no run folder with results.json under {src}")
    if dst.exists():
        shutil.rmtree(dst)
    for run in runs:
        out = dst / run.name
        for name in KEEP:
            if (run / name).is_file():
                (out / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(run / name, out / name)
        for grid in sorted((run / "samples").glob("*_grid.png")):
            (out / "samples").mkdir(parents=True, exist_ok=True)
            shutil.copy2(grid, out / "samples" / grid.name)
    return [dst / r.name for r in runs]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sweep", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--command", required=True, help="the command that made the sweep")
    ap.add_argument("--wall", required=True, help="its wall time, as measured")
    ap.add_argument("--note", default="", help="anything a reader needs to know (machine load, ...)")
    args = ap.parse_args()
    runs = copy_sweep(args.sweep, args.out)
    cwd = os.getcwd()
    os.chdir(args.out)  # relative inputs: the rebuilt report names no machine-specific paths
    try:
        paths = build_report([Path(".")], Path("report"), formats=("md", "csv", "html", "tex"))
    finally:
        os.chdir(cwd)
    lines = [f"# {args.out.name}", "", f"Command: `{args.command}`", "",
             f"Wall time (whole sweep, training + NLL + sampling + evaluation + report): {args.wall}.", "",
             f"Runs: {', '.join(r.name for r in runs)}. Leaderboard: `report/leaderboard.md`; HTML: "
             "`report/index.html`; per-run records, training logs and sample grids beside them "
             "(checkpoints and sample .npz files left out).", ""]
    if args.note:
        lines += [args.note, ""]
    lines += [f"Published with `python experiments/publish_sweep.py {args.sweep} {args.out} ...`.", ""]
    atomic_write_text(args.out / "RUN.md", "\n".join(lines))
    print(paths.get("md"))


if __name__ == "__main__":
    main()
