"""Run the rows of one paper table (a folder of configs) over several seeds and summarise.

A *table* is a folder of row configs ``NN_name.yaml`` (files starting with ``_`` are shared
parents, not rows). Rows are run in name order; the first row is the table's reference:
every other row is compared with it *paired* over the same seeds. Each row file carries two
comment lines (see :func:`read_row_annotations`)::

    # switches: model.args.stage=null, model.args.aggregation=avg
    # paper: table 2 row 2, MARS: mAP 76.7 / R1 84.3

Run folders: ``<out>/<row>/seed<k>/`` is a normal run directory (``videoreid train``'s
files) plus ``ablate_result.json``, written atomically once the run has finished. A row × seed
with that file is not rerun (resumable); a run folder left by an interrupted run continues
from its newest checkpoint (``train.resume=true``); one that failed before its first
checkpoint starts afresh. A finished or resumable run whose recorded config differs from the
one asked for now is an error (never silently mixed).

Statistics (:func:`summarise`): per row the mean of mAP and rank-1 over seeds with a 95%
Student-t interval (``mean ± t_{0.975, n-1} · s / √n``), and per row the paired difference
from the first row over the seeds both have, with its own t-interval. One seed: no interval
(reported as ``nan``). Every metric is named ``<dataset>/split<k>/<protocol>/<metric>``.
"""

from __future__ import annotations

import logging
import math
import re
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from videoreid.config import Config, ConfigError, config_to_dict, load_config
from videoreid.utils.io import atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)

__all__ = [
    "RESULT_FILE",
    "RowRun",
    "AblationError",
    "list_rows",
    "read_row_annotations",
    "parse_switches",
    "flatten",
    "config_diff",
    "t_quantile_975",
    "mean_interval",
    "load_row_config",
    "run_ablation",
    "summarise",
    "format_markdown",
]

RESULT_FILE = "ablate_result.json"
# keys that are bookkeeping, not switches: never part of a row's declared difference
IGNORED_KEYS = ("output_dir",)


class AblationError(RuntimeError):
    """An ablation folder or run folder is inconsistent; the message says which and why."""


# ------------------------------------------------------------------ rows and annotations


def list_rows(folder: str | Path) -> list[Path]:
    """The row configs of a table folder, sorted by name (``_*.yaml`` are not rows).

    Raises:
        AblationError: the folder does not exist or holds no row.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise AblationError(f"ablation folder not found: {folder}")
    rows = sorted(p for p in folder.glob("*.yaml") if not p.name.startswith("_"))
    if not rows:
        raise AblationError(f"{folder} holds no row config (*.yaml not starting with '_')")
    return rows


def _split_top_level(text: str) -> list[str]:
    """Split on commas outside brackets/braces/quotes (YAML flow values keep their commas)."""
    parts, depth, quote, cur = [], 0, "", []
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


def parse_switches(text: str, where: str = "switches") -> dict[str, Any]:
    """``"a.b=1, c=[x, y]"`` → ``{"a.b": 1, "c": ["x", "y"]}`` (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for item in _split_top_level(text):
        if "=" not in item:
            raise AblationError(f"{where}: {item!r} is not key=value")
        key, value = item.split("=", 1)
        key = key.strip()
        if key in out:
            raise AblationError(f"{where}: {key!r} given twice")
        try:
            out[key] = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError as e:
            raise AblationError(f"{where}: cannot parse the value of {key!r}: {e}") from e
    return out


_ANNOTATION = re.compile(r"^#\s*(switches|paper)\s*:(.*)$")


def read_row_annotations(path: str | Path) -> dict[str, Any]:
    """The ``# switches:`` and ``# paper:`` comment lines of a row config.

    Returns:
        ``{"switches": {dotted key: value} | None, "paper": str | None}`` (``None`` when
        the line is absent; an empty ``# switches:`` line is ``{}``).
    """
    out: dict[str, Any] = {"switches": None, "paper": None}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        m = _ANNOTATION.match(line.strip())
        if not m:
            continue
        kind, value = m.group(1), m.group(2).strip()
        if kind == "switches":
            if out["switches"] is not None:
                raise AblationError(f"{path}: more than one '# switches:' line")
            out["switches"] = parse_switches(value, f"{path}: # switches")
        else:
            out["paper"] = value
    return out


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings → ``{dotted key: leaf}``; lists and scalars are leaves."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def config_diff(base: Mapping[str, Any], row: Mapping[str, Any],
                ignore: Sequence[str] = IGNORED_KEYS) -> dict[str, Any]:
    """Dotted keys whose value in ``row`` differs from ``base`` → the row's value.

    A key absent on one side reads as ``None`` (so ``key=null`` declares a removed key);
    ``ignore`` keys (and their children) are skipped.
    """
    fb, fr = flatten(base), flatten(row)
    out: dict[str, Any] = {}
    for key in sorted(set(fb) | set(fr)):
        if any(key == i or key.startswith(i + ".") for i in ignore):
            continue
        a, b = fb.get(key), fr.get(key)
        if a != b or type(a) is not type(b):
            out[key] = b
    return out


