"""Optical flow for the two-stream models (``man``, ``gated_attention``): estimation, cache, loader.

Kiran et al. (sec. 4, "Optical Flow Estimation") feed frame pairs ``(I^{t-1}, I^t)`` to
LiteFlowNet to get ``F^{t-1}``. LiteFlowNet's weights cannot be downloaded here, so the
estimators are OpenCV's DIS (default, fast), Farnebäck and TV-L1 (when OpenCV has contrib),
plus a slot for a learned network loaded from local files (``estimators.TorchFlow``).

Pieces:

- :mod:`~videoreid.modalities.flow.estimators` — ``FlowEstimator`` interface,
  ``build_estimator(name, **args)``.
- :mod:`~videoreid.modalities.flow.codec` — the file format: 8-bit grey + alpha PNG,
  ``d = (value - 128) · step``, step 0.25 px (range ``[-32, 31.75]`` px, error ≤ 0.125 px).
- :mod:`~videoreid.modalities.flow.cache` — ``<dataset folder>/flow_cache/<frame path>.png``
  plus ``flow_meta.json`` (settings); the file of frame ``t`` holds the flow from ``t`` to
  ``t + 1``.
- :mod:`~videoreid.modalities.flow.compute` — ``compute_flow_cache`` /
  ``compute_dataset_flows``: parallel over tracklets, resumable, progress bar
  (``videoreid flow --dataset NAME --root DIR``).
- :mod:`~videoreid.modalities.flow.loader` — ``FlowLoader`` / ``build_loader``: the modality
  callable ``(tracklet, indices) -> (T, 2, h, w)`` float32; the last frame of a tracklet gets
  the previous frame's flow.
"""

from videoreid.modalities.flow.cache import (
    CACHE_DIRNAME,
    META_NAME,
    FlowCache,
    FlowCacheError,
    find_cache,
)
from videoreid.modalities.flow.codec import (
    DEFAULT_STEP,
    FlowFileError,
    decode_png,
    encode_png,
    read_flow,
    write_flow,
)
from videoreid.modalities.flow.compute import (
    FlowCacheReport,
    compute_dataset_flows,
    compute_flow_cache,
    load_frame,
    tracklet_flows,
)
from videoreid.modalities.flow.estimators import (
    ESTIMATORS,
    DISFlow,
    FarnebackFlow,
    FlowEstimator,
    TorchFlow,
    TVL1Flow,
    build_estimator,
    estimator_from_spec,
)
from videoreid.modalities.flow.loader import FlowLoader, build_loader, source_indices

__all__ = [
    "CACHE_DIRNAME",
    "DEFAULT_STEP",
    "ESTIMATORS",
    "META_NAME",
    "DISFlow",
    "FarnebackFlow",
    "FlowCache",
    "FlowCacheError",
    "FlowCacheReport",
    "FlowEstimator",
    "FlowFileError",
    "FlowLoader",
    "TVL1Flow",
    "TorchFlow",
    "build_estimator",
    "build_loader",
    "compute_dataset_flows",
    "compute_flow_cache",
    "decode_png",
    "encode_png",
    "estimator_from_spec",
    "find_cache",
    "load_frame",
    "read_flow",
    "source_indices",
    "tracklet_flows",
    "write_flow",
]
