"""Plot of an ablation table: per-row mean ± 95% interval and paired differences."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from videoreid.utils.io import atomic_path

__all__ = ["plot_ablation"]


def plot_ablation(summary: Mapping[str, Any], path: str | Path, *, title: str = "") -> Path:
    """Four panels into a PNG (atomically): mAP and rank-1 per row (top), and each row's
    paired difference from the first row (bottom); dots are single seeds, bars the 95%
    t-intervals of the mean.

    Args:
        summary: ``videoreid.engine.ablate.summarise`` output.
        path: output PNG.
        title: figure title (the metric prefix is appended).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = summary["rows"]
    names = [r["row"] for r in rows]
    ys = list(range(len(rows)))[::-1]
    ref = summary.get("reference")
    chance = summary.get("chance") or {}
    fig, axes = plt.subplots(2, 2, figsize=(11, 1.6 + 0.9 * len(rows)), sharey=True)
    for col, metric, label in ((0, "mAP", "mAP"), (1, "rank1", "rank-1")):
        for ax, key, delta in ((axes[0, col], metric, False), (axes[1, col], f"delta_{metric}", True)):
            for y, r in zip(ys, rows, strict=True):
                mean, hw, n = r[key]
                if n == 0:
                    continue
                if not delta:
                    pts = r[f"per_seed_{metric}"]
                    ax.plot([100 * v for v in pts], [y] * len(pts), ".", color="gray", alpha=0.6)
                ax.errorbar(100 * mean, y, xerr=None if math.isnan(hw) else 100 * hw, fmt="o",
                            color="C3" if delta else "C0", capsize=4)
            if delta:
                ax.axvline(0, color="black", lw=1)
                ax.set_xlabel(f"Δ {label} vs {ref} (points, paired)")
            else:
                if metric in chance:
                    ax.axvline(100 * chance[metric], ls="--", color="gray", lw=1,
                               label="chance")
                    ax.legend(fontsize=7, loc="lower right")
                ax.set_xlabel(f"{label} (%)")
            ax.grid(alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_yticks(ys)
        ax.set_yticklabels(names, fontsize=8)
    fig.suptitle(f"{title + ' — ' if title else ''}{summary['metric_prefix']}, mean ± 95% "
                 "t-interval over seeds", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)
    return path