# ------------------------------------------------------------------------- statistics

# two-sided 95% Student-t quantiles t_{0.975, df}, df = 1..30
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
         2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
         2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t_quantile_975(df: int) -> float:
    """``t_{0.975, df}``: a table for df ≤ 30, the Cornish-Fisher expansion beyond (< 1e-4)."""
    if df < 1:
        return math.nan
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959963984540054
    return (z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
            + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3))


def mean_interval(values: Sequence[float]) -> tuple[float, float, int]:
    """``(mean, half-width of the 95% t-interval, n)``; half-width ``nan`` for n < 2."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan, 0
    mean = sum(values) / n
    if n < 2:
        return mean, math.nan, n
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, t_quantile_975(n - 1) * math.sqrt(var / n), n


# ------------------------------------------------------------------------------ runs


@dataclass
class RowRun:
    """One row × seed: where it runs and the config it runs with."""

    row: str
    seed: int
    run_dir: Path
    config: Config
    paper: str | None = None
    result: dict[str, Any] | None = field(default=None, repr=False)


def _accepts(path: str | Path, applied: Sequence[str], item: str) -> bool:
    """Whether the row accepts the optional override ``item`` (its key exists there)."""
    key = item.split("=", 1)[0]
    try:
        load_config(path, [*applied, item])
    except ConfigError as e:
        if "unknown" in str(e) and key.rsplit(".", 1)[-1] in str(e):
            return False
        raise
    return True


def load_row_config(path: str | Path, overrides: Sequence[str] = (), seed: int | None = None,
                    run_dir: str | Path | None = None) -> Config:
    """A row config with the table-wide ``overrides``, then the seed and run folder.

    An override written ``?key=value`` is optional: it applies to the rows that have that
    key (e.g. ``?model.args.embed_hidden=64`` sizes MAN's ε and leaves the baseline rows,
    which have no ε, alone); any other error in it is still an error.
    """
    extra: list[str] = []
    for item in overrides:
        if item.startswith("?"):
            item = item[1:]
            if not _accepts(path, extra, item):
                log.debug("row %s has no key %s: optional override skipped", path, item)
                continue
        extra.append(item)
    if seed is not None:
        extra.append(f"seed={seed}")
    if run_dir is not None:
        extra.append(f"output_dir={run_dir}")
    try:
        return load_config(path, extra)
    except ConfigError as e:
        raise ConfigError(f"row {Path(path).name}: {e}") from None


def _has_checkpoint(run_dir: Path) -> bool:
    from videoreid.engine.checkpoint import CheckpointManager

    return (run_dir / "checkpoints").is_dir() and \
        CheckpointManager(run_dir / "checkpoints").latest() is not None


def _recorded_mismatch(run_dir: Path, wanted: dict[str, Any]) -> dict[str, Any]:
    """Keys where the config recorded in ``run_dir`` differs from ``wanted`` (empty: same)."""
    recorded = None
    result = run_dir / RESULT_FILE
    if result.is_file():
        recorded = yaml.safe_load(result.read_text()).get("config")
    elif (run_dir / "config.yaml").is_file() and _has_checkpoint(run_dir):
        # an interrupted run that would be resumed; without checkpoints it starts afresh
        recorded = yaml.safe_load((run_dir / "config.yaml").read_text())
    if recorded is None:
        return {}
    return config_diff(recorded, wanted, ignore=("train.resume", "train.progress"))


def _pick_metrics(summary: Mapping[str, Any], split_all: bool) -> tuple[str, float, float]:
    """``(prefix, mAP, rank1)`` from ``train_from_config``'s summary."""
    if split_all:
        mean = summary.get("mean") or {}
        prefix = f"{summary.get('dataset')}/mean_over_splits/{summary.get('protocol')}"
        return prefix, float(mean["mAP"]), float(mean["cmc"][0])
    metrics = summary["metrics"]
    keys = [k for k in metrics if k.endswith("/mAP")]
    if len(keys) != 1:
        raise AblationError(f"expected one '<dataset>/split<k>/<protocol>/mAP' metric, got {keys}")
    prefix = keys[0][: -len("/mAP")]
    return prefix, float(metrics[keys[0]]), float(metrics[f"{prefix}/rank1"])


