"""Find, download, verify and fingerprint the FID Inception weights.

The weights are the TF ``inception-2015-12-05`` graph converted to PyTorch, published by
pytorch-fid as ``pt_inception-2015-12-05-6726825d.pth`` (torch-fidelity mirrors the same file).
Like ``torch.hub``, the file name carries the first 8 hex digits of the file's sha256. Every file
(given, cached or downloaded) is checked against the file's full sha256 (:data:`KNOWN_SHA256`)
before use, and that digest is recorded with the results.

Where the file is looked for, in order:

1. an explicit ``path`` argument (e.g. ``eval.inception_weights=/path/to/file.pth``);
2. the environment variable ``GBENCH_INCEPTION_WEIGHTS``;
3. the cache ``$GBENCH_CACHE`` (default ``~/.cache/generative_bench``) and the torch hub cache
   (where pytorch-fid / torch-fidelity keep their copy);
4. a download into the cache from the pytorch-fid release, then the torch-fidelity mirror
   (skipped when ``GBENCH_OFFLINE=1``).
"""

from __future__ import annotations

import hashlib
import os
import urllib.request
from pathlib import Path

import torch

from generative_bench.errors import WeightsUnavailableError

FILENAME = "pt_inception-2015-12-05-6726825d.pth"
#: the digest prefix carried in the file name (for display; files are checked against KNOWN_SHA256)
SHA256_PREFIX = "6726825d"
#: full sha256 of the published file (95,628,359 bytes, 566 tensors); every file must match it
KNOWN_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
URLS = (
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + FILENAME,
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth",
)
ENV_WEIGHTS = "GBENCH_INCEPTION_WEIGHTS"
ENV_CACHE = "GBENCH_CACHE"
ENV_OFFLINE = "GBENCH_OFFLINE"
_HUB_NAMES = (FILENAME, "weights-inception-2015-12-05-6726825d.pth")


def cache_dir() -> Path:
    """``$GBENCH_CACHE`` or ``~/.cache/generative_bench``."""
    return Path(os.environ.get(ENV_CACHE) or Path.home() / ".cache" / "generative_bench")


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def how_to_provide() -> str:
    return (
        f"Provide the FID Inception weights ({FILENAME}, sha256 {KNOWN_SHA256}) in one of these ways: "
        f"(1) pass the file's path (InceptionFeatures(weights=PATH), or the eval config's inception weights "
        f"option); (2) set the environment variable {ENV_WEIGHTS}=PATH; (3) put the file in the cache folder "
        f"{cache_dir()} (set {ENV_CACHE} to move it); it is downloaded there automatically when online from "
        f"{' or '.join(URLS)}. For a pipeline test without the real weights use pretrained=False "
        f"(random-init Inception: NOT comparable to published figures)."
    )


def verify(path: str | os.PathLike) -> str:
    """Return the file's sha256; raise WeightsUnavailableError unless it equals :data:`KNOWN_SHA256`.

    The whole digest is compared, not the 8-digit prefix in the file name.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsUnavailableError(f"Inception weights file {path} does not exist. {how_to_provide()}")
    digest = file_sha256(path)
    if digest.lower() != KNOWN_SHA256.lower():
        raise WeightsUnavailableError(
            f"Inception weights file {path} has sha256 {digest}, but the FID Inception weights "
            f"({FILENAME}) have sha256 {KNOWN_SHA256}: the file is corrupt, "
            f"truncated or a different network. Delete it and download it again from {URLS[0]}."
        )
    return digest


def _download(dest: Path) -> None:
    """Download to ``dest`` via a temporary file; the first URL that works wins."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + f".part{os.getpid()}")
    errors = []
    for url in URLS:
        try:
            with urllib.request.urlopen(url, timeout=60) as r, open(tmp, "wb") as f:
                while block := r.read(1 << 20):
                    f.write(block)
            os.replace(tmp, dest)
            return
        except Exception as e:  # noqa: BLE001 - every failure is reported together below
            errors.append(f"{url}: {type(e).__name__}: {e}")
        finally:
            if tmp.exists():
                tmp.unlink()
    raise WeightsUnavailableError(
        "could not download the FID Inception weights (" + "; ".join(errors) + "). " + how_to_provide()
    )


def resolve_inception_weights(path: str | os.PathLike | None = None, download: bool = True) -> tuple[Path, str]:
    """Locate (or download) and verify the weights; returns ``(path, full sha256)``."""
    explicit = path if path is not None else os.environ.get(ENV_WEIGHTS) or None
    if explicit is not None:
        p = Path(explicit).expanduser()
        return p, verify(p)
    candidates = [cache_dir() / FILENAME]
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    candidates += [hub / name for name in _HUB_NAMES]
    for p in candidates:
        if p.is_file():
            return p, verify(p)
    if not download or os.environ.get(ENV_OFFLINE, "") not in ("", "0"):
        raise WeightsUnavailableError(
            f"the FID Inception weights were not found (looked in {', '.join(map(str, candidates))}) and "
            f"downloading is disabled ({ENV_OFFLINE}=1 or download=False). {how_to_provide()}"
        )
    dest = candidates[0]
    _download(dest)
    try:
        return dest, verify(dest)
    except WeightsUnavailableError:
        dest.unlink(missing_ok=True)  # never leave a bad file where the next run would trust it
        raise


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """``torch.load`` the verified weights safely (tensors only)."""
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise WeightsUnavailableError(f"could not read Inception weights {path}: {e}. {how_to_provide()}") from e
    if not isinstance(sd, dict):
        raise WeightsUnavailableError(f"{path} holds a {type(sd).__name__}, not a state dict. {how_to_provide()}")
    return sd


def state_dict_sha256(state_dict: dict[str, torch.Tensor]) -> str:
    """sha256 of a state dict's content: every key, dtype, shape and the raw tensor bytes, in key
    order. Fingerprints weights that exist only in memory (random init) so caches key correctly."""
    h = hashlib.sha256()
    for key in sorted(state_dict):
        t = state_dict[key].detach().to("cpu").contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()
