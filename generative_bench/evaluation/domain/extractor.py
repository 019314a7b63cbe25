"""``DomainFeatures``: the evaluation harness's feature extractor for a trained domain classifier.

Where the ImageNet Inception-v3 cannot be used (air-gapped clusters, other image domains), the
same metric family is computed on the features of a classifier trained on the user's own
labelled data (``gbench train-extractor``): ``pool`` = its penultimate layer, ``logits`` = its
class logits. The figures are labelled with the extractor's name (``FD_cifar10-resnet``,
``KD_...``, ``CS_...``; see :mod:`~generative_bench.evaluation.domain.naming`) and are
comparable only with figures made with the same weights (the sha256 travels in ``describe()``).

    gbench evaluate ... eval/features=cifar10_resnet      # the shipped CIFAR-10 extractor
    DomainFeatures(weights="run/cifar10_resnet.pt")        # any trained one (manifest beside it)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from generative_bench.errors import InputError
from generative_bench.evaluation.domain.manifest import load_net, read_manifest
from generative_bench.evaluation.domain.naming import metric_names
from generative_bench.evaluation.domain.nets import net_outputs
from generative_bench.evaluation.features import FeatureExtractor

ASSETS_DIR = Path(__file__).resolve().parents[2] / "assets"


def asset_paths(asset: str) -> tuple[Path, Path]:
    """(weights, manifest) of a shipped extractor, e.g. ``cifar10_resnet`` -> assets/cifar10_resnet.{pt,json}."""
    weights, manifest = ASSETS_DIR / f"{asset}.pt", ASSETS_DIR / f"{asset}.json"
    if not weights.is_file():
        shipped = sorted(p.stem for p in ASSETS_DIR.glob("*.pt"))
        raise InputError(f"no shipped domain extractor {asset!r} in {ASSETS_DIR} (shipped: {shipped}); pass "
                         "weights=/path/to/<name>.pt from a `gbench train-extractor` run instead")
    return weights, manifest


class DomainFeatures(FeatureExtractor):
    """Features of a domain classifier: ``pool`` (N, feature_dim) and ``logits`` (N, classes), float32.

    ``extract`` / ``extract_tensor`` come from :class:`FeatureExtractor` (uint8 checks, batching,
    strict float32); no ``spatial`` features, so sFD is not available.

    Args:
        weights: the ``.pt`` state dict written by ``gbench train-extractor``.
        manifest: its ``.json`` manifest (default: the weights path with suffix ``.json``).
        asset: name of a shipped extractor (e.g. ``"cifar10_resnet"``), used when ``weights`` is None.
        sha256: optional expected sha256 of the weights file (pins the exact weights in a config).
        device: where the net runs (float32).
        batch_size: images per forward pass inside :meth:`extract`.
        tta_flip: average features over the image and its mirror; default: as in the manifest
            (the setting its test accuracy was measured with).
    """

    kind = "domain"
    FEATURES = ("pool", "logits")

    def __init__(self, weights: str | os.PathLike | None = None, manifest: str | os.PathLike | None = None,
                 asset: str | None = None, sha256: str | None = None, device: torch.device | str = "cpu",
                 batch_size: int = 500, tta_flip: bool | None = None):
        if weights is None and asset is None:
            raise InputError("DomainFeatures needs weights= (a trained extractor's .pt) or asset= (a shipped one, "
                             "e.g. 'cifar10_resnet')")
        if weights is None:
            weights, default_manifest = asset_paths(str(asset))
        else:
            weights = Path(weights).expanduser()
            default_manifest = weights.with_suffix(".json")
        self.weights_path = Path(weights)
        self.manifest_path = Path(manifest).expanduser() if manifest is not None else default_manifest
        self.manifest = read_manifest(self.manifest_path)
        net, self.weights_sha256 = load_net(self.weights_path, self.manifest, expected_sha256=sha256)
        self.device = torch.device(device)
        self.net = net.to(self.device).to(memory_format=torch.channels_last).eval()
        self.name = str(self.manifest["name"])
        self.batch_size = int(batch_size)
        self.tta_flip = bool(self.manifest.get("input", {}).get("tta_flip", True)) if tta_flip is None else bool(tta_flip)
        self.input_shape = tuple(self.manifest.get("input", {}).get("shape") or ())
        self.channels = self.input_shape[0] if self.input_shape else None
        self.dims = {"pool": int(self.manifest["feature_dim"]), "logits": int(self.manifest["num_classes"])}

    # ------------------------------------------------------------------ description
    def describe(self) -> dict[str, Any]:
        m = self.manifest
        train, test = m.get("training", {}), m.get("evaluation", {})
        return {
            "name": self.name,
            "kind": self.kind,
            "metric_prefix": f"FD_{self.name}",
            "metric_names": metric_names(self.name),
            "weights_sha256": self.weights_sha256,
            "weights_file": self.weights_path.name,
            "pretrained": True,
            # not FID/KID/IS: never comparable to published (Inception) figures, only to figures
            # made with these same weights
            "comparable": False,
            "warning": (f"domain feature space {self.name} (classifier trained on {train.get('dataset')} "
                        f"{train.get('split')}): FD/KD/CS are not FID/KID/IS; compare only with figures from the "
                        f"same weights (sha256 {self.weights_sha256[:12]}...)"),
            "dims": dict(self.dims),
            "architecture": m["architecture"].get("class", "").rpartition(".")[2],
            "parameters": m["architecture"].get("parameters"),
            "tta_flip": self.tta_flip,
            "input_shape": list(self.input_shape),
            "training": {k: train.get(k) for k in ("dataset", "variant", "split", "examples", "seed")},
            "test_accuracy": test.get("accuracy"),
            "test_split": test.get("split"),
            "class_names": list(m["class_names"]),
        }

    # ------------------------------------------------------------------ extraction
    def _forward(self, x_uint8: torch.Tensor) -> dict[str, torch.Tensor]:
        """One validated uint8 batch -> float32 ``pool`` (N, feature_dim) and ``logits`` (N, classes)."""
        if self.input_shape and tuple(x_uint8.shape[1:]) != self.input_shape:
            raise InputError(f"domain extractor {self.name} was trained on {list(self.input_shape)} images but got "
                             f"{list(x_uint8.shape[1:])}; resize the samples (or train an extractor at that size)")
        pool, logits = net_outputs(self.net, x_uint8, self.tta_flip, self.device)
        return {"pool": pool, "logits": logits}


__all__ = ["ASSETS_DIR", "DomainFeatures", "asset_paths"]
