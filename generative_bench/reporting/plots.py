"""Report figures (matplotlib, Agg backend, PNG).

* the headline sample panel: every backend's samples at its headline setting side by side
  (2-D toy data: scatters over the true mixture's density contours, on the same axes; images:
  the sample grids);
* sample montage per backend from the run's ``samples/<tag>.npz`` (or its grid PNG);
* quality/speed trade-off: quality metric and sampling images/s against network evaluations
  per image (diffusion respacing/DDIM curves, one-step GAN/VAE points), legend outside the axes;
* precision vs recall per backend, legend outside the axes;
* fidelity vs diversity as a knob moves, and one panel per declared metric;
* training curves: one figure per logged quantity with every run of the table, and per run
  from ``train_log.csv`` (GAN: losses plus D(real)/D(fake)).

Every figure is made independently: a broken file costs its own figure, recorded in the
returned errors, never the whole report.

Run folders are untrusted: only files that resolve inside their run folder are read
(:func:`~generative_bench.reporting.collect.contained_path`), nothing is built or called from a
run's configuration (the toy density comes from the record's plain-number data description),
and every figure is written directly inside the output folder under a sanitised name.
"""

from __future__ import annotations

import json
import math
import re
import textwrap
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

from generative_bench.errors import InputError
from generative_bench.reporting.collect import contained_path
from generative_bench.reporting.leaderboard import (NOT_COMPARABLE, Headline, Leaderboard, ProtocolTable,
                                                    backend_display_name, headline, metric_specs, quality_spec,
                                                    short_setting)
from generative_bench.reporting.measures import NFE, SAMPLING_SPEED

_LOG_SKIP = {"step", "images_seen", "wall_s", "lr", "images_per_s", "epoch"}
_D_OUTPUTS = ("d_real", "d_fake")


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def slug(text: str) -> str:
    """A file-name-safe form of ``text``: letters, digits, ``_``, ``-`` and single inner dots only.

    No path separator, ``..``, NUL or leading dot survives, so ``out_dir / f"...{slug(x)}..."``
    always names a file directly inside ``out_dir``.
    """
    text = re.sub(r"[^A-Za-z0-9._-]+", "_", str(text))
    text = re.sub(r"\.{2,}", "_", text)
    return text[:80].strip("._-") or "x"


def _output_file(out_dir: Path, name: str) -> Path:
    """``out_dir / name`` after checking that it names a file directly inside ``out_dir``."""
    if not name or name != Path(name).name or name.startswith(".") or "\x00" in name:
        raise InputError(f"refusing to write figure {name!r}: not a plain file name")
    return Path(out_dir) / name


def load_samples(path: str | Path, max_items: int = 5000) -> np.ndarray:
    """``arr_0`` of a samples npz: uint8 NHWC images or float (N, 2) points."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"samples file {str(path)!r} does not exist")
    try:
        with np.load(path, allow_pickle=False) as f:
            if "arr_0" not in f.files:
                raise InputError(f"{str(path)!r} has no arr_0 (found {f.files})")
            arr = f["arr_0"][:max_items]
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read samples file {str(path)!r}: {e}") from e
    if arr.ndim == 2 and arr.shape[1] == 2:
        return arr.astype(np.float64)
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[-1] not in (1, 3):
        raise InputError(f"{str(path)!r}: expected uint8 NHWC images or float (N, 2) points, "
                         f"got {arr.dtype} {arr.shape}")
    return arr


def montage(images: np.ndarray, ncol: int = 8, pad: int = 2) -> np.ndarray:
    """Tile uint8 NHWC images into one HWC image with ``pad`` white pixels between tiles."""
    n, h, w, c = images.shape
    ncol = max(1, min(ncol, n))
    nrow = math.ceil(n / ncol)
    grid = np.full((nrow * (h + pad) + pad, ncol * (w + pad) + pad, c), 255, np.uint8)
    for i, img in enumerate(images):
        r, q = divmod(i, ncol)
        grid[pad + r * (h + pad):pad + r * (h + pad) + h, pad + q * (w + pad):pad + q * (w + pad) + w] = img
    return grid[..., 0] if c == 1 else grid


def toy_density(record: Mapping[str, Any] | None):
    """The run's 2-D mixture (with ``log_prob`` and ``means``), or None.

    Rebuilt from the record's data description (``record["data"]``, written by the mixture's
    ``describe()``) through :func:`~generative_bench.data.toy.mixture_from_description`, which
    knows the ring and grid families and accepts plain, bounded numbers only. Nothing from the
    run's configuration is instantiated.
    """
    from generative_bench.data.toy import mixture_from_description

    data = record.get("data") if isinstance(record, Mapping) else None
    return mixture_from_description(data) if isinstance(data, Mapping) else None


def _density_box(density, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) corners that hold the mixture's modes and the bulk (1st–99th percentile) of ``points``."""
    means = density.means.numpy()
    lo = np.minimum(means.min(0), np.percentile(points, 1, axis=0)) - 6 * density.std - 0.2
    hi = np.maximum(means.max(0), np.percentile(points, 99, axis=0)) + 6 * density.std + 0.2
    return lo, hi


