"""Weights + manifest of a domain extractor: writing, reading and checking that they belong together.

A domain extractor is two files side by side: ``<stem>.pt``, the classifier's state dict (read
with ``torch.load(weights_only=True)``; floating tensors may be stored as float16 and are loaded
as float32), and ``<stem>.json``, the manifest that names the architecture, the training data,
the test accuracy, the exact command and the sha256 of the weights file. Loading recomputes the
sha256 and refuses a weights file that the manifest does not describe.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import os
from pathlib import Path
from typing import Any

import torch

from generative_bench.errors import InputError
from generative_bench.evaluation.domain.nets import DomainNet
from generative_bench.io import atomic_write, atomic_write_json, read_json

FORMAT = "generative-bench/domain-extractor-1"
#: architectures are rebuilt only from this module (a manifest never imports arbitrary code)
NETS_MODULE = "generative_bench.evaluation.domain.nets"
REQUIRED = ("format", "name", "weights_sha256", "architecture", "feature_dim", "num_classes", "class_names",
            "training", "evaluation")


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def architecture_of(net: DomainNet) -> dict[str, Any]:
    cls = type(net)
    return {"class": f"{cls.__module__}.{cls.__qualname__}", "kwargs": dict(net.arch_kwargs),
            "parameters": sum(p.numel() for p in net.parameters())}


def save_weights(net: DomainNet, path: str | os.PathLike, dtype: str = "float16") -> str:
    """Save the state dict (floating tensors cast to ``dtype``) atomically; returns the file's sha256."""
    store = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
    if dtype not in store:
        raise InputError(f"weights dtype must be one of {sorted(store)}, got {dtype!r}")
    state = {k: (v.detach().to("cpu", store[dtype]) if v.is_floating_point() else v.detach().cpu()).contiguous()
             for k, v in net.state_dict().items()}
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write(path, lambda f: f.write(buf.getvalue()))
    return file_sha256(path)


def write_manifest(path: str | os.PathLike, manifest: dict[str, Any]) -> Path:
    missing = [k for k in REQUIRED if k not in manifest]
    if missing:
        raise ValueError(f"manifest lacks {missing}")
    return atomic_write_json(path, manifest)


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"domain extractor manifest {str(path)!r} not found; pass manifest= (the .json written "
                         "next to the weights by `gbench train-extractor`)")
    try:
        manifest = read_json(path)
    except ValueError as e:
        raise InputError(f"domain extractor manifest {str(path)!r} is not valid JSON ({e})") from e
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise InputError(f"{str(path)!r} is not a domain extractor manifest (format {found!r}, expected {FORMAT!r})")
    missing = [k for k in REQUIRED if k not in manifest]
    if missing:
        raise InputError(f"domain extractor manifest {str(path)!r} lacks the field(s) {missing}; regenerate it with "
                         "`gbench train-extractor`")
    return manifest


def build_net(manifest: dict[str, Any]) -> DomainNet:
    """Instantiate the manifest's architecture (a DomainNet class of the nets module only)."""
    arch = manifest["architecture"]
    module, _, name = str(arch.get("class", "")).rpartition(".")
    cls = getattr(importlib.import_module(NETS_MODULE), name, None) if module == NETS_MODULE else None
    if not (isinstance(cls, type) and issubclass(cls, DomainNet)):
        raise InputError(f"manifest architecture {arch.get('class')!r} is not a net of {NETS_MODULE}; "
                         "the manifest is corrupt or from an incompatible version")
    try:
        net = cls(**arch.get("kwargs", {}))
    except TypeError as e:
        raise InputError(f"manifest architecture kwargs do not fit {name}: {e}") from e
    if net.feature_dim != int(manifest["feature_dim"]) or net.num_classes != int(manifest["num_classes"]):
        raise InputError(f"manifest says feature_dim={manifest['feature_dim']}, num_classes={manifest['num_classes']} "
                         f"but its architecture gives {net.feature_dim}, {net.num_classes}: the manifest is inconsistent")
    if len(manifest["class_names"]) != net.num_classes:
        raise InputError(f"manifest lists {len(manifest['class_names'])} class names for {net.num_classes} classes")
    return net


def load_net(weights: str | os.PathLike, manifest: dict[str, Any], expected_sha256: str | None = None) -> tuple[DomainNet, str]:
    """(float32 net in eval mode, sha256) after checking the file against the manifest (and ``expected_sha256``)."""
    weights = Path(weights)
    if not weights.is_file():
        raise InputError(f"domain extractor weights {str(weights)!r} not found; pass weights= (the .pt written by "
                         "`gbench train-extractor`)")
    sha = file_sha256(weights)
    if sha != manifest["weights_sha256"]:
        raise InputError(f"weights file {str(weights)!r} has sha256 {sha} but its manifest names {manifest['weights_sha256']}: "
                         "the two files do not belong together; copy both the .pt and the .json from the same run folder")
    if expected_sha256 and sha != str(expected_sha256).lower():
        raise InputError(f"weights file {str(weights)!r} has sha256 {sha}, expected {expected_sha256} (the sha256 "
                         "setting of the extractor config): wrong or modified file")
    net = build_net(manifest)
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling errors come in many types
        raise InputError(f"cannot read {str(weights)!r} as a state dict ({type(e).__name__}: {e})") from e
    if not isinstance(state, dict):
        raise InputError(f"{str(weights)!r} holds a {type(state).__name__}, not a state dict")
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise InputError(f"weights {str(weights)!r} do not fit the manifest's architecture: {str(e).splitlines()[0]}") from e
    return net.float().eval(), sha


__all__ = ["FORMAT", "architecture_of", "build_net", "file_sha256", "load_net", "read_manifest", "save_weights",
           "write_manifest"]
