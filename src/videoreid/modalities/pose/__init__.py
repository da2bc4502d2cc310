"""Pose maps for AlignNet: keypoints ↔ 19 heatmaps + 38 PAFs, cache, clip loader.

Rambhatla & Jones (BMVC 2019) feed OpenPose's 57 output maps per frame (19 part heatmaps
including the background, 38 part-affinity-field maps; COCO-18 body model) to AlignNet. Two
sources provide them behind one channel layout (:mod:`~videoreid.modalities.pose.layout`):

1. **keypoints** — per-frame OpenPose JSON (``<frame stem>_keypoints.json``, written by
   OpenPose itself or by the synthetic generator) rendered into the maps exactly as
   OpenPose's training targets are built (:mod:`~videoreid.modalities.pose.render`), at
   ``1/stride`` of the frame (OpenPose's output stride 8), by the clip-loader modality
   :class:`~videoreid.modalities.pose.loader.PoseLoader` (``data.modalities: [pose]``);
2. **openpose** — the OpenPose body network itself (:mod:`videoreid.models.openpose`),
   loaded from the converted COCO weights ``body_pose_model.pth`` and run *inside* AlignNet
   (``model.args.pose_source: openpose``) so it is fine-tuned with its own learning rate.

``videoreid pose --dataset NAME --root DIR`` (:mod:`~videoreid.modalities.pose.compute`)
precomputes and caches maps (from either source) or keypoints (from the network) in
``<dataset folder>/pose_cache/`` (:mod:`~videoreid.modalities.pose.cache`); the loader's
``source="maps"`` reads that cache.

Horizontal flips need :func:`~videoreid.modalities.pose.layout.flip_pose_maps` (left/right
channels swapped, PAF x negated); ``ClipTransform`` applies that rule to ``pose`` through its
``flip_rules`` (set by ``engine.builders.build_transforms``).
"""

from videoreid.modalities.pose.cache import (
    CACHE_DIRNAME,
    META_NAME,
    PoseCache,
    PoseCacheError,
    find_pose_cache,
)
from videoreid.modalities.pose.compute import (
    PoseReport,
    compute_dataset_pose,
    compute_pose_cache,
    openpose_maps,
    single_person_keypoints,
)
from videoreid.modalities.pose.keypoints import (
    BODY25_TO_COCO18,
    KeypointFileError,
    keypoints_json,
    keypoints_path,
    parse_keypoints,
    read_keypoints,
)
from videoreid.modalities.pose.layout import (
    BACKGROUND,
    FLIP_PERMUTATION,
    FLIP_SIGN,
    KEYPOINT_NAMES,
    NUM_HEATMAPS,
    NUM_KEYPOINTS,
    NUM_MAPS,
    NUM_PAFS,
    PAF_LIMBS,
    PAF_OFFSET,
    PAIR_TO_PAF,
    POSE_PAIRS,
    flip_pose_maps,
    keypoint_index,
    paf_channels,
    paf_index,
)
from videoreid.modalities.pose.loader import PoseLoader, build_loader, frame_size
from videoreid.modalities.pose.render import (
    map_size,
    render_heatmaps,
    render_pafs,
    render_pose_maps,
)

__all__ = [
    "BACKGROUND", "BODY25_TO_COCO18", "CACHE_DIRNAME", "FLIP_PERMUTATION", "FLIP_SIGN",
    "KEYPOINT_NAMES", "META_NAME", "NUM_HEATMAPS", "NUM_KEYPOINTS", "NUM_MAPS", "NUM_PAFS",
    "PAF_LIMBS", "PAF_OFFSET", "PAIR_TO_PAF", "POSE_PAIRS", "KeypointFileError", "PoseCache",
    "PoseCacheError", "PoseLoader", "PoseReport", "build_loader", "compute_dataset_pose",
    "compute_pose_cache", "find_pose_cache", "flip_pose_maps", "frame_size", "keypoint_index",
    "keypoints_json", "keypoints_path", "map_size", "openpose_maps", "paf_channels",
    "paf_index", "parse_keypoints", "read_keypoints", "render_heatmaps", "render_pafs",
    "render_pose_maps", "single_person_keypoints",
]