def _density_contours(ax, density, points: np.ndarray, box: tuple[np.ndarray, np.ndarray] | None = None) -> None:
    import torch

    lo, hi = box if box is not None else _density_box(density, points)
    xs, ys = np.linspace(lo[0], hi[0], 400), np.linspace(lo[1], hi[1], 400)
    gx, gy = np.meshgrid(xs, ys)
    grid = torch.from_numpy(np.stack([gx.ravel(), gy.ravel()], 1))
    # in chunks: a mixture may have up to 1000 modes
    logp = torch.cat([density.log_prob(c) for c in grid.split(8192)]).numpy().reshape(gx.shape)
    top = float(logp.max())
    ax.contour(gx, gy, logp, levels=[top - 8, top - 4.5, top - 2, top - 0.5], colors="tab:red", linewidths=0.7)


def plot_samples(path: Path | None, out: Path, title: str, record: Mapping[str, Any] | None = None,
                 grid_png: Path | None = None) -> Path:
    """Montage of the first 64 images, or a scatter of 2-D points over the true density.

    A run folder published without its sample ``.npz`` (weights and samples left out to save
    space) still has the grid PNG the harness wrote beside it (``grid_png``): that is shown
    instead. Both paths must already be checked by the caller (see :func:`make_plots`).
    """
    plt = _plt()
    if (path is None or not Path(path).is_file()) and grid_png is not None and Path(grid_png).is_file():
        from PIL import Image

        with Image.open(grid_png) as im:
            arr = np.asarray(im.convert("RGB"))
        fig, ax = plt.subplots(figsize=(6, 6 * arr.shape[0] / arr.shape[1] + 0.4))
        ax.imshow(arr, interpolation="nearest")
        ax.axis("off")
        ax.set_title(textwrap.fill(f"{title} (grid PNG)", 70), fontsize=9)
        return _save(fig, out)
    if path is None:
        raise InputError("no samples file inside the run folder")
    arr = load_samples(path)
    if arr.ndim == 2:
        fig, ax = plt.subplots(figsize=(5, 5))
        ax.scatter(arr[:, 0], arr[:, 1], s=2, alpha=0.5, color="tab:blue", label="samples")
        density = toy_density(record)
        if density is not None:
            _density_contours(ax, density, arr)
            ax.plot([], [], color="tab:red", lw=0.7, label="true density (log-p contours)")
        ax.set_aspect("equal")
        ax.legend(loc="upper right", fontsize=7)
    else:
        grid = montage(arr[:64])
        fig, ax = plt.subplots(figsize=(6, 6 * grid.shape[0] / grid.shape[1] + 0.4))
        ax.imshow(grid, cmap="gray" if grid.ndim == 2 else None, interpolation="nearest")
        ax.axis("off")
    ax.set_title(textwrap.fill(title, 70), fontsize=9)
    return _save(fig, out)


