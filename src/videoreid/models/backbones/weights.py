"""Published weight files: one table of URLs, download once into the torch hub cache, verify.

``model.args.pretrained`` (every model) and AlignNet's ``model.args.pose_weights`` accept:

- ``"imagenet"`` (``"coco"`` for the OpenPose network): the standard published file of that
  network, from :data:`PUBLISHED` — downloaded once with a progress bar into
  ``<torch hub dir>/checkpoints`` (``$TORCH_HOME/hub/checkpoints``, default
  ``~/.cache/torch/hub/checkpoints``: :func:`torch.hub.get_dir`), verified, then loaded. A file
  already at that path is verified and used without any network access, so a machine without
  internet works once the file is placed there by hand.
- a local file path: loaded as it is (its SHA-256 is recorded, nothing is verified against it).
- ``"none"``: random initialisation, on purpose. ``None`` (the key left unset) also means
  random initialisation, but ``videoreid train`` refuses it for a full-size backbone
  (``engine.weights_check``): the papers all start from ImageNet.

Verification. torchvision's and Cadene's files carry the first hex digits of their SHA-256 in
the file name (``resnet50-0676ba61.pth``); the whole file's SHA-256 must start with them —
the check ``torch.hub`` applies with ``check_hash=True``. The converted OpenPose COCO body
weights (``body_pose_model.pth``, distributed by pytorch-openpose and mirrored on the Hugging
Face hub by ControlNet's annotators) have no published hash or size: their size is checked
against bounds derived from the architecture (the float32 payload of the 52,311,446
parameters, 209,245,784 bytes, plus at most 1 MiB of container overhead), the loader checks
every tensor's name and shape, and the SHA-256 of the file actually loaded is recorded in the
run's ``run_info.json``.

Failure (offline, HTTP error, hash or size mismatch) raises :class:`WeightsError` naming the
URL, the expected hash prefix and the exact path where the file can be placed by hand.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.error import URLError

import torch

log = logging.getLogger(__name__)

__all__ = ["PUBLISHED", "PublishedWeights", "WeightsError", "cache_dir", "file_sha256",
           "fetch", "resolve_weights", "describe_weights"]

PRETRAINED_ALIASES: dict[str, str] = {"imagenet": "imagenet", "coco": "coco"}
NONE_VALUES: tuple[str, ...] = ("none", "random", "scratch")


class WeightsError(RuntimeError):
    """A published weight file could not be obtained or did not verify; says what to do."""


@dataclass(frozen=True)
class PublishedWeights:
    """One published weight file.

    Attributes:
        network: what it initialises (a backbone name, or ``"openpose_body"``).
        dataset: what it was trained on (``"imagenet"``, ``"coco"``).
        url: where it is downloaded from.
        hash_prefix: leading hex digits of the file's SHA-256 as published in its name
            (``None`` when none is published).
        size_range: ``(min, max)`` file size in bytes, checked when no hash is published.
        origin: who publishes it (for messages and the docs).
    """

    network: str
    dataset: str
    url: str
    hash_prefix: str | None
    origin: str
    size_range: tuple[int, int] | None = None

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


_TV = "https://download.pytorch.org/models/"
_OPENPOSE_PAYLOAD = 52_311_446 * 4  # float32 parameters of the 6-stage COCO body model

# The one table of published weights: key = (network, dataset). torchvision: the
# IMAGENET1K_V1 files of torchvision.models.ResNet*_Weights (the original ResNet recipe the
# papers used; V2 is a later, stronger recipe). Cadene: pretrainedmodels' se_resnet50
# "imagenet" setting. OpenPose: the COCO body model converted by pytorch-openpose.
PUBLISHED: dict[tuple[str, str], PublishedWeights] = {
    ("resnet18", "imagenet"): PublishedWeights(
        "resnet18", "imagenet", _TV + "resnet18-f37072fd.pth", "f37072fd",
        "torchvision ResNet18_Weights.IMAGENET1K_V1"),
    ("resnet34", "imagenet"): PublishedWeights(
        "resnet34", "imagenet", _TV + "resnet34-b627a593.pth", "b627a593",
        "torchvision ResNet34_Weights.IMAGENET1K_V1"),
    ("resnet50", "imagenet"): PublishedWeights(
        "resnet50", "imagenet", _TV + "resnet50-0676ba61.pth", "0676ba61",
        "torchvision ResNet50_Weights.IMAGENET1K_V1"),
    ("resnet101", "imagenet"): PublishedWeights(
        "resnet101", "imagenet", _TV + "resnet101-63fe2227.pth", "63fe2227",
        "torchvision ResNet101_Weights.IMAGENET1K_V1"),
    ("se_resnet50", "imagenet"): PublishedWeights(
        "se_resnet50", "imagenet",
        "http://data.lip6.fr/cadene/pretrainedmodels/se_resnet50-ce0d4300.pth", "ce0d4300",
        "Cadene pretrainedmodels se_resnet50 'imagenet'"),
    ("openpose_body", "coco"): PublishedWeights(
        "openpose_body", "coco",
        "https://huggingface.co/lllyasviel/Annotators/resolve/main/body_pose_model.pth", None,
        "pytorch-openpose body_pose_model.pth (OpenPose COCO body, converted from caffe)",
        size_range=(_OPENPOSE_PAYLOAD, _OPENPOSE_PAYLOAD + 2**20)),
}


def cache_dir() -> Path:
    """``<torch.hub.get_dir()>/checkpoints`` (follows ``$TORCH_HOME``), where files are kept."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _expected(entry: PublishedWeights) -> str:
    if entry.hash_prefix:
        return f"SHA-256 starting with {entry.hash_prefix}"
    lo, hi = entry.size_range or (0, 0)
    return f"a size of {lo:,}-{hi:,} bytes (no hash is published)"


