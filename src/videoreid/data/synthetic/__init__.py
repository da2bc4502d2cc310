"""Procedural synthetic pedestrians written in the official dataset layouts.

``generate(layout, out, ids=..., cameras=..., seed=..., height=..., width=..., preset=...)``
renders walking people (COCO-18 skeleton, clothing patterns, viewpoint-dependent accessories)
seen by several cameras with their own backgrounds, lighting and blur, cropped by an
imperfect tracker (jitter, drift, detector failures) and partly hidden by moving occluders,
and writes them as MARS, DukeMTMC-VideoReID, iLIDS-VID, PRID2011 or Market-1501 files, with
OpenPose-format keypoints beside every frame and the ground truth in ``synth_manifest.json``.
See ``docs/synthetic.md``.
"""

from __future__ import annotations

from videoreid.data.synthetic.generate import generate
from videoreid.data.synthetic.layouts import LAYOUTS
from videoreid.data.synthetic.manifest import (
    MANIFEST_NAME,
    SynthManifest,
    SynthTracklet,
    keypoints_path,
)
from videoreid.data.synthetic.presets import PRESETS, Knobs, get_knobs

__all__ = [
    "LAYOUTS", "MANIFEST_NAME", "PRESETS", "Knobs", "SynthManifest", "SynthTracklet",
    "generate", "get_knobs", "keypoints_path",
]
