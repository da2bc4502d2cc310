"""Ground truth of a generated synthetic dataset: `SynthManifest`, saved as JSON.

Frame paths are relative to the output folder (the parent root that holds ``mars/``,
``dukemtmc-vidreid/``, ...), in temporal order. Per frame: COCO-18 keypoints ``(x, y, c)`` in
pixels of that frame (``c = 0``, ``x = y = 0`` when not visible), the fraction of the body's
pixels hidden by an occluder, the body's motion ``(dx, dy)`` to the next frame in px (see
`videoreid.data.synthetic.render`), the background's motion, and whether the detector
failed on that frame.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from videoreid.utils.io import atomic_write_text

MANIFEST_NAME = "synth_manifest.json"
FORMAT = "videoreid-synth-manifest"
VERSION = 1


def keypoints_path(frame: str | os.PathLike[str]) -> Path:
    """The OpenPose-style keypoint file written beside a frame: ``<stem>_keypoints.json``."""
    frame = Path(frame)
    return frame.with_name(f"{frame.stem}_keypoints.json")


@dataclass
class SynthTracklet:
    """Ground truth of one tracklet (one image for image layouts such as Market-1501).

    Attributes:
        tracklet_id: layout-specific id, unique within the dataset (e.g. ``"0001C1T0001"``,
            ``"train/0001/0003"``, ``"cam1/person001"``, ``"cam_a/person_0001"``).
        frames: frame paths relative to the output folder, temporal order.
        pid: identity label as written on disk (MARS: 0 distractor, -1 junk; PRID: the person
            number, which names DIFFERENT people in cam_a and cam_b beyond the shared ones).
        camid: 0-based camera index.
        subset: ``"train"``, ``"query"`` or ``"gallery"`` (for iLIDS-VID/PRID2011: under split
            0; ``"unused"`` for PRID persons outside every split).
        identity: index of the rendered identity (-1: background only, no person).
        kind: ``"normal"``, ``"distractor"``, ``"junk"`` or ``"background"``.
        keypoints: ``(T, 18, 3)`` float32.
        occluded: ``(T,)`` float32 in ``[0, 1]``.
        motion: ``(T, 2)`` float32 body motion to the next frame, px.
        bg_motion: ``(T, 2)`` float32 background motion to the next frame, px.
        failure: ``(T,)`` bool detector-failure frames.
        nominal_motion: ``(2,)`` the tracklet's body drift, px/frame.
        view: ``"front"``, ``"back"``, ``"left"`` or ``"right"``.
        occluder: occluder kind or None.
        meta: extra layout data (MARS ``row``; iLIDS/PRID ``person``).
    """

    tracklet_id: str
    frames: list[str]
    pid: int
    camid: int
    subset: str
    identity: int
    kind: str
    keypoints: np.ndarray
    occluded: np.ndarray
    motion: np.ndarray
    bg_motion: np.ndarray
    failure: np.ndarray
    nominal_motion: np.ndarray
    view: str
    occluder: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.frames)

    def to_json(self) -> dict[str, Any]:
        return {
            "tracklet_id": self.tracklet_id, "frames": list(self.frames), "pid": int(self.pid),
            "camid": int(self.camid), "subset": self.subset, "identity": int(self.identity),
            "kind": self.kind, "view": self.view, "occluder": self.occluder,
            "nominal_motion": np.round(self.nominal_motion.astype(np.float64), 4).tolist(),
            "keypoints": np.round(self.keypoints.astype(np.float64), 3).tolist(),
            "occluded": np.round(self.occluded.astype(np.float64), 4).tolist(),
            "motion": np.round(self.motion.astype(np.float64), 4).tolist(),
            "bg_motion": np.round(self.bg_motion.astype(np.float64), 4).tolist(),
            "failure": [bool(f) for f in self.failure],
            "meta": self.meta,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> SynthTracklet:
        T = len(d["frames"])
        return cls(
            tracklet_id=d["tracklet_id"], frames=list(d["frames"]), pid=int(d["pid"]),
            camid=int(d["camid"]), subset=d["subset"], identity=int(d["identity"]),
            kind=d["kind"], view=d["view"], occluder=d.get("occluder"),
            nominal_motion=np.asarray(d["nominal_motion"], dtype=np.float32),
            keypoints=np.asarray(d["keypoints"], dtype=np.float32).reshape(T, 18, 3),
            occluded=np.asarray(d["occluded"], dtype=np.float32).reshape(T),
            motion=np.asarray(d["motion"], dtype=np.float32).reshape(T, 2),
            bg_motion=np.asarray(d["bg_motion"], dtype=np.float32).reshape(T, 2),
            failure=np.asarray(d["failure"], dtype=bool).reshape(T),
            meta=dict(d.get("meta", {})),
        )


@dataclass
class SynthManifest:
    """Everything `generate` wrote, with the ground truth of every tracklet.

    Attributes:
        layout: ``"mars"``, ``"dukev"``, ``"ilidsvid"``, ``"prid2011"`` or ``"market1501"``.
        root: the output folder (not serialised; set on load to the manifest's folder).
        dataset_dir: the dataset folder relative to ``root`` (e.g. ``"mars"``).
        seed, preset, knobs, height, width, cameras: generation settings.
        tracklets: ground truth per tracklet, in the layout's natural order (MARS: train
            rows then test rows, in the row order of the ``.mat`` files).
        splits: iLIDS-VID / PRID2011: the 10 ``{"train": [...], "test": [...]}`` person-name
            splits as written on disk; else empty.
        identities: per rendered identity, a summary of its attributes.
        camera_info: per camera, its appearance settings.
        stats: counts (frames, tracklets, per subset).
        elapsed_s: wall time of the generation (not serialised: files stay byte-identical).
    """

    layout: str
    dataset_dir: str
    seed: int
    preset: str
    knobs: dict[str, Any]
    height: int
    width: int
    cameras: int
    tracklets: list[SynthTracklet]
    splits: list[dict[str, list[str]]] = field(default_factory=list)
    identities: list[dict[str, Any]] = field(default_factory=list)
    camera_info: list[dict[str, Any]] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    root: Path | None = None
    elapsed_s: float | None = None

    def frame_paths(self, tracklet: SynthTracklet) -> tuple[Path, ...]:
        """Absolute frame paths of a tracklet (needs ``root``)."""
        if self.root is None:
            raise ValueError("SynthManifest.root is not set; load it with SynthManifest.load")
        return tuple(self.root / f for f in tracklet.frames)

    def subset(self, name: str) -> list[SynthTracklet]:
        """Tracklets of one subset (``"train"``, ``"query"``, ``"gallery"``, ...)."""
        return [t for t in self.tracklets if t.subset == name]

    @property
    def num_frames(self) -> int:
        return sum(len(t) for t in self.tracklets)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "version": VERSION, "layout": self.layout,
            "dataset_dir": self.dataset_dir, "seed": self.seed, "preset": self.preset,
            "knobs": self.knobs, "height": self.height, "width": self.width,
            "cameras": self.cameras, "keypoint_format": "coco18 (OpenPose order), pixels",
            "motion": "forward: position in frame t+1 minus in frame t (px); last frame = nominal",
            "splits": self.splits, "identities": self.identities,
            "camera_info": self.camera_info, "stats": self.stats,
            "tracklets": [t.to_json() for t in self.tracklets],
        }

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the manifest as compact JSON, atomically."""
        atomic_write_text(path, json.dumps(self.to_json(), separators=(",", ":")) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SynthManifest:
        """Read a manifest; a folder means ``<folder>/synth_manifest.json``.

        Raises:
            FileNotFoundError / ValueError naming the file when it is missing or not a
            manifest.
        """
        path = Path(path)
        if path.is_dir():
            path = path / MANIFEST_NAME
        if not path.is_file():
            raise FileNotFoundError(f"synthetic manifest not found: {path} (expected the "
                                    f"{MANIFEST_NAME} written by `videoreid synth`)")
        d = json.loads(path.read_text())
        if d.get("format") != FORMAT:
            raise ValueError(f"{path} is not a videoreid synthetic manifest "
                             f"(format={d.get('format')!r}, expected {FORMAT!r})")
        if d.get("version") != VERSION:
            raise ValueError(f"{path}: manifest version {d.get('version')} unsupported "
                             f"(expected {VERSION})")
        return cls(
            layout=d["layout"], dataset_dir=d["dataset_dir"], seed=int(d["seed"]),
            preset=d["preset"], knobs=d["knobs"], height=int(d["height"]),
            width=int(d["width"]), cameras=int(d["cameras"]),
            tracklets=[SynthTracklet.from_json(t) for t in d["tracklets"]],
            splits=d.get("splits", []), identities=d.get("identities", []),
            camera_info=d.get("camera_info", []), stats=d.get("stats", {}),
            root=path.parent,
        )
