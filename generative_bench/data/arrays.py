"""The rules for arrays read from files (sample npz, reference batches, image datasets), shared
by every reader: what was found, and the exact conversion when it is not what is expected.

* images: uint8 NHWC with 1 or 3 channels (guided-diffusion's sample and reference batches);
  a float array gets the conversion for the range it holds ([0, 1], [-1, 1] or [0, 255]), an NCHW
  array the transpose, a text or object array a plain refusal;
* labels: one integer class label per image, in [0, num_classes) when the number of classes is
  known (a label outside it would silently drop out of per-class metrics).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from generative_bench.errors import InputError


def float_conversion(arr: np.ndarray) -> str:
    """The conversion to uint8 for a float image array, chosen by the range its values span."""
    finite = arr[np.isfinite(arr)] if arr.size else arr
    if finite.size == 0:
        return "it holds no finite value: re-create the file"
    lo, hi = float(finite.min()), float(finite.max())
    found = f"values in [{lo:.3g}, {hi:.3g}]"
    if lo >= 0.0 and hi <= 1.0:
        return f"{found}, so [0, 1] data: np.clip(np.round(x * 255), 0, 255).astype(np.uint8)"
    if lo >= -1.0 and hi <= 1.0:
        return f"{found}, so [-1, 1] data: np.clip(np.round((x + 1) * 127.5), 0, 255).astype(np.uint8)"
    if lo >= 0.0 and hi <= 255.0:
        return f"{found}, so [0, 255] data: np.clip(np.round(x), 0, 255).astype(np.uint8)"
    return f"{found}, outside every image range: rescale to [0, 255] first, then .astype(np.uint8)"


def check_image_array(arr: np.ndarray, where: str) -> np.ndarray:
    """``arr`` if it is uint8 NHWC with 1 or 3 channels; else an InputError that says what it is
    and how to convert it (``where`` names the file and key, e.g. ``'x.npz':arr_0``)."""
    kind = arr.dtype.kind
    if kind in "USO" or arr.dtype.names is not None:
        raise InputError(f"{where} holds {arr.dtype} values (text or records), not image pixels; save the images "
                         "as a uint8 (N, H, W, 3) array")
    layout = ""
    if arr.ndim == 4 and arr.shape[-1] not in (1, 3) and arr.shape[1] in (1, 3):
        layout = (f"; the shape {tuple(arr.shape)} looks channels-first (NCHW): transpose with "
                  "x.transpose(0, 2, 3, 1)")
    if arr.dtype != np.uint8:
        how = float_conversion(arr) if kind == "f" else (
            f"values in [{arr.min()}, {arr.max()}]: np.clip(x, 0, 255).astype(np.uint8)" if arr.size and kind in "iub"
            else "convert to uint8")
        raise InputError(f"{where} has dtype {arr.dtype}; expected uint8 NHWC images ({how}){layout}")
    if arr.ndim != 4 or arr.shape[-1] not in (1, 3):
        raise InputError(f"{where} has shape {tuple(arr.shape)}; expected (N, H, W, 3) uint8 NHWC{layout}")
    return arr


def check_labels(labels: Any, count: int, where: str, num_classes: int | None = None) -> np.ndarray:
    """Class labels as int64: 1-D, one per image, integers, in [0, num_classes) when that is known."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != int(count) or not np.issubdtype(labels.dtype, np.integer):
        raise InputError(f"{where} must hold one integer class label per image: found dtype {labels.dtype}, shape "
                         f"{tuple(labels.shape)} for {count} images; fix or drop it")
    labels = labels.astype(np.int64)
    limit = int(num_classes) if num_classes else None
    if len(labels):
        outside = (labels < 0) if limit is None else ((labels < 0) | (labels >= limit))
        if outside.any():
            allowed = f"[0, {limit})" if limit is not None else "[0, inf)"
            raise InputError(f"{where} holds class labels in [{int(labels.min())}, {int(labels.max())}], "
                             f"{int(outside.sum())} of them outside {allowed}"
                             + (f" (the data has {limit} classes)" if limit is not None else "")
                             + "; fix the labels, or drop them to score the samples unconditionally")
    return labels


__all__ = ["check_image_array", "check_labels", "float_conversion"]