def _save(fig, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    _plt().close(fig)
    return out


def quality_metric(table: ProtocolTable):
    """The quality column for the trade-off plot: FID, else the toy high-quality share, ... (the
    leaderboard's :func:`~generative_bench.reporting.leaderboard.quality_spec`)."""
    return quality_spec(table)


def _legend_outside(fig, ax) -> None:
    """One legend to the right of ``ax``, outside every data area."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize=7,
                  frameon=False)


def _save_as_is(fig, out: Path) -> Path | None:
    """Save a figure that has laid itself out (None: nothing to plot, nothing written)."""
    if fig is None:
        return None
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    _plt().close(fig)
    return out


def _save_tight(fig, out: Path) -> Path:
    """Save with the bounding box grown to hold legends placed outside the axes."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    _plt().close(fig)
    return out


LINE_STYLES = ("-", "--", ":", "-.")


def backend_style(table: ProtocolTable, backend: str, method: str = "") -> dict[str, Any]:
    """One colour per backend in every figure of a table (in the order the table lists them) and
    one line style per sampling method of that backend."""
    import matplotlib.pyplot as plt

    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    f = table.frame
    backends = list(dict.fromkeys(f["backend"]))
    methods = list(dict.fromkeys(f.loc[f["backend"] == backend, "method"])) if "method" in f else [""]
    i = backends.index(backend) if backend in backends else len(backends)
    j = methods.index(method) if method in methods else 0
    return {"color": colors[i % len(colors)], "linestyle": LINE_STYLES[j % len(LINE_STYLES)]}


def _lines(table: ProtocolTable):
    """One line per (backend, config, budget, sampling method): DDIM and ancestral never share a line.
    Yields (label, rows, style) with the backend's colour and the method's line style."""
    f = table.frame
    varies = {c: f[c].nunique() > 1 for c in ("config", "budget")}  # a column shared by every row says nothing
    for (backend, config, budget, how), grp in f.groupby(["backend", "config", "budget", "method"], sort=True):
        label = " ".join(x for x in (backend, how, config if varies["config"] else "",
                                     budget if varies["budget"] else "") if x)
        yield label, grp.sort_values("nfe"), backend_style(table, backend, how)


def plot_quality_speed(table: ProtocolTable, out: Path) -> Path | None:
    """Quality and sampling speed (measures.SAMPLING_SPEED) against network evaluations per image."""
    spec = quality_metric(table)
    f = table.frame
    speed, nfe = SAMPLING_SPEED.key, NFE.key
    if f[nfe].notna().sum() == 0 or (spec is None and f[f"{speed}_mean"].notna().sum() == 0):
        return None
    plt = _plt()
    panels = ([spec.key] if spec is not None else []) + [speed]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4), squeeze=False)
    for ax, key in zip(axes[0], panels):
        for label, grp, look in _lines(table):
            g = grp[grp[nfe].notna() & grp[f"{key}_mean"].notna()]
            if g.empty:
                continue
            err = g[f"{key}_std"].fillna(0).to_numpy()
            ax.errorbar(g[nfe], g[f"{key}_mean"], yerr=err, fmt="o" if len(g) > 1 else "s", capsize=3, ms=6,
                        label=label, color=look["color"], linestyle=look["linestyle"] if len(g) > 1 else "none")
        ax.set_xlabel("network evaluations per image (NFE)")
        ax.set_ylabel(table.label(spec) if key != speed else "sampling images / s")
        if f[nfe].max() / max(f[nfe].min(), 1) > 10:
            ax.set_xscale("log")
        values = f[f"{key}_mean"].dropna()
        if key == speed and (values > 0).all() and len(values) > 1:
            ax.set_yscale("log")
        if spec is not None and key == spec.key and spec.better:
            ax.set_title(f"{table.label(spec)} ({spec.better} is better)", fontsize=9)
        ax.grid(alpha=0.3)
    _legend_outside(fig, axes[0][-1])
    warn = "" if table.comparable else f"\n⚠ {NOT_COMPARABLE}"
    fig.suptitle(textwrap.fill(f"Quality / speed trade-off — {table.title}", 110) + warn, fontsize=9)
    fig.tight_layout()
    return _save_tight(fig, out)


def metric_panels_figure(table: ProtocolTable):
    """One panel per declared metric of the table that has a better direction, against NFE
    (or, when no NFE is recorded, side by side: one tick per backend and method, its settings
    next to each other), one line per backend and method."""
    specs = [s for s in table.metrics if s.better]
    f = table.frame
    if not specs or f.empty:
        return None
    plt = _plt()
    cols = min(3, len(specs))
    rows = -(-len(specs) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.4 * cols, 3.4 * rows), squeeze=False)
    x_key = "nfe" if f["nfe"].notna().any() else None
    lines = list(_lines(table))
    for ax, spec in zip(axes.flat, specs):
        for i, (label, grp, look) in enumerate(lines):
            g = grp[grp[f"{spec.key}_mean"].notna()]
            if g.empty:
                continue
            x = g["nfe"] if x_key else i + np.linspace(-0.25, 0.25, len(g)) * (len(g) > 1)
            ax.errorbar(x, g[f"{spec.key}_mean"], yerr=g[f"{spec.key}_std"].fillna(0).to_numpy(),
                        fmt="o" if len(g) > 1 else "s", capsize=3, ms=5, label=label, color=look["color"],
                        linestyle=look["linestyle"] if len(g) > 1 else "none")
        ax.set_ylabel(table.label(spec))
        if x_key:
            ax.set_xlabel("network evaluations per image (NFE)")
            if f["nfe"].max() / max(f["nfe"].min(), 1) > 10:
                ax.set_xscale("log")
        else:  # no NFE recorded: one tick per line
            ax.set_xticks(range(len(lines)), [textwrap.shorten(lab, 18) for lab, _, _ in lines], fontsize=7)
            ax.set_xlim(-0.6, len(lines) - 0.4)
        ax.set_title(f"{table.label(spec)} ({spec.better} is better)", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(specs):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=7, frameon=False)
    warn = "" if table.comparable else f" — ⚠ {NOT_COMPARABLE}"
    fig.suptitle(f"Every metric — {table.title}{warn}", fontsize=9)
    fig.tight_layout(rect=(0, 0.08, 1, 0.95))
    return fig


def plot_metric_panels(table: ProtocolTable, out: Path) -> Path | None:
    return _save_as_is(metric_panels_figure(table), out)


def knob_axis_label(table: ProtocolTable) -> str:
    """``knob value (ψ: truncation; T: temperature)``: the knobs moved in this table, each with the
    symbol its family declares (``KNOB_SYMBOLS``, recorded with every evaluation)."""
    f = table.frame
    named: dict[str, str] = {}
    for knob, symbols in zip(f["knob"], f["knob_symbols"] if "knob_symbols" in f else [{}] * len(f)):
        if knob:
            named.setdefault(knob, (symbols or {}).get(knob) or knob)
    parts = [f"{symbol}: {knob}" if symbol != knob else knob for knob, symbol in sorted(named.items())]
    return "knob value" + (f" ({'; '.join(parts)})" if parts else "")