def default_runner(cfg: Config) -> dict[str, Any]:
    """Train + evaluate one config (``train_from_config``) → ``{"summary", "chance"}``."""
    from videoreid.engine.builders import build_splits, train_from_config
    from videoreid.evaluation.chance import split_chance

    summary = train_from_config(cfg)
    splits = build_splits(cfg)
    chance = split_chance(splits[0], cfg.eval.protocol)
    return {"summary": summary, "chance": chance}


def run_ablation(
    folder: str | Path,
    out: str | Path,
    seeds: Sequence[int] = (0, 1, 2),
    overrides: Sequence[str] = (),
    *,
    runner: Callable[[Config], Mapping[str, Any]] = default_runner,
    only_rows: Sequence[str] | None = None,
    execute: bool = True,
) -> list[RowRun]:
    """Run every row × seed of a table that has no finished result yet.

    All row configs are resolved first, so a bad row is reported before any training.
    A run that raises is recorded (``ablate_error.txt`` in its folder, traceback logged)
    and the others still run; :func:`summarise` reports it as missing.

    Args:
        folder: the table folder (rows ``*.yaml``, sorted by name; first = reference).
        out: where run folders go: ``<out>/<row>/seed<k>``.
        seeds: the seeds; every row runs with every seed (paired comparison).
        overrides: ``key=value`` applied to every row (e.g. a CPU-sized budget).
        runner: ``cfg -> {"summary": train_from_config(cfg), "chance": {...}}`` (tests).
        only_rows: row names (file stems) to run; default all.
        execute: ``False`` = run nothing, only collect the finished results.

    Returns:
        every :class:`RowRun` with ``result`` set where a finished result exists.

    Raises:
        ConfigError: a row does not resolve. AblationError: a run folder holds a run of
        another config.
    """
    out = Path(out)
    rows = list_rows(folder)
    if only_rows:
        unknown = sorted(set(only_rows) - {p.stem for p in rows})
        if unknown:
            raise AblationError(f"--rows {unknown} not in {folder} "
                                f"(rows: {[p.stem for p in rows]})")
    runs: list[RowRun] = []
    for path in rows:
        paper = read_row_annotations(path)["paper"]
        for seed in seeds:
            run_dir = out / path.stem / f"seed{seed}"
            cfg = load_row_config(path, overrides, seed, run_dir)
            runs.append(RowRun(path.stem, int(seed), run_dir, cfg, paper))
    for r in runs:
        diff = _recorded_mismatch(r.run_dir, config_to_dict(r.config))
        if diff:
            raise AblationError(
                f"{r.run_dir} holds a run of another config (differs in {sorted(diff)[:8]}); "
                "use another --out, or delete that folder to rerun it")
    for r in runs:
        result_path = r.run_dir / RESULT_FILE
        if result_path.is_file():
            r.result = yaml.safe_load(result_path.read_text())
            log.info("ablate: %s seed %d already finished, skipped", r.row, r.seed)
            continue
        if not execute or (only_rows and r.row not in only_rows):
            continue
        wanted = config_to_dict(r.config)
        if _has_checkpoint(r.run_dir):
            r.config.train.resume = True  # an interrupted run continues exactly
        log.info("ablate: running %s seed %d into %s", r.row, r.seed, r.run_dir)
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            got = runner(r.config)
        except Exception:  # noqa: BLE001 - recorded and reported, other rows still run
            tb = traceback.format_exc()
            log.error("ablate: %s seed %d failed:\n%s", r.row, r.seed, tb)
            atomic_write_text(r.run_dir / "ablate_error.txt", tb)
            continue
        prefix, m_ap, r1 = _pick_metrics(got["summary"], r.config.data.split == "all")
        r.result = {
            "row": r.row, "seed": r.seed, "paper": r.paper, "metric_prefix": prefix,
            "mAP": m_ap, "rank1": r1,
            "chance": {k: float(v) for k, v in (got.get("chance") or {}).items()},
            "wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0,
            "summary": {k: v for k, v in got["summary"].items() if k != "table"},
            "config": wanted,
        }
        atomic_write_json(result_path, r.result)
        (r.run_dir / "ablate_error.txt").unlink(missing_ok=True)
    return runs


