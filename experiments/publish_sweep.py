"""Copy a finished sweep into reports/ without its weights, and rebuild its report there.

Keeps, per run: results.json, config.yaml, .hydra/overrides.yaml, train_log.csv, the sample
grids (samples/*_grid.png) and the sample files of 2-D data (samples/*.npz holding (N, 2)
points: a few kilobytes, and what the report's density panel is drawn from); drops checkpoints
and image sample .npz files (megabytes each). Then runs the report builder on the copy, so every
link of the HTML report resolves inside reports/, and with ``--screenshot`` writes
``report/screenshot.png`` (experiments/screenshot_report.py, headless Chromium).
A ``RUN.md`` beside it records the command that made the sweep, its wall time and machine.

    python experiments/publish_sweep.py runs/<sweep> reports/<name> --command "gbench ..." --wall "16 min 44 s"
    python experiments/publish_sweep.py --rebuild reports/<name> [--screenshot]   # report of a published copy
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))

import numpy as np  # noqa: E402

from generative_bench.io import atomic_write_text  # noqa: E402
from generative_bench.reporting import build_report  # noqa: E402

KEEP = ("results.json", "config.yaml", ".hydra/overrides.yaml", "train_log.csv")


def is_point_samples(path: Path) -> bool:
    """True for a samples .npz whose ``arr_0`` is float (N, 2) points (2-D data), read without pickle."""
    try:
        with np.load(path, allow_pickle=False) as f:
            if "arr_0" not in f.files:
                return False
            arr = f["arr_0"]
            return arr.ndim == 2 and arr.shape[1] == 2 and arr.dtype.kind == "f"
    except (OSError, ValueError):
        return False


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
        kept = sorted((run / "samples").glob("*_grid.png"))
        kept += [f for f in sorted((run / "samples").glob("*.npz")) if is_point_samples(f)]
        for f in kept:
            (out / "samples").mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, out / "samples" / f.name)
    return [dst / r.name for r in runs]


def rebuild(published: Path, screenshot: bool = False) -> Path:
    """Rebuild ``published/report`` from the run folders beside it (relative inputs, as when published)."""
    old_plots = published / "report" / "plots"
    if old_plots.is_dir() and not old_plots.is_symlink():
        shutil.rmtree(old_plots)  # figures of an earlier build must not linger beside the new ones
    cwd = os.getcwd()
    os.chdir(published)  # relative inputs: the rebuilt report names no machine-specific paths
    try:
        paths = build_report([Path(".")], Path("report"))
    finally:
        os.chdir(cwd)
    if screenshot:
        from screenshot_report import screenshot as take

        print(take(published / "report"))
    return published / "report" / Path(paths["md"]).name


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sweep", type=Path, nargs="?", help="the finished sweep folder (not with --rebuild)")
    ap.add_argument("out", type=Path, nargs="?", help="the folder under reports/ to publish into")
    ap.add_argument("--rebuild", type=Path, default=None, metavar="PUBLISHED",
                    help="only rebuild the report of an already published folder (its RUN.md is kept)")
    ap.add_argument("--command", help="the command that made the sweep")
    ap.add_argument("--wall", help="its wall time, as measured")
    ap.add_argument("--note", default="", help="anything a reader needs to know (machine load, ...)")
    ap.add_argument("--screenshot", action="store_true", help="also write report/screenshot.png (headless Chromium)")
    args = ap.parse_args()
    if args.rebuild is not None:
        print(rebuild(args.rebuild, args.screenshot))
        return
    if args.sweep is None or args.out is None or not args.command or not args.wall:
        ap.error("SWEEP OUT --command and --wall are required (or --rebuild PUBLISHED)")
    runs = copy_sweep(args.sweep, args.out)
    md = rebuild(args.out, args.screenshot)
    lines = [f"# {args.out.name}", "", f"Command: `{args.command}`", "",
             f"Wall time (whole sweep, training + NLL + sampling + evaluation + report): {args.wall}.", "",
             f"Runs: {', '.join(r.name for r in runs)}. Leaderboard: `report/leaderboard.md`; HTML: "
             "`report/index.html` (first screen: `report/screenshot.png`); per-run records, training logs and "
             "sample grids beside them (checkpoints and image sample .npz files left out; 2-D point samples kept).",
             ""]
    if args.note:
        lines += [args.note, ""]
    lines += [f"Published with `python experiments/publish_sweep.py {args.sweep} {args.out} ...`.", ""]
    atomic_write_text(args.out / "RUN.md", "\n".join(lines))
    print(md)


if __name__ == "__main__":
    main()
