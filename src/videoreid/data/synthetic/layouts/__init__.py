"""Layout planners of the synthetic generator, one module per official dataset layout.

Each module defines ``DATASET_DIR`` (folder under the output root), ``EXT`` (frame file
extension), ``DEFAULT_CAMERAS``, ``DEFAULT_LENGTH`` (tracklet length range) and
``plan(ids, cameras, rng, length_range) -> LayoutPlan``.
"""

from __future__ import annotations

from types import ModuleType

from videoreid.data.synthetic.layouts import dukev, ilidsvid, market1501, mars, prid2011

LAYOUTS: dict[str, ModuleType] = {
    "mars": mars,
    "dukev": dukev,
    "ilidsvid": ilidsvid,
    "prid2011": prid2011,
    "market1501": market1501,
}


def get_layout(name: str) -> ModuleType:
    """The planner module of a layout.

    Raises:
        ValueError: unknown layout name (lists the valid ones).
    """
    if name not in LAYOUTS:
        raise ValueError(f"unknown synthetic layout {name!r}; choose from {', '.join(LAYOUTS)}")
    return LAYOUTS[name]