def _tradeoff_lines(table: ProtocolTable):
    """(label, knob, rows sorted by knob value, backend) of every knob line: the settings of one
    declared knob at one base setting (the other sampler settings equal), its neutral point among
    them. ``_v`` is the knob's value on each row (its neutral value on the neutral row). Settings
    that differ otherwise (sampler steps, methods) are separate lines, or, without a moved knob, no
    line at all: they belong to the quality-vs-NFE figure. Labels name the backend and the knob;
    configuration and budget only when they differ between lines."""
    f = table.frame
    groups = list(f.groupby(["backend", "config", "budget"], sort=True))
    vary = {i: len({key[i] for key, _ in groups}) > 1 for i in (1, 2)}
    for (backend, config, budget), grp in groups:
        name = " ".join(x for i, x in ((0, backend), (1, config), (2, budget)) if x and (i == 0 or vary[i]))
        knobs = set().union(*[set(n or ()) for n in grp["knob_names"]]) if "knob_names" in grp else set()

        def base(settings) -> str:
            return json.dumps({k: v for k, v in (settings or {}).items() if k not in knobs}, sort_keys=True,
                              default=str)

        bases = grp["settings"].map(base) if "settings" in grp else pd.Series("", index=grp.index)
        several = bases[grp["knob"] != ""].nunique() > 1
        for knob in sorted(k for k in grp["knob"].unique() if k):
            for b in sorted(bases[grp["knob"] == knob].unique()):
                moved = grp[(grp["knob"] == knob) & (bases == b)]
                neutral = grp[(grp["knob"] == "") & (bases == b)]
                rows = pd.concat([neutral, moved]) if len(neutral) else moved
                neutrals = moved["knob_neutrals"].iloc[0] if "knob_neutrals" in moved else {}
                neutral_value = float((neutrals or {}).get(knob) or 0.0)
                values = [neutral_value if k == "" else float(v) for k, v in zip(rows["knob"], rows["knob_value"])]
                rows = rows.assign(_v=values).sort_values("_v")
                symbols = moved["knob_symbols"].iloc[0] if "knob_symbols" in moved else {}
                at = f" at {short_setting(json.loads(b))}" if several else ""
                symbol = (symbols or {}).get(knob)
                named = f"{symbol} ({knob})" if symbol and symbol != knob else knob
                yield f"{name}: {named}{at}", knob, rows, backend


