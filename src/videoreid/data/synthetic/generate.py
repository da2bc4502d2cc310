"""`generate`: plan a layout, render every tracklet, write frames, keypoints and metadata.

Determinism: every random stream is derived from ``seed`` alone — cameras ``[seed, 2, cam]``,
identities ``[seed, 3]``, the layout plan ``[seed, 4]``, tracklet ``i`` ``[seed, 1, i]``, noise
tiles ``[seed, 7, cam]`` — and every file's bytes depend only on its content (fixed .mat
header, single-threaded encoders per file), so the same arguments give byte-identical files
whatever the number of writer threads.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from videoreid.data.synthetic.camera import sample_camera
from videoreid.data.synthetic.identity import sample_identities
from videoreid.data.synthetic.layouts import get_layout
from videoreid.data.synthetic.manifest import MANIFEST_NAME, SynthManifest, SynthTracklet
from videoreid.data.synthetic.presets import get_knobs
from videoreid.data.synthetic.preview import preview_grid, write_png
from videoreid.data.synthetic.render import RenderedTracklet, Renderer
from videoreid.data.synthetic.spec import sample_spec
from videoreid.data.synthetic.writers import FrameWriter

logger = logging.getLogger(__name__)


def _manifest_tracklets(tp: Any, r: RenderedTracklet) -> list[SynthTracklet]:
    def make(sl: slice, frames: list[str], tracklet_id: str) -> SynthTracklet:
        return SynthTracklet(
            tracklet_id=tracklet_id, frames=frames, pid=tp.pid, camid=tp.camid,
            subset=tp.subset, identity=tp.identity if tp.kind != "background" else -1,
            kind=tp.kind, keypoints=r.keypoints[sl], occluded=r.occluded[sl],
            motion=r.motion[sl], bg_motion=r.bg_motion[sl], failure=r.failure[sl],
            nominal_motion=r.nominal_motion, view=r.view, occluder=r.occluder,
            meta=dict(tp.meta))

    if not tp.one_frame:
        return [make(slice(None), list(tp.frames), tp.tracklet_id)]
    out = []
    for k, f in enumerate(tp.frames):
        stem = Path(f).stem
        out.append(make(slice(k, k + 1), [f], f"{tp.subset}/{stem}"))
    return out


def _retire_manifest(path: Path, dataset_dir: str) -> None:
    """Remove a manifest that describes the dataset about to be (re)written, so a crash
    midway never leaves ground truth for files that no longer exist; warn before replacing
    the manifest of another layout sharing this output folder (there is one per folder)."""
    if not path.is_file():
        return
    try:
        previous = json.loads(path.read_text()).get("dataset_dir")
    except (OSError, ValueError):
        previous = None
    if previous is not None and previous != dataset_dir:
        logger.warning("%s describes the synthetic dataset in %s/; it will be replaced by the "
                       "manifest of %s/ (use one output folder per dataset to keep both)",
                       path, previous, dataset_dir)
    path.unlink()


def generate(
    layout: str,
    out: str | os.PathLike[str],
    *,
    ids: int = 16,
    cameras: int | None = None,
    seed: int = 0,
    height: int = 128,
    width: int = 64,
    preset: str = "default",
    tracklet_len: tuple[int, int] | None = None,
    keypoints: bool = True,
    preview: str | os.PathLike[str] | None = None,
    workers: int = 2,
    jpeg_quality: int = 90,
    overwrite: bool = False,
    progress: bool | None = None,
    **knobs: Any,
) -> SynthManifest:
    """Write a synthetic dataset in an official layout under ``out`` (the parent root).

    Args:
        layout: ``"mars"``, ``"dukev"``, ``"ilidsvid"``, ``"prid2011"`` or ``"market1501"``.
        out: output folder; the dataset goes to ``out/<dataset folder>`` (``mars/``,
            ``dukemtmc-vidreid/``, ``ilids-vid/``, ``prid2011/``, ``market1501/``) and the
            ground truth to ``out/synth_manifest.json``.
        ids: number of identities to re-identify (split train/test by the layout; MARS,
            Duke and Market add distractor/junk tracklets, PRID adds single-camera persons).
        cameras: number of cameras (default: the layout's, 6 MARS/Market, 8 Duke, 2
            iLIDS-VID/PRID2011, which accept only 2).
        seed: random seed; the same arguments give byte-identical files.
        height, width: frame size in pixels.
        preset: ``"default"``, ``"easy"`` or ``"occlusion"``.
        tracklet_len: inclusive ``(min, max)`` frames per tracklet (default: the layout's;
            Market-1501: images per identity and camera).
        keypoints: write ``<frame stem>_keypoints.json`` beside every frame.
        preview: optional PNG path for a contact sheet of a few identities across cameras.
        workers: image-encoding threads (0: encode in the calling thread).
        jpeg_quality: JPEG quality for ``.jpg`` layouts.
        overwrite: replace an existing dataset folder (else it is an error).
        progress: show a progress bar (None: only on a terminal).
        **knobs: overrides of the preset's difficulty knobs (see
            `videoreid.data.synthetic.presets.Knobs`), e.g. ``occluder_prob=0.5``.

    Returns:
        the `SynthManifest` (also saved as ``out/synth_manifest.json``).

    Raises:
        ValueError: unknown layout, preset or knob; invalid sizes or counts.
        FileExistsError: the dataset folder exists and ``overwrite`` is False.
    """
    module = get_layout(layout)
    knob_values = get_knobs(preset, **knobs)
    cameras = int(cameras) if cameras is not None else module.DEFAULT_CAMERAS
    length_range = tuple(tracklet_len) if tracklet_len is not None else module.DEFAULT_LENGTH
    if len(length_range) != 2:
        raise ValueError(f"tracklet_len must be (min, max), got {tracklet_len}")
    if ids < 1:
        raise ValueError(f"ids must be >= 1, got {ids}")
    if height < 32 or width < 16:
        raise ValueError(f"frame size {height}x{width} too small; need at least 32x16")
    if not 1 <= jpeg_quality <= 100:
        raise ValueError(f"jpeg_quality must be in [1, 100], got {jpeg_quality}")
    # Plan first: every invalid request fails before anything on disk is touched.
    lplan = module.plan(int(ids), cameras, np.random.default_rng([seed, 4]),
                        (int(length_range[0]), int(length_range[1])))
    out = Path(out)
    target = out / module.DATASET_DIR
    if target.exists() and any(target.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{target} already exists; pass overwrite=True (--overwrite) "
                                  f"to replace it, or choose another output folder")
        shutil.rmtree(target)
    _retire_manifest(out / MANIFEST_NAME, module.DATASET_DIR)
    t_start = time.perf_counter()

    cams = [sample_camera(np.random.default_rng([seed, 2, c]), c, knob_values, height, width)
            for c in range(cameras)]
    identities = sample_identities(lplan.num_identities, np.random.default_rng([seed, 3]),
                                   knob_values.lookalike_fraction, lplan.identity_groups)
    renderer = Renderer(height, width, cams, seed)
    total = sum(len(tp.frames) for tp in lplan.tracklets)
    out_str = os.fspath(out)
    tracklets: list[SynthTracklet] = []
    samples: dict[tuple[int, int], np.ndarray] = {}
    labels: dict[int, str] = {}
    with FrameWriter(workers, jpeg_quality) as writer, \
            tqdm(total=total, unit="frame", desc=f"synth {layout}",
                 disable=(None if progress is None else not progress)) as bar:
        for idx, tp in enumerate(lplan.tracklets):
            person = tp.kind != "background" and tp.identity >= 0
            spec = sample_spec(np.random.default_rng([seed, 1, idx]), cams[tp.camid],
                               len(tp.frames), knob_values, height, width,
                               failure_rate=tp.failure_rate, person=person)
            ident = identities[tp.identity] if person else None
            r = renderer.render(ident, tp.camid, spec)
            writer.write([f"{out_str}/{f}" for f in tp.frames], r.frames,
                         r.keypoints if keypoints else None)
            tracklets.extend(_manifest_tracklets(tp, r))
            if tp.kind == "normal" and (tp.identity, tp.camid) not in samples:
                samples[(tp.identity, tp.camid)] = r.frames[len(r.frames) // 2]
                labels.setdefault(tp.identity, f"{tp.pid}")
            bar.update(len(tp.frames))
    lplan.write_metadata(out)
    elapsed = time.perf_counter() - t_start

    kinds = Counter(t.kind for t in tracklets)
    subsets = Counter(t.subset for t in tracklets)
    manifest = SynthManifest(
        layout=layout, dataset_dir=module.DATASET_DIR, seed=int(seed), preset=preset,
        knobs=knob_values.to_dict(), height=int(height), width=int(width), cameras=cameras,
        tracklets=tracklets, splits=lplan.splits,
        identities=[i.describe() for i in identities],
        camera_info=[c.describe() for c in cams],
        stats={"frames": total, "tracklets": len(tracklets), "identities": int(ids),
               "rendered_identities": lplan.num_identities,
               "subsets": dict(sorted(subsets.items())), "kinds": dict(sorted(kinds.items())),
               "keypoint_files": bool(keypoints)},
        root=out, elapsed_s=elapsed,
    )
    manifest.save(out / MANIFEST_NAME)
    if preview is not None:
        write_png(preview, preview_grid(samples, identities, labels, cameras, height, width))
    logger.info("synth %s: %d frames, %d tracklets in %.2f s (%.0f frames/s) → %s", layout,
                total, len(tracklets), elapsed, total / max(elapsed, 1e-9), target)
    return manifest
