"""Curves: training curves from a run's per-epoch log (``log.csv``) and CMC curves."""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from videoreid.utils.io import atomic_path

__all__ = ["read_log", "plot_training_curves", "plot_cmc"]


def read_log(path: str | Path) -> list[dict[str, float]]:
    """Rows of a ``log.csv`` with numeric values (empty cells are left out)."""
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            out = {}
            for k, v in row.items():
                if v not in (None, ""):
                    try:
                        out[k] = float(v)
                    except ValueError:
                        continue
            rows.append(out)
    return rows


def _save(fig: Any, path: str | Path, dpi: int) -> Path:
    """Lay out ``fig``, write it as a PNG atomically, close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    plt.close(fig)
    return path


def _series(rows: Sequence[Mapping[str, Any]], key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for i, r in enumerate(rows):
        if key in r and r[key] is not None:
            xs.append(float(r.get("epoch", i + 1)))
            ys.append(float(r[key]))
    return xs, ys


def plot_training_curves(
    rows: Sequence[Mapping[str, Any]] | str | Path,
    path: str | Path,
    *,
    title: str = "",
    chance: Mapping[str, float] | None = None,
) -> Path:
    """Plot loss terms (left) and mAP / rank-1 (right) per epoch into a PNG, atomically.

    Args:
        rows: per-epoch dicts (``epoch``, ``loss/<term>``, ``<dataset>/<split>/<protocol>/mAP``
            ...) or the path of a ``log.csv``.
        path: output PNG.
        title: figure title.
        chance: metric name → chance level, drawn as dashed horizontal lines.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if isinstance(rows, (str, Path)):
        rows = read_log(rows)
    keys: list[str] = []
    for r in rows:
        keys.extend(k for k in r if k not in keys)
    loss_keys = [k for k in keys if k.startswith("loss/")]
    metric_keys = [k for k in keys if k.endswith(("/mAP", "/rank1"))]

    fig, (ax_l, ax_m) = plt.subplots(1, 2, figsize=(10, 3.8))
    for k in loss_keys:
        xs, ys = _series(rows, k)
        ax_l.plot(xs, ys, marker="." if len(xs) < 40 else None, lw=2 if k == "loss/total" else 1,
                  label=k.removeprefix("loss/"))
    ax_l.set_xlabel("epoch")
    ax_l.set_ylabel("training loss")
    ax_l.grid(alpha=0.3)
    if loss_keys:
        ax_l.legend(fontsize=8)
    for k in metric_keys:
        xs, ys = _series(rows, k)
        ax_m.plot(xs, [100 * y for y in ys], marker="o", label=k)
    for name, level in (chance or {}).items():
        ax_m.axhline(100 * level, ls="--", color="gray", lw=1, label=f"chance {name}")
    ax_m.set_xlabel("epoch")
    ax_m.set_ylabel("%")
    ax_m.set_ylim(0, 100)
    ax_m.grid(alpha=0.3)
    if metric_keys or chance:
        ax_m.legend(fontsize=7)
    else:
        ax_m.text(0.5, 0.5, "no evaluation yet", ha="center", va="center",
                  transform=ax_m.transAxes)
    if title:
        fig.suptitle(title)
    return _save(fig, path, dpi=100)


def plot_cmc(
    curves: Mapping[str, Sequence[float]],
    path: str | Path,
    *,
    title: str = "",
    max_rank: int = 20,
) -> Path:
    """Plot CMC curves (matching rate in % against rank 1..``max_rank``) into a PNG, atomically.

    Args:
        curves: legend label (name dataset, split and protocol) → CMC values, index 0 = rank 1.
        path: output PNG.
        title: figure title.
        max_rank: last rank drawn (curves shorter than that end early).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for label, cmc in curves.items():
        y = [100.0 * float(v) for v in list(cmc)[:max_rank]]
        ax.plot(range(1, len(y) + 1), y, marker="o", ms=3, label=label)
    ax.set_xlabel("rank")
    ax.set_ylabel("matching rate (%)")
    ax.set_xlim(0.5, max_rank + 0.5)
    ax.set_xticks([1, *range(5, max_rank + 1, 5)])
    ax.set_ylim(0, 101)
    ax.grid(alpha=0.3)
    if curves:
        ax.legend(fontsize=8, loc="lower right")
    if title:
        ax.set_title(title, fontsize=10)
    return _save(fig, path, dpi=90)
