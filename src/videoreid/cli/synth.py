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
    parser.add_argument("--layout", required=True, choices=list(LAYOUTS),
                        help="official layout to write")
    parser.add_argument("--out", required=True,
                        help="output folder (parent root: the dataset goes to OUT/mars/, "
                             "OUT/dukemtmc-vidreid/, ...; ground truth to OUT/synth_manifest.json)")
    parser.add_argument("--ids", type=int, default=16, help="identities to re-identify (default 16)")
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