def tradeoff_figure(table: ProtocolTable):
    """Fidelity vs diversity as each family's knob moves (guidance scale, CFG weight, truncation,
    temperature): precision vs recall, and FID (FD) vs IS (CS) or the toy pair; every family on one
    axes, the unguided / untruncated point of each drawn as a star. None without any moved knob."""
    f = table.frame
    if "knob" not in f or not (f["knob"] != "").any():
        return None
    from generative_bench.evaluation.schema import tradeoff_panels

    def measured(key: str) -> bool:
        return key in present and f[f"{key}_mean"].notna().any()

    present = {s.key: s for s in table.metrics}
    pairs = []
    for _, xs, ys in tradeoff_panels():  # each panel: its first measured x (else the knob) and y
        y = next((k for k in ys if measured(k)), None)
        if y is not None:
            pairs.append((next((k for k in xs if measured(k)), "knob"), y))
    if not pairs:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(pairs), figsize=(5.6 * len(pairs), 4.6), squeeze=False)
    notes: dict[Any, list] = {}  # knob-value labels per panel, placed once the layout is final
    for ax, (xk, yk) in zip(axes[0], pairs):
        drawn: dict[str, int] = {}  # lines per backend: one colour per backend, one style per line
        for label, knob, rows, backend in _tradeoff_lines(table):
            color = backend_style(table, backend)["color"]
            x_col = "_v" if xk == "knob" else f"{xk}_mean"
            g = rows[rows[x_col].notna() & rows[f"{yk}_mean"].notna()]
            if g.empty:
                continue
            style = LINE_STYLES[drawn.get(backend, 0) % len(LINE_STYLES)]
            drawn[backend] = drawn.get(backend, 0) + 1
            ax.plot(g[x_col], g[f"{yk}_mean"], marker="o", linestyle=style, color=color, ms=4, label=label)
            if xk != "knob":
                notes[ax] = notes.get(ax, []) + [(row[x_col], row[f"{yk}_mean"], f"{row['knob_value']:g}", color)
                                                 for _, row in g.iterrows() if row["knob"]]
            base = g[g["knob"] == ""]
            ax.plot(base[x_col], base[f"{yk}_mean"], "*", color=color, ms=13, mec="black", mew=0.6)
        ax.set_xlabel(knob_axis_label(table) if xk == "knob"
                      else table.label(present[xk]) + f" ({present[xk].better} is better)")
        ax.set_ylabel(table.label(present[yk]) + f" ({present[yk].better} is better)")
        ax.xaxis.set_major_locator(plt.MaxNLocator(5))  # long tick labels of a narrow range do not collide
        ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    ncol = min(3, max(1, len(labels)))
    fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=7, frameon=False)
    warn = "" if table.comparable else f" — ⚠ {NOT_COMPARABLE}"
    fig.suptitle(f"Fidelity vs diversity as the knob moves (★ = the knob at its neutral value) — {table.pid}{warn}",
                 fontsize=9)
    fig.tight_layout(rect=(0, 0.04 + 0.035 * -(-len(labels) // ncol), 1, 0.94))
    for ax, items in notes.items():
        place_labels(ax, items)
    return fig


def plot_tradeoff(table: ProtocolTable, out: Path) -> Path | None:
    return _save_as_is(tradeoff_figure(table), out)


def place_labels(ax, labels: list[tuple[float, float, str, Any]], fontsize: int = 6, gap: float = 2.0) -> None:
    """Annotate each ``(x, y, text, color)`` next to its point: right of it first, then left,
    moved up or down by whole lines until its box overlaps no label already placed and stays
    inside the axes (greedy, in display space; a leader line marks a moved label). Call after
    the axis limits and the layout are final."""
    fig = ax.figure
    fig.canvas.draw_idle()
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    placed: list[Any] = []
    step = fontsize + gap
    shifts = [0] + [k for j in range(1, 7) for k in (j, -j)]
    candidates = [(side, k) for k in shifts for side in (1, -1)]
    for x, y, text, color in labels:
        ann = None
        for side, k in candidates:
            if ann is not None:
                ann.remove()
            moved = k != 0
            ann = ax.annotate(text, (x, y), fontsize=fontsize, xytext=(3 * side, 3 + k * step),
                              textcoords="offset points", color=color, ha="left" if side > 0 else "right",
                              arrowprops={"arrowstyle": "-", "lw": 0.4, "color": color, "alpha": 0.6} if moved else None)
            box = text_box(ann, renderer)
            inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
            if inside and not any(box.overlaps(other) for other in placed):
                break
        else:  # nowhere free: the plain position, as before
            ann.remove()
            ann = ax.annotate(text, (x, y), fontsize=fontsize, xytext=(3, 3), textcoords="offset points", color=color)
        placed.append(text_box(ann, renderer))


def text_box(ann, renderer):
    """The box of an annotation's text alone (``Annotation.get_window_extent`` adds its leader line)."""
    from matplotlib.text import Text

    ann.update_positions(renderer)
    return Text.get_window_extent(ann, renderer)


def point_label(row: Mapping[str, Any]) -> str:
    """What a point of one row is called in a figure: its knob setting (``ψ=0.5``, with the symbol
    its family declares) when it has one, else its network evaluations, else its sampler."""
    if row.get("knob"):
        symbol = (row.get("knob_symbols") or {}).get(row["knob"]) or row["knob"]
        return f"{symbol}={row['knob_value']:g}"
    nfe = row.get("nfe")
    return f"NFE {nfe:.0f}" if nfe is not None and nfe == nfe else str(row.get("sampler", ""))


def plot_precision_recall(table: ProtocolTable, out: Path) -> Path | None:
    """The declared precision–recall panel (``Output.tradeoff = ("precision-recall", axis)``): the
    first pair of its x / y outputs that this table measured; one point per row, coloured by
    family, labels (knob setting or NFE) that do not overlap."""
    from generative_bench.evaluation.schema import tradeoff_panels

    f = table.frame

    def measured(key: str) -> bool:
        return f"{key}_mean" in f and f[f"{key}_mean"].notna().any()

    keys = next(((p, r) for panel, xs, ys in tradeoff_panels() if panel == "precision-recall"
                 for r in xs for p in ys if measured(p) and measured(r)
                 and (f[f"{p}_mean"].notna() & f[f"{r}_mean"].notna()).any()), None)
    if keys is None:
        return None
    p, r = keys
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    notes = []
    for backend, grp in f.groupby("backend", sort=True):
        g = grp[grp[f"{p}_mean"].notna() & grp[f"{r}_mean"].notna()]
        color = backend_style(table, backend)["color"]
        ax.errorbar(g[f"{r}_mean"], g[f"{p}_mean"], xerr=g[f"{r}_std"].fillna(0), yerr=g[f"{p}_std"].fillna(0),
                    fmt="o", capsize=3, label=backend, color=color)
        if len(g) > 1:
            notes += [(row[f"{r}_mean"], row[f"{p}_mean"], point_label(row), color)
                      for _, row in g.sort_values(f"{p}_mean", ascending=False).iterrows()]
    labels = {s.key: table.label(s) for s in metric_specs()}
    ax.set_xlabel(labels[r] + " (coverage of the data)")
    ax.set_ylabel(labels[p] + " (fidelity)")
    for axis, col in ((ax.set_xlim, f"{r}_mean"), (ax.set_ylim, f"{p}_mean")):  # the data's range, not [0, 1]
        vals = f[col].dropna()
        pad = max(0.03, 0.08 * float(vals.max() - vals.min()))
        axis(max(-0.02, float(vals.min()) - pad), min(1.02, float(vals.max()) + pad))
    ax.grid(alpha=0.3)
    _legend_outside(fig, ax)
    ax.set_title(f"Precision vs recall — {table.pid}", fontsize=9)
    fig.tight_layout()
    place_labels(ax, notes)
    return _save_tight(fig, out)


def plot_training(log_csv: Path, out: Path, title: str) -> Path | None:
    """Loss curves against step; D(real)/D(fake) on their own panel when present."""
    import pandas as pd

    if not log_csv.is_file():
        return None
    log = pd.read_csv(log_csv)
    if "step" not in log.columns or log.empty:
        raise InputError(f"{str(log_csv)!r} has no 'step' column or no rows")
    log = log.apply(pd.to_numeric, errors="coerce")
    d_cols = [c for c in _D_OUTPUTS if c in log.columns]
    loss_cols = [c for c in log.columns if c not in _LOG_SKIP and c not in d_cols and not c.startswith("grad_norm")
                 and log[c].notna().any()]
    if not loss_cols and not d_cols:
        return None
    plt = _plt()
    n = 1 + bool(d_cols)
    fig, axes = plt.subplots(1, n, figsize=(5.2 * n, 3.8), squeeze=False)
    for c in loss_cols:
        axes[0][0].plot(log["step"], log[c], lw=1, label=c)
    axes[0][0].set_xlabel("step")
    axes[0][0].set_ylabel("loss")
    axes[0][0].legend(fontsize=7)
    axes[0][0].grid(alpha=0.3)
    if d_cols:
        for c in d_cols:
            axes[0][1].plot(log["step"], log[c], lw=1, label={"d_real": "D(real)", "d_fake": "D(fake)"}[c])
        axes[0][1].set_xlabel("step")
        axes[0][1].set_ylabel("discriminator output")
        axes[0][1].legend(fontsize=7)
        axes[0][1].grid(alpha=0.3)
    fig.suptitle(title, fontsize=9)
    return _save(fig, out)


def _log_frame(log_csv: Path) -> pd.DataFrame | None:
    """A training log as numbers (None when it has no step column or no rows)."""
    log = pd.read_csv(log_csv)
    if "step" not in log.columns or log.empty:
        return None
    return log.apply(pd.to_numeric, errors="coerce")


def training_quantities(log: pd.DataFrame) -> list[str]:
    """The logged quantities a training-curve figure is made for (losses, D outputs, bound terms)."""
    return [c for c in log.columns if c not in _LOG_SKIP and not c.startswith("grad_norm") and log[c].notna().any()]


def plot_training_metric(curves: list[tuple[str, pd.DataFrame]], name: str, out: Path, title: str) -> Path | None:
    """One figure for one logged quantity: a line per run, against the optimiser step."""
    curves = [(label, log) for label, log in curves if name in log.columns and log[name].notna().any()]
    if not curves:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.6, 3.2))
    for label, log in curves:
        g = log[log[name].notna()]
        ax.plot(g["step"], g[name], "-o" if len(g) < 5 else "-", lw=1, ms=3, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel({"d_real": "D(real)", "d_fake": "D(fake)"}.get(name, name))
    ax.grid(alpha=0.3)
    ax.set_title(textwrap.fill(f"{name} — {title}", 60), fontsize=8)
    _legend_outside(fig, ax)
    fig.tight_layout()
    return _save_tight(fig, out)


def _headline_sample_rows(table: ProtocolTable, h: Headline) -> list[tuple[pd.Series, dict[str, Any] | None]]:
    """(headline row, the measurement with samples at its setting, or None) per headline row."""
    out = []
    for _, hrow in h.frame.iterrows():
        cands = [r for r in table.rows
                 if r["backend"] == hrow["backend"] and r["sampler_key"] == hrow["sampler_key"]
                 and str(r.get("config", "")) == str(hrow["config"]) and (r["samples_file"] or r.get("grid_file"))]
        cands.sort(key=lambda r: (str(r["seed"]), r["run_dir"]))
        chosen = next((r for r in cands if any(p is not None and p.is_file() for p in _sample_files(r))), None)
        out.append((hrow, chosen))
    return out


def headline_samples_figure(table: ProtocolTable, h: Headline | None = None):
    """Every backend's samples at its headline setting, side by side: 2-D data as scatters over the
    true density on the same axes, images as their sample grids. None when no backend has samples."""
    h = h or headline(table)
    picks = _headline_sample_rows(table, h)
    if not picks or all(r is None for _, r in picks):
        return None
    loaded: list[tuple[str, Any]] = []
    for hrow, r in picks:
        label = f"{backend_display_name(hrow['backend'], hrow.get('display'))} — {short_setting(hrow['settings'])}"
        if r is None:
            loaded.append((label, None))
            continue
        label += f", seed {r['seed']}"
        path, grid = _sample_files(r)
        if path is not None and path.is_file():
            loaded.append((label, load_samples(path)))
        else:
            from PIL import Image

            with Image.open(grid) as im:
                loaded.append((label, ("grid", np.asarray(im.convert("RGB")))))
    plt = _plt()
    n = len(loaded)
    points = [a for _, a in loaded if isinstance(a, np.ndarray) and a.ndim == 2]
    toy = bool(points)
    fig, axes = plt.subplots(1, n, figsize=((2.9 if toy else 3.3) * n, 3.3 if toy else 3.6), squeeze=False)
    density = box = None
    if toy:
        record = next((r["record"].data for _, r in picks if r is not None), None)
        density = toy_density(record)
        allpts = np.concatenate(points)
        if density is not None:
            box = _density_box(density, allpts)
        else:
            box = (np.percentile(allpts, 0.5, axis=0) - 0.2, np.percentile(allpts, 99.5, axis=0) + 0.2)
    for ax, (label, arr) in zip(axes[0], loaded):
        if arr is None:
            ax.text(0.5, 0.5, "no samples recorded\nat this setting", ha="center", va="center", fontsize=8,
                    transform=ax.transAxes)
            ax.set_xticks([])
            ax.set_yticks([])
        elif isinstance(arr, tuple):
            ax.imshow(arr[1], interpolation="nearest")
            ax.axis("off")
        elif arr.ndim == 2:
            ax.scatter(arr[:, 0], arr[:, 1], s=1.5, alpha=0.45, color="tab:blue", rasterized=True)
            if density is not None:
                _density_contours(ax, density, arr, box)
            ax.set_xlim(box[0][0], box[1][0])
            ax.set_ylim(box[0][1], box[1][1])
            ax.set_aspect("equal")
            ax.tick_params(labelsize=6)
        else:
            grid = montage(arr[:64])
            ax.imshow(grid, cmap="gray" if grid.ndim == 2 else None, interpolation="nearest")
            ax.axis("off")
        ax.set_title(textwrap.fill(label, 34), fontsize=8)
    what = ("samples (blue) over the true density (red log-p contours), same axes" if toy and density is not None
            else "samples, same axes" if toy else "sample grids")
    fig.suptitle(textwrap.fill(f"{table.pid}: {what}, at each backend's headline setting", 45 * n), fontsize=8)
    fig.tight_layout()
    return fig


def plot_headline_samples(table: ProtocolTable, out: Path, h: Headline | None = None) -> Path | None:
    return _save_as_is(headline_samples_figure(table, h), out)


def _sample_files(row: dict[str, Any]) -> tuple[Path | None, Path | None]:
    """(samples npz, grid PNG) of a measurement row, each only when inside the row's run folder.

    The grid PNG is the recorded ``grid_file``, else ``<samples stem>_grid.png`` beside the npz.
    """
    run_dir = Path(row["run_dir"])
    samples = contained_path(run_dir, row.get("samples_file"))
    grid = contained_path(run_dir, row.get("grid_file"))
    if grid is None and samples is not None:
        recorded = Path(str(row["samples_file"]))
        grid = contained_path(run_dir, str(recorded.with_name(recorded.stem + "_grid.png")))
    return samples, grid


def _training_figures(table: ProtocolTable, figure: Callable[[str], Path], attempt, errors: list[str]) -> dict[str, Path]:
    """One figure per logged quantity over every run of ``table``: {quantity: png}."""
    runs: dict[str, dict[str, Any]] = {}
    for r in table.rows:
        runs.setdefault(r["run_dir"], r)
    several_configs = len({r["config"] for r in runs.values()}) > 1
    curves: list[tuple[str, pd.DataFrame]] = []
    for run_dir, r in runs.items():
        log_csv = contained_path(run_dir, "train_log.csv")
        if log_csv is None or not log_csv.is_file():
            continue
        try:
            log = _log_frame(log_csv)
        except Exception as e:  # a broken log costs its own curve only
            errors.append(f"training log of {run_dir}: {type(e).__name__}: {e}")
            continue
        if log is not None:
            label = f"{r['backend']} seed {r['seed']}" + (f" {r['config']}" if several_configs and r["config"] else "")
            curves.append((label, log))
    names: dict[str, None] = {}
    for _, log in curves:
        for c in training_quantities(log):
            names[c] = None
    made = {}
    for name in names:
        png = attempt(f"training curves {name} ({table.pid})", lambda: plot_training_metric(
            curves, name, figure(f"{slug(table.pid)}_training_{slug(name)}.png"), table.pid))
        if png:
            made[name] = png
    return made


def make_plots(board: Leaderboard, run_dirs: list[tuple[Path, str]], out_dir: Path) -> tuple[dict[str, Any], list[str]]:
    """All figures directly inside ``out_dir``; returns ({kind: ...paths}, [errors]).

    File names are built from :func:`slug` of record content and checked to stay in ``out_dir``;
    run files are read only when they resolve inside their run folder.
    """
    out_dir = Path(out_dir)
    if out_dir.is_symlink():
        raise InputError(f"figure folder {str(out_dir)!r} is a symbolic link; remove it or choose another --out folder")
    used_names: set[str] = set()

    def figure(name: str) -> Path:
        stem, n = name[:-4], 2
        while name in used_names:  # two labels with the same slug must not overwrite each other
            name, n = f"{stem}_{n}.png", n + 1
        used_names.add(name)
        return _output_file(out_dir, name)
    made: dict[str, Any] = {"samples": {}, "tradeoff": {}, "precision_recall": {}, "training": {},
                            "knob_tradeoff": {}, "metrics": {}, "headline_samples": {}, "training_metrics": {}}
    errors: list[str] = []

    def attempt(what: str, fn: Callable[[], Path | None]) -> Path | None:
        try:
            return fn()
        except Exception as e:  # one bad file must not stop the report
            errors.append(f"{what}: {type(e).__name__}: {e}")
            return None

    for table in board.tables:
        pid = table.pid
        h = headline(table)
        headline_keys = {str(k) for k in h.frame["sampler_key"]} if len(h.frame) else set()
        made["headline_samples"][pid] = attempt(f"headline samples {pid}", lambda: plot_headline_samples(
            table, figure(f"{slug(pid)}_headline_samples.png"), h))
        samples: dict[str, Path] = {}
        by_backend: dict[str, list[dict[str, Any]]] = {}
        for r in table.rows:
            if r["samples_file"] or r.get("grid_file"):
                by_backend.setdefault(r["backend"], []).append(r)
        for backend, rows in sorted(by_backend.items()):
            # the headline setting first, then the most network evaluations
            rows.sort(key=lambda r: (r["sampler_key"] not in headline_keys, -(r["nfe"] or 0), str(r["seed"]),
                                     r["run_dir"]))
            # a row whose samples (or grid PNG) are on disk; a copy published without .npz files may have none
            r = next((x for x in rows if any(f is not None and f.is_file() for f in _sample_files(x))), rows[0])
            path, grid = _sample_files(r)
            if path is None and grid is None:
                errors.append(f"samples of {backend}: the recorded samples file is not inside {r['run_dir']}; ignored")
                continue
            if not any(f is not None and f.is_file() for f in (path, grid)):
                errors.append(f"samples of {backend}: no recorded samples file is present in its run folder "
                              f"({Path(r['run_dir']).name}; a copy published without .npz files)")
                continue
            title = f"{backend} — {r['sampler']}, seed {r['seed']}"
            png = attempt(f"samples of {backend} ({path or grid})", lambda: plot_samples(
                path, figure(f"{slug(pid)}_samples_{slug(backend)}.png"), title, r["record"].data, grid))
            if png:
                samples[backend] = png
        made["samples"][pid] = samples
        made["tradeoff"][pid] = attempt(f"trade-off plot {pid}", lambda: plot_quality_speed(
            table, figure(f"{slug(pid)}_quality_vs_nfe.png")))
        made["precision_recall"][pid] = attempt(f"precision/recall plot {pid}", lambda: plot_precision_recall(
            table, figure(f"{slug(pid)}_precision_recall.png")))
        made["knob_tradeoff"][pid] = attempt(f"fidelity-diversity figure {pid}", lambda: plot_tradeoff(
            table, figure(f"{slug(pid)}_fidelity_diversity.png")))
        made["metrics"][pid] = attempt(f"metric panels {pid}", lambda: plot_metric_panels(
            table, figure(f"{slug(pid)}_metrics.png")))
        made["training_metrics"][pid] = _training_figures(table, figure, attempt, errors)
    for i, (run_dir, label) in enumerate(run_dirs):
        log = contained_path(run_dir, "train_log.csv")
        if log is None:
            if Path(run_dir, "train_log.csv").is_symlink():
                errors.append(f"training curves of {run_dir}: train_log.csv links outside the run folder; ignored")
            continue
        png = attempt(f"training curves of {run_dir}", lambda: plot_training(
            log, figure(f"train_{i:03d}_{slug(label)}.png"), label))
        if png:
            made["training"][str(run_dir)] = png
    return made, errors


__all__ = ["headline_samples_figure", "load_samples", "make_plots", "metric_panels_figure", "montage",
           "plot_headline_samples", "plot_metric_panels", "plot_training_metric", "training_quantities",
           "plot_precision_recall", "plot_quality_speed", "plot_tradeoff", "tradeoff_figure",
           "plot_samples", "plot_training", "quality_metric", "toy_density"]