def _verify(entry: PublishedWeights, path: Path) -> str:
    """The file's SHA-256, after checking it against the table; raises :class:`WeightsError`."""
    digest = file_sha256(path)
    size = path.stat().st_size
    bad = None
    if entry.hash_prefix and not digest.startswith(entry.hash_prefix):
        bad = f"its SHA-256 is {digest}"
    elif entry.size_range and not entry.size_range[0] <= size <= entry.size_range[1]:
        bad = f"its size is {size:,} bytes"
    if bad:
        raise WeightsError(
            f"{path} is not the published {entry.network} {entry.dataset} weight file: {bad}, "
            f"expected {_expected(entry)} ({entry.origin}, {entry.url}). Delete it to download "
            f"again, or put the right file at exactly that path."
        )
    return digest


def _download(url: str, dst: Path) -> None:
    """Download ``url`` to ``dst`` with a progress bar (a temporary file, then a rename).

    A module-level function so that tests can replace it (they never touch the network).
    """
    torch.hub.download_url_to_file(url, os.fspath(dst), hash_prefix=None, progress=True)


def fetch(entry: PublishedWeights) -> tuple[Path, str]:
    """The verified local copy of ``entry`` (downloaded on first use) and its SHA-256.

    Raises:
        WeightsError: download failed (offline, HTTP error) or the file does not verify.
    """
    path = cache_dir() / entry.filename
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        log.info("downloading %s %s weights: %s -> %s", entry.network, entry.dataset,
                 entry.url, path)
        try:
            _download(entry.url, path)
        except (URLError, OSError, RuntimeError, ValueError) as e:
            if path.is_file():  # never leave a partial file where a complete one is expected
                path.unlink()
            raise WeightsError(
                f"cannot download the {entry.network} {entry.dataset} weights "
                f"({entry.origin}) from {entry.url}: {type(e).__name__}: {e}. Without network "
                f"access, download that file elsewhere and place it at exactly {path} "
                f"(expected: {_expected(entry)}); it is then used without network access."
            ) from e
        try:
            digest = _verify(entry, path)
        except WeightsError:
            path.unlink()  # a bad download must not be found again next time
            raise
    else:
        digest = _verify(entry, path)
    log.info("%s %s weights: %s (sha256 %s)", entry.network, entry.dataset, path, digest)
    return path, digest


def resolve_weights(network: str, spec: str | os.PathLike[str] | None) -> dict[str, Any]:
    """What ``pretrained=spec`` means for ``network``, with the file fetched if needed.

    Args:
        network: backbone name (``"resnet50"``) or ``"openpose_body"``.
        spec: ``None`` (unset), ``"none"`` (random on purpose), a published alias
            (``"imagenet"``, ``"coco"``) or a local file path.

    Returns:
        ``{"source": "unset"|"none"|"published"|"file", "path", "sha256", "url", "network",
        "dataset"}`` (path/sha256/url ``None`` where they do not apply) — recorded in the run
        info by the trainer.
    Raises:
        WeightsError: an alias with no published file for ``network`` (lists those that
            exist), or a failed download/verification.
        FileNotFoundError: a local path that does not exist.
    """
    info: dict[str, Any] = {"network": network, "source": "unset", "dataset": None,
                            "path": None, "sha256": None, "url": None}
    if spec is None:
        return info
    text = os.fspath(spec)
    if text.lower() in NONE_VALUES:
        return dict(info, source="none")
    if text.lower() in PRETRAINED_ALIASES:
        dataset = PRETRAINED_ALIASES[text.lower()]
        entry = PUBLISHED.get((network, dataset))
        if entry is None:
            have = sorted(f"{n} ({d})" for n, d in PUBLISHED)
            raise WeightsError(
                f"no published {dataset} weights for {network!r}; files exist for: "
                f"{', '.join(have)}. Use pretrained=none (random initialisation) or a local "
                "file path"
            )
        path, digest = fetch(entry)
        return dict(info, source="published", dataset=dataset, path=str(path), sha256=digest,
                    url=entry.url)
    path = Path(text).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"pretrained weights file not found: {text} (for {network}; expected "
            f"{' or '.join(repr(a) for a in PRETRAINED_ALIASES)}, 'none' or the path of a "
            "local weight file)"
        )
    return dict(info, source="file", path=str(path), sha256=file_sha256(path))


def describe_weights(info: dict[str, Any]) -> str:
    """One line for logs: ``resnet50: imagenet (…/resnet50-0676ba61.pth, sha256 0676ba61…)``."""
    src = info.get("source")
    if src in ("unset", "none"):
        return f"{info['network']}: random initialisation ({'pretrained=none' if src == 'none' else 'unset'})"
    what = info.get("dataset") or "local file"
    return f"{info['network']}: {what} ({info['path']}, sha256 {str(info['sha256'])[:16]}…)"