# --------------------------------------------------------------------------- summary


def summarise(runs: Sequence[RowRun]) -> dict[str, Any]:
    """Per-row mean ± 95% t-interval and paired differences from the first row.

    Returns:
        ``{"metric_prefix": "<dataset>/split<k>/<protocol>", "chance": {...}, "rows": [{"row",
        "paper", "seeds", "missing_seeds", "mAP": (mean, hw, n), "rank1": ...,
        "delta_mAP": (mean, hw, n), "delta_rank1": ...}, ...]}`` (metrics as fractions).
    """
    order: list[str] = []
    by_row: dict[str, list[RowRun]] = {}
    for r in runs:
        if r.row not in by_row:
            order.append(r.row)
        by_row.setdefault(r.row, []).append(r)
    prefixes = {r.result["metric_prefix"] for r in runs if r.result}
    if len(prefixes) > 1:
        raise AblationError(f"rows were evaluated on different dataset/split/protocol: "
                            f"{sorted(prefixes)}; compare them in separate tables")
    first = {r.seed: r.result for r in by_row[order[0]] if r.result} if order else {}
    rows = []
    for name in order:
        done = {r.seed: r.result for r in by_row[name] if r.result}
        entry: dict[str, Any] = {
            "row": name, "paper": by_row[name][0].paper, "seeds": sorted(done),
            "missing_seeds": sorted(r.seed for r in by_row[name] if not r.result),
            "cpu_s": sum(v.get("cpu_s", 0.0) for v in done.values()),
        }
        for metric in ("mAP", "rank1"):
            entry[metric] = mean_interval([done[s][metric] for s in sorted(done)])
            common = sorted(set(done) & set(first))
            entry[f"delta_{metric}"] = mean_interval(
                [done[s][metric] - first[s][metric] for s in common])
            entry[f"per_seed_{metric}"] = [done[s][metric] for s in sorted(done)]
        rows.append(entry)
    chance = next((r.result.get("chance") for r in runs if r.result and r.result.get("chance")),
                  {})
    return {"metric_prefix": next(iter(prefixes), "n/a"), "chance": chance, "rows": rows,
            "reference": order[0] if order else None}


def _fmt(stat: tuple[float, float, int], signed: bool = False) -> str:
    mean, hw, n = stat
    if n == 0:
        return "–"
    m = f"{100 * mean:+.1f}" if signed else f"{100 * mean:.1f}"
    return m if math.isnan(hw) else f"{m} ± {100 * hw:.1f}"


def format_markdown(summary: Mapping[str, Any], command: str | None = None) -> str:
    """The summary as a markdown table (percentages; ± = half-width of the 95% t-interval)."""
    prefix = summary["metric_prefix"]
    ref = summary["reference"]
    lines = []
    if command:
        lines.append(f"Command: `{command}`\n")
    chance = summary.get("chance") or {}
    chance_txt = (f"; chance level mAP {100 * chance['mAP']:.1f} / R1 {100 * chance['rank1']:.1f}"
                  if "mAP" in chance and "rank1" in chance else "")
    lines.append(f"Metrics: `{prefix}/mAP` and `{prefix}/rank1` (%), mean ± 95% t-interval over "
                 f"seeds; Δ = paired difference from row `{ref}` over the same seeds"
                 f"{chance_txt}.\n")
    lines.append("| row | paper | seeds | mAP | R1 | Δ mAP | Δ R1 |")
    lines.append("|---|---|---|---|---|---|---|")
    for e in summary["rows"]:
        seeds = ",".join(str(s) for s in e["seeds"]) or "–"
        if e["missing_seeds"]:
            seeds += f" (missing {','.join(str(s) for s in e['missing_seeds'])})"
        is_ref = e["row"] == ref
        lines.append(
            f"| {e['row']} | {e['paper'] or ''} | {seeds} | {_fmt(e['mAP'])} | {_fmt(e['rank1'])} "
            f"| {'ref.' if is_ref else _fmt(e['delta_mAP'], True)} "
            f"| {'ref.' if is_ref else _fmt(e['delta_rank1'], True)} |")
    return "\n".join(lines) + "\n"
