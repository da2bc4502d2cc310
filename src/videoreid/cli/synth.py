"""``videoreid synth``: write a synthetic dataset in an official layout.

Example::

    videoreid synth --layout mars --out data/synth --ids 20 --preset occlusion --preview sheet.png

Every difficulty knob of the preset can be overridden (``--occluder-prob 0.5``,
``--illumination 0.8 1.2``, ...); see ``docs/synthetic.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys

from videoreid.data.synthetic.layouts import LAYOUTS
from videoreid.data.synthetic.presets import KNOB_HELP, PRESETS, Knobs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--layout", required=True, choices=[*LAYOUTS, "scene"],
                        help="official layout to write, or 'scene': per-camera videos of a "
                             "street with MOTChallenge ground truth (docs/deployment.md)")
    parser.add_argument("--out", required=True,
                        help="output folder (parent root: the dataset goes to OUT/mars/, "
                             "OUT/dukemtmc-vidreid/, ...; ground truth to OUT/synth_manifest.json)")
    parser.add_argument("--ids", type=int, default=None,
                        help="identities to re-identify (default 16; scene: 6 in every camera)")
    parser.add_argument("--cameras", type=int, default=None,
                        help="cameras (default: the layout's; iLIDS-VID and PRID2011 have 2)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--height", type=int, default=128, help="frame height (default 128)")
    parser.add_argument("--width", type=int, default=64, help="frame width (default 64)")
    parser.add_argument("--preset", default="default", choices=list(PRESETS),
                        help="difficulty preset (default 'default'; 'occlusion' is the "
                             "project's standard benchmark)")
    parser.add_argument("--tracklet-len", type=int, nargs=2, metavar=("MIN", "MAX"),
                        default=None, help="frames per tracklet, inclusive (default: layout's)")
    parser.add_argument("--preview", default=None, metavar="PNG",
                        help="write a contact sheet of a few identities across cameras")
    parser.add_argument("--no-keypoints", action="store_true",
                        help="do not write <frame>_keypoints.json beside the frames")
    parser.add_argument("--workers", type=int, default=2,
                        help="image-encoding threads (default 2; 0 = none)")
    parser.add_argument("--jpeg-quality", type=int, default=90, help="JPEG quality (default 90)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the dataset folder if it exists")
    scene = parser.add_argument_group("--layout scene")
    scene.add_argument("--frames", type=int, default=200, help="frames per video (default 200)")
    scene.add_argument("--fps", type=float, default=10.0, help="video frame rate (default 10)")
    scene.add_argument("--extra", type=int, default=2,
                       help="identities seen by one camera only, per camera (default 2)")
    scene.add_argument("--size", type=int, nargs=2, default=(270, 480), metavar=("H", "W"),
                       help="video frame size (default 270 480)")
    knobs = parser.add_argument_group("difficulty knobs (override the preset)")
    for f in dataclasses.fields(Knobs):
        flag = "--" + f.name.replace("_", "-")
        if f.name == "illumination":
            knobs.add_argument(flag, type=float, nargs=2, metavar=("MIN", "MAX"), default=None,
                               help=f"{KNOB_HELP[f.name]} (default: preset's)")
        else:
            knobs.add_argument(flag, type=float, default=None, metavar="X",
                               help=f"{KNOB_HELP[f.name]} (default: preset's)")


def run(args: argparse.Namespace) -> int:
    from videoreid.data.synthetic import generate  # heavy imports only when running

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    if args.layout == "scene":
        return _scene(args)
    args.ids = 16 if args.ids is None else args.ids
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(Knobs)
                 if getattr(args, f.name) is not None}
    try:
        manifest = generate(
            args.layout, args.out, ids=args.ids, cameras=args.cameras, seed=args.seed,
            height=args.height, width=args.width, preset=args.preset,
            tracklet_len=tuple(args.tracklet_len) if args.tracklet_len else None,
            keypoints=not args.no_keypoints, preview=args.preview, workers=args.workers,
            jpeg_quality=args.jpeg_quality, overwrite=args.overwrite, **overrides)
    except (ValueError, FileExistsError) as e:
        print(f"videoreid synth: error: {e}", file=sys.stderr)
        return 2
    s = manifest.stats
    elapsed = manifest.elapsed_s or 0.0
    print(f"wrote {s['frames']} frames in {s['tracklets']} tracklets "
          f"({', '.join(f'{k} {v}' for k, v in s['subsets'].items())}) to "
          f"{args.out}/{manifest.dataset_dir} in {elapsed:.2f} s "
          f"({s['frames'] / max(elapsed, 1e-9):.0f} frames/s)")
    if args.preview:
        print(f"preview: {args.preview}")
    return 0


def _scene(args: argparse.Namespace) -> int:
    import time

    from videoreid.data.synthetic.scene import SCENE_MANIFEST, render_scene

    t = time.perf_counter()
    try:
        m = render_scene(args.out, cameras=args.cameras or 2,
                         ids=6 if args.ids is None else args.ids, extra=args.extra,
                         frames=args.frames, height=args.size[0], width=args.size[1],
                         fps=args.fps, seed=args.seed,
                         preset="easy" if args.preset == "default" else args.preset)
    except (ValueError, RuntimeError) as e:
        print(f"videoreid synth: error: {e}", file=sys.stderr)
        return 2
    for c in m["cameras"]:
        print(f"camera {c['index']}: {args.out}/{c['video']} + {c['tracks']} "
              f"({len(c['identities'])} identities, {c['boxes']} boxes)")
    print(f"shared identities {m['shared_identities']}; manifest {args.out}/{SCENE_MANIFEST} "
          f"({time.perf_counter() - t:.1f} s)")
    return 0
