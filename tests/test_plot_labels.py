"""Point labels in the report's figures do not collide (plots.place_labels / point_label)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from generative_bench.reporting.plots import place_labels, point_label, text_box  # noqa: E402


def test_labels_of_a_dense_cluster_do_not_overlap_and_stay_inside():
    fig, ax = plt.subplots(figsize=(5, 4))
    xs = [0.97 + 0.001 * i for i in range(8)] + [0.5, 0.51]
    ys = [0.8 + 0.002 * i for i in range(8)] + [0.5, 0.5]
    ax.scatter(xs, ys)
    ax.set_xlim(0, 1.0)
    ax.set_ylim(0.4, 0.9)
    fig.tight_layout()
    place_labels(ax, [(x, y, f"NFE {10 * i}", "C0") for i, (x, y) in enumerate(zip(xs, ys))])
    renderer = fig.canvas.get_renderer()
    boxes = [text_box(t, renderer) for t in ax.texts]
    assert len(boxes) == 10
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    frame = ax.get_window_extent(renderer)
    assert all(frame.x0 <= b.x0 and b.x1 <= frame.x1 for b in boxes)  # the labels near x = 1 went left
    plt.close(fig)


def test_a_point_is_named_by_its_knob_symbol_else_its_nfe():
    assert point_label({"knob": "truncation", "knob_value": 0.5, "knob_symbols": {"truncation": "ψ"}}) == "ψ=0.5"
    assert point_label({"knob": "cfg_scale", "knob_value": 2.0, "knob_symbols": {}}) == "cfg_scale=2"
    assert point_label({"knob": "", "nfe": 50.0, "sampler": "ddpm (steps=50)"}) == "NFE 50"
    assert point_label({"knob": "", "nfe": float("nan"), "sampler": "gan"}) == "gan"
