"""``report.html`` for a run directory: metrics, CMC, cameras, training, ranked lists, attention.

:func:`write_report` reads what a training run leaves in its directory (``config.yaml``,
``features.npz``, ``log.csv``, ``run_info.json``, ``checkpoints/``; see
``docs/architecture.md``) and writes one self-contained HTML file (every picture embedded
as base64, so the file can be mailed or attached) plus the pictures beside it:

=============================  ==========================================================
file                           content
=============================  ==========================================================
``report.html``                everything below, and the model, data and run settings
``cmc.png``                    CMC curves, one per protocol
``training_curves.png``        losses and evaluation metrics per epoch
``ranked_results.png``         the best, median and worst queries by AP, one row each
``report_images/*.png``        one ranked list and the attention pictures per query
=============================  ==========================================================

Sections: metrics table per protocol (each row names dataset, split and protocol, with the
chance level of a random ranking beside it), CMC curve, per-camera-pair rank-1 / mAP table
(cameras numbered as the dataset's files number them: :mod:`videoreid.viz.naming`),
training curves, ranked lists of the best, median and worst queries by AP (the query's AP
and the rank of its first true match on each), and attention pictures
(:mod:`videoreid.viz.attention`) for those queries and their top matches.

Queries are ranked by the run's own evaluation settings (``eval.metric``, ``eval.rerank``,
``eval.score_norm``) under its main protocol (``eval.protocol``, else the dataset's). The
detailed sections use split 0 of a multi-split run (``data.split=all``; the table has every
split and the mean ± std). Ranked lists need the dataset's frames, attention also the
checkpoint: when either is missing the report says so in that section and the rest is
written anyway.

Attention clips: ``T`` frames spread evenly over the tracklet (``T`` = the test plan's clip
length, which is what the model was built for), pre-processed exactly like the test clips
(same transform and modalities), run in eval mode.
"""

from __future__ import annotations

import html
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from videoreid.utils.io import atomic_write_text
from videoreid.viz.canvas import data_uri, encode_image, label_bar, save_image, vstack
from videoreid.viz.naming import camera_label, pid_label

log = logging.getLogger(__name__)

__all__ = ["ReportError", "report_protocols", "select_queries", "write_report"]

# Protocols reported per dataset: MARS has three published rules (numbers differ between
# them), the others one each (see docs/evaluation.md).
PROTOCOLS_BY_DATASET: dict[str, tuple[str, ...]] = {
    "mars": ("market", "official", "query_in_gallery"),
    "ilidsvid": ("cross_camera",),
    "prid2011": ("cross_camera",),
}
IMAGES_DIR = "report_images"
GROUPS = ("best", "median", "worst")
EMBED_JPEG_QUALITY = 70


class ReportError(ValueError):
    """The run directory lacks what the report needs (the message says what and where)."""


def report_protocols(dataset: str, main: str) -> list[str]:
    """The protocols the table shows for ``dataset``, the main one first."""
    rest = [p for p in PROTOCOLS_BY_DATASET.get(dataset.lower(), ()) if p != main]
    return [main, *rest]


def select_queries(ap: np.ndarray, n: int) -> dict[str, list[int]]:
    """Best, median and worst ``n`` queries by AP (NaN = not counted, never chosen).

    Ties are broken by query order. The groups never share a query: with fewer than ``3n``
    counted queries, the ranking is cut in three near-equal thirds and each group takes up
    to ``n`` from its own third.

    Returns:
        ``{"best": [...], "median": [...], "worst": [...]}`` query row indices, best first
        within each group.
    """
    ap = np.asarray(ap, dtype=np.float64)
    valid = np.flatnonzero(np.isfinite(ap))
    order = valid[np.argsort(-ap[valid], kind="stable")]  # best first
    n = max(0, int(n))
    m = order.size
    if m >= 3 * n:
        mid = (m - n) // 2
        return {"best": order[:n].tolist(), "median": order[mid:mid + n].tolist(),
                "worst": order[m - n:].tolist()}
    # too few counted queries for three full groups: three disjoint thirds, up to n each
    best, median, worst = np.array_split(order, 3)
    k = (median.size - min(n, median.size)) // 2
    return {"best": best[:n].tolist(), "median": median[k:k + n].tolist(),
            "worst": worst[max(0, worst.size - n):].tolist()}


# --------------------------------------------------------------------------- loading


@dataclass
class _Split:
    dir: Path
    fs: Any  # FeatureSet


@dataclass
class _Run:
    dir: Path
    cfg: Any  # Config
    splits: list[_Split]
    info: dict[str, Any] = field(default_factory=dict)


def _load_run(run_dir: Path) -> _Run:
    from videoreid.config import ConfigError, load_config
    from videoreid.evaluation.features import FeatureSet

    cfg_path = run_dir / "config.yaml"
    if not cfg_path.is_file():
        raise ReportError(f"{run_dir} is not a run directory: no config.yaml (written by "
                          "`videoreid train` at the start of a run)")
    try:
        cfg = load_config(cfg_path, check=False)
    except ConfigError as e:
        raise ReportError(f"{cfg_path}: {e}") from None
    if isinstance(cfg.data.dataset, list):
        raise ReportError(f"{run_dir}: a joint run over {cfg.data.dataset}; the report covers "
                          "one dataset (this run's features are in features_<dataset>.npz, and "
                          "`videoreid evaluate` evaluates each dataset)")
    dirs = [run_dir] if (run_dir / "features.npz").is_file() else sorted(
        (d for d in run_dir.glob("split*") if (d / "features.npz").is_file()),
        key=lambda d: int(d.name[5:]) if d.name[5:].isdigit() else 10**9)
    if not dirs:
        raise ReportError(f"{run_dir}: no features.npz (nor split*/features.npz); the run "
                          "writes it after its final evaluation, so it has not finished")
    splits = []
    for d in dirs:
        try:
            splits.append(_Split(d, FeatureSet.load(d / "features.npz")))
        except (OSError, ValueError) as e:
            raise ReportError(str(e)) from None
    info = {}
    if (run_dir / "run_info.json").is_file():
        try:
            info = json.loads((run_dir / "run_info.json").read_text())
        except json.JSONDecodeError as e:
            log.warning("%s: unreadable (%s); run details left out", run_dir / "run_info.json", e)
    return _Run(run_dir, cfg, splits, info)


# --------------------------------------------------------------------------- html bits


def _esc(x: Any) -> str:
    return html.escape(str(x))


def _pct(x: float) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{100 * float(x):.1f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], cls: str = "") -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


class _Page:
    """Collects sections and embeds each picture file once as a data URI."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.parts: list[str] = []
        self.images: list[Path] = []

    def h2(self, text: str, anchor: str) -> None:
        self.parts.append(f'<h2 id="{anchor}">{_esc(text)}</h2>')

    def p(self, text: str, cls: str = "") -> None:
        self.parts.append(f'<p class="{cls}">{_esc(text)}</p>')

    def raw(self, markup: str) -> None:
        self.parts.append(markup)

    def img(self, path: Path, alt: str, cls: str = "", picture: np.ndarray | None = None,
            maps: Sequence[str] | None = None) -> str:
        """A figure showing ``path``; a composed ``picture`` (the array saved at ``path``) is
        embedded as a JPEG instead, several times smaller than the PNG for photos."""
        if picture is not None:
            uri = data_uri(encode_image(picture, "jpeg", quality=EMBED_JPEG_QUALITY), "image/jpeg")
        else:
            mime = "image/png" if path.suffix == ".png" else "image/jpeg"
            uri = data_uri(path.read_bytes(), mime)
        self.images.append(path)
        rel = path.relative_to(self.run_dir).as_posix()
        extra = f' data-maps="{_esc(",".join(maps))}"' if maps is not None else ""
        return (f'<figure class="{cls}"{extra}><img src="{uri}" alt="{_esc(alt)}" '
                f'title="{_esc(rel)}">'
                f'<figcaption>{_esc(alt)} <span class="file">({_esc(rel)})</span></figcaption>'
                "</figure>")


CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px auto;max-width:1500px;
 padding:0 16px;color:#222}
h1{font-size:26px;margin-bottom:4px} h2{font-size:21px;margin-top:34px;border-bottom:2px solid #ddd}
h3{font-size:17px;margin:22px 0 6px}
table{border-collapse:collapse;margin:8px 0;font-size:14px}
th,td{border:1px solid #ccc;padding:4px 9px;text-align:right} th{background:#f1f3f6}
td:first-child,th:first-child{text-align:left}
table.kv td,table.kv th{text-align:left} .note{color:#8a2d1c} .muted{color:#666;font-size:13px}
figure{margin:10px 0;display:inline-block;vertical-align:top}
figure img{max-width:100%;border:1px solid #ddd}
figcaption{font-size:13px;color:#444} .file{color:#888}
nav a{margin-right:14px} .query{margin:12px 0 26px}
"""


# --------------------------------------------------------------------------- sections


def _settings_section(page: _Page, run: _Run) -> None:
    from videoreid.config import config_to_dict

    cfg = run.cfg
    d = cfg.data
    rows = [
        ("model", cfg.model.name),
        *((f"model.args.{k}", json.dumps(v) if not isinstance(v, str) else v)
          for k, v in sorted(cfg.model.args.items())),
        ("dataset", f"{d.dataset} (root {d.root}, split {d.split})"),
        ("frames", f"{d.height}×{d.width}; train sampler {d.train_sampler.name} "
                   f"{json.dumps(d.train_sampler.args)}; test plan {d.test_plan.name} "
                   f"{json.dumps(d.test_plan.args)}"),
        ("modalities", ", ".join(d.modalities) or "images only"),
        ("batch", f"P={d.P} identities × K={d.K} tracklets"),
        ("loss", "; ".join(", ".join(f"{k}={v}" for k, v in term.items())
                           for term in config_to_dict(cfg.loss))),
        ("optimiser", f"{cfg.optim.name}, lr {cfg.optim.lr:g}, weight decay "
                      f"{cfg.optim.weight_decay:g}; schedule {cfg.schedule.name}"),
        ("training", f"{cfg.train.epochs} epochs"
                     + (f" × {cfg.train.iters_per_epoch} steps" if cfg.train.iters_per_epoch
                        else "") + f", amp {cfg.train.amp}"),
        ("evaluation", f"metric {cfg.eval.metric}, clip features normalised "
                       f"'{cfg.eval.normalize}', re-ranking {'on' if cfg.eval.rerank else 'off'}, "
                       f"score normalisation {'on' if cfg.eval.score_norm else 'off'}"),
    ]
    for key in ("git_revision", "device", "device_name", "torch", "world_size"):
        if key in run.info:
            rows.append((key.replace("_", " "), run.info[key]))
    page.h2("Run", "run")
    page.raw(_table(["setting", "value"], rows, "kv"))


def _metrics_section(page: _Page, run: _Run, protocols: list[str]) -> dict[str, Any]:
    """Evaluate every split under every protocol; returns main-split results by protocol."""
    from videoreid.evaluation.chance import chance_metrics
    from videoreid.evaluation.protocol import evaluate_features

    e = run.cfg.eval
    rows, by_protocol = [], {}
    for proto in protocols:
        per = []
        for i, s in enumerate(run.splits):
            try:
                r = evaluate_features(s.fs, proto, e.metric, rerank=e.rerank,
                                      score_norm=e.score_norm, max_rank=max(20, e.max_rank),
                                      per_camera=i == 0)
            except ValueError as err:  # e.g. no query has a match under this rule
                page.p(f"{s.fs.dataset} split {s.fs.split} {proto}: not evaluated ({err})",
                       "note")
                continue
            ch = chance_metrics(s.fs, proto)
            per.append(r)
            cmc = r["cmc"]
            rows.append([r["dataset"], r["split"], proto, _pct(r["mAP"]), _pct(r["mINP"]),
                         *(_pct(cmc[k - 1]) for k in (1, 5, 10, 20)),
                         f"{r['num_valid']}/{r['num_query']}", r["num_gallery"],
                         _pct(ch["mAP"]), _pct(ch["rank1"])])
            if i == 0:
                by_protocol[proto] = r
        if len(per) > 1:
            m = {k: float(np.mean([r[k] for r in per])) for k in ("mAP", "mINP")}
            sd = {k: float(np.std([r[k] for r in per], ddof=1)) for k in ("mAP", "mINP")}
            cm = np.mean([r["cmc"] for r in per], axis=0)
            cs = np.std([r["cmc"] for r in per], axis=0, ddof=1)
            rows.append([per[0]["dataset"], f"mean ± std ({len(per)})", proto,
                         f"{_pct(m['mAP'])} ± {_pct(sd['mAP'])}",
                         f"{_pct(m['mINP'])} ± {_pct(sd['mINP'])}",
                         *(f"{_pct(cm[k - 1])} ± {_pct(cs[k - 1])}" for k in (1, 5, 10, 20)),
                         "", "", "", ""])
            by_protocol[proto + "/mean"] = {"cmc": cm}
    post = [p for p, on in (("re-ranking", e.rerank), ("score normalisation", e.score_norm)) if on]
    page.h2("Metrics", "metrics")
    page.p(f"Metric {e.metric}" + (f", with {' and '.join(post)}" if post else "")
           + ". Numbers are in %; protocols differ in what they count (docs/evaluation.md), "
           "so compare a row only with rows of the same protocol. Chance: the expected score "
           "of a random ranking of the same query and gallery sets.", "muted")
    page.raw(_table(["dataset", "split", "protocol", "mAP", "mINP", "R1", "R5", "R10", "R20",
                     "queries", "gallery", "chance mAP", "chance R1"], rows))
    return by_protocol


def _cmc_section(page: _Page, run: _Run, results: Mapping[str, Any]) -> None:
    from videoreid.viz.curves import plot_cmc

    fs = run.splits[0].fs
    curves = {}
    for key, r in results.items():
        proto, _, mean = key.partition("/")
        split = f"mean of {len(run.splits)} splits" if mean else f"split {fs.split}"
        curves[f"{fs.dataset} {split} {proto}"] = r["cmc"]
    page.h2("CMC curve", "cmc")
    if not curves:
        page.p("no protocol could be evaluated", "note")
        return
    path = plot_cmc(curves, run.dir / "cmc.png", title=f"{fs.dataset}: CMC", max_rank=20)
    page.raw(page.img(path, "CMC: matching rate at rank k"))


def _camera_section(page: _Page, run: _Run, result: Mapping[str, Any] | None,
                    protocol: str) -> None:
    fs = run.splits[0].fs
    page.h2("Per camera pair", "cameras")
    pc = (result or {}).get("per_camera")
    if not pc:
        page.p("not available", "note")
        return
    cams = [camera_label(fs.dataset, c) for c in pc["cameras"]]

    def cell(a: int, b: int) -> str:
        n = int(pc["num_queries"][a, b])
        if not n:
            return "–"
        return f"{_pct(pc['rank1'][a, b])} / {_pct(pc['mAP'][a, b])} ({n})"

    rows = [[f"camera {cams[a]}", *(cell(a, b) for b in range(len(cams)))]
            for a in range(len(cams))]
    page.p(f"{fs.dataset} split {fs.split}, {protocol} protocol: rank-1 / mAP in % (number of "
           "queries) for queries of the row's camera searching the column's camera only. "
           f"Cameras are numbered as the dataset's files number them. Mean of the "
           f"off-diagonal cells: rank-1 {_pct(pc['cross_camera_rank1'])}, mAP "
           f"{_pct(pc['cross_camera_mAP'])}.", "muted")
    page.raw(_table(["query \\ gallery", *(f"camera {c}" for c in cams)], rows))


def _training_section(page: _Page, run: _Run, chance_map: float | None, protocol: str) -> None:
    from videoreid.viz.curves import plot_training_curves

    page.h2("Training", "training")
    log_csv = run.splits[0].dir / "log.csv"
    if not log_csv.is_file():
        page.p(f"no {log_csv.relative_to(run.dir)}: training curves not drawn", "note")
        return
    fs = run.splits[0].fs
    chance = {f"{protocol} mAP": chance_map} if chance_map is not None else None
    path = plot_training_curves(log_csv, run.dir / "training_curves.png",
                                title=f"{run.cfg.model.name} on {fs.dataset} split {fs.split}",
                                chance=chance)
    page.raw(page.img(path, "training losses and evaluation metrics per epoch"))


# --------------------------------------------------------------------------- queries


@dataclass
class _Query:
    group: str
    row: int  # row in the protocol's query set
    q: Any  # Tracklet
    ap: float
    first: int | None
    ranked: list[tuple[Any, float]]  # (gallery Tracklet, distance)


def _load_split(run: _Run) -> tuple[Any, list[Any]]:
    """The detailed split, and its query+gallery tracklets in feature-file row order."""
    from dataclasses import replace

    from videoreid.engine.builders import build_splits

    cfg = run.cfg
    fs = run.splits[0].fs
    if cfg.data.split == "all":
        cfg = replace(cfg, data=replace(cfg.data, split=fs.split))
    (split,) = build_splits(cfg)
    tracks = [*split.query, *split.gallery]
    ids = [str(t.meta.get("tracklet_id", t.frames[0] if t.frames else i))
           for i, t in enumerate(tracks)]
    if len(ids) != len(fs) or list(fs.tracklet_ids) != ids:
        raise ReportError(f"{run.splits[0].dir / 'features.npz'} rows do not match the "
                          f"tracklets of {split.describe()} under {cfg.data.root} "
                          f"({len(fs)} rows, {len(ids)} tracklets): the dataset changed since "
                          "the run")
    return split, tracks


def _rank_queries(run: _Run, protocol: str, n: int, topk: int,
                  tracks: Sequence[Any]) -> list[_Query]:
    from videoreid.evaluation.protocol import protocol_distances
    from videoreid.evaluation.rank import evaluate
    from videoreid.viz.ranking import first_match_rank, rank_for_query

    fs, e = run.splits[0].fs, run.cfg.eval
    q_idx, g_idx, _, dist = protocol_distances(fs, protocol, e.metric, rerank=e.rerank,
                                               score_norm=e.score_norm)
    res = evaluate(dist, fs.pids[q_idx], fs.pids[g_idx], fs.camids[q_idx], fs.camids[g_idx],
                   protocol=protocol)
    cross = protocol == "cross_camera"
    out = []
    for group, rows in select_queries(res["ap"], n).items():
        for qi in rows:
            q = int(q_idx[qi])
            args = (dist[qi], fs.pids[q], fs.camids[q], fs.pids[g_idx], fs.camids[g_idx])
            order = rank_for_query(*args, topk=topk, exclude_same_camera=cross)
            out.append(_Query(group, qi, tracks[q], float(res["ap"][qi]),
                              first_match_rank(*args, exclude_same_camera=cross),
                              [(tracks[int(g_idx[j])], float(dist[qi, j])) for j in order]))
    return out


def _query_caption(query: _Query, dataset: str) -> list[str]:
    first = f"first match: rank {query.first}" if query.first else "no true match ranked"
    return [f"query id {pid_label(query.q)} · cam {camera_label(dataset, query.q.camid)}",
            f"AP {100 * query.ap:.1f}%", first]


def _ranked_picture(query: _Query, dataset: str, num_frames: int) -> np.ndarray:
    from videoreid.viz.ranking import render_ranked_list, tracklet_frames

    return render_ranked_list(
        tracklet_frames(query.q, num_frames),
        [tracklet_frames(g, num_frames) for g, _ in query.ranked],
        [g.pid == query.q.pid for g, _ in query.ranked],
        [[f"#{r} id {pid_label(g)} · cam {camera_label(dataset, g.camid)}", f"d = {d:.3g}"]
         for r, (g, d) in enumerate(query.ranked, start=1)],
        query_label=_query_caption(query, dataset),
    )


class _AttentionRunner:
    """The run's model from its last checkpoint, fed clips exactly like the test clips."""

    def __init__(self, run: _Run, num_classes: int, device: str) -> None:
        from videoreid.data.temporal import build_plan
        from videoreid.engine.builders import (
            build_modalities,
            build_transforms,
            load_model_from_checkpoint,
        )
        from videoreid.engine.checkpoint import CheckpointManager

        ckpt = CheckpointManager(run.splits[0].dir / "checkpoints").latest()
        if ckpt is None:
            raise ReportError(f"no checkpoint in {run.splits[0].dir / 'checkpoints'}")
        import torch

        self.device = torch.device(device)
        self.checkpoint = ckpt
        self.model = load_model_from_checkpoint(run.cfg, ckpt, num_classes, self.device).eval()
        self.modalities = build_modalities(run.cfg)
        _, self.transform = build_transforms(run.cfg)
        self.length = build_plan(run.cfg.data.test_plan.name, **run.cfg.data.test_plan.args).length

    def clip(self, tracklet: Any) -> tuple[dict[str, Any], np.ndarray]:
        from videoreid.data.clips import load_clip
        from videoreid.data.temporal import pad_clip

        n = len(tracklet)
        idx = np.unique(np.linspace(0, n - 1, num=min(self.length, n)).round().astype(np.int64))
        indices, mask = pad_clip(idx, self.length)
        return load_clip(tracklet, indices, mask, self.transform, None, self.modalities), indices

    def pictures(self, tracklets: Sequence[Any], titles: Sequence[list[str]],
                 batch_size: int = 8) -> list[tuple[np.ndarray, list[str]]]:
        """Per tracklet: its attention picture and the names of the maps drawn on it."""
        import torch

        from videoreid.data.clips import collate_clips
        from videoreid.data.decode import decode_image
        from videoreid.engine.trainer import move_to_device
        from videoreid.viz.attention import flow_picture, map_names, render_attention

        out = []
        for s in range(0, len(tracklets), batch_size):
            chunk = tracklets[s:s + batch_size]
            items, frame_idx = zip(*(self.clip(t) for t in chunk), strict=True)
            batch = collate_clips(list(items))
            with torch.no_grad():
                res = self.model(move_to_device(batch, self.device))
            att = {k: v.detach().float().cpu() for k, v in res.attention.items()}
            for i, (t, idx) in enumerate(zip(chunk, frame_idx, strict=True)):
                frames = [decode_image(t.frames[int(j)]) for j in idx]
                streams = {}
                flow = batch.get("flow")
                if isinstance(flow, torch.Tensor) and flow.dim() == 5 and flow.shape[2] == 2:
                    streams["flow"] = [flow_picture(f) for f in flow[i].numpy()]
                out.append((render_attention(frames, att, index=i, streams=streams,
                                             title=titles[s + i]),
                            map_names(att, self.length)))
        return out


def _queries_section(page: _Page, run: _Run, protocol: str, *, queries: int, topk: int,
                     attention_matches: int, num_frames: int, device: str) -> dict[str, Any]:
    fs = run.splits[0].fs
    summary: dict[str, Any] = {"queries": 0, "attention_pictures": 0}
    page.h2("Best, median and worst queries", "queries")
    try:
        split, tracks = _load_split(run)
    except Exception as e:  # dataset moved or deleted: the rest of the report still holds
        msg = f"ranked lists and attention not drawn: the dataset could not be loaded ({e})"
        log.warning(msg)
        page.p(msg, "note")
        summary["skipped"] = msg
        return summary
    chosen = _rank_queries(run, protocol, queries, topk, tracks)
    runner, why = None, ""
    if attention_matches >= 0 and chosen:
        try:
            runner = _AttentionRunner(run, split.num_train_pids, device)
        except Exception as e:  # no checkpoint / weights do not fit: say so, keep the rest
            why = f"attention pictures not drawn: {e}"
            log.warning(why)
    page.p(f"{fs.dataset} split {fs.split}, {protocol} protocol, queries ranked by AP. Each "
           f"query (blue) is followed by its top {topk} gallery tracklets: green = same "
           "identity, red = another identity. Cameras are numbered as the dataset's files "
           "number them.", "muted")
    if why:
        page.p(why, "note")
    images = run.dir / IMAGES_DIR
    for old in images.glob("*.png"):  # the report owns this folder: no stale pictures
        old.unlink()
    rows_img = []
    for group in GROUPS:
        members = [q for q in chosen if q.group == group]
        if not members:
            continue
        page.raw(f"<h3>{_esc(group.capitalize())} {len(members)}</h3>")
        for j, query in enumerate(members, start=1):
            tag = f"{group}_{j}"
            pic = _ranked_picture(query, fs.dataset, num_frames)
            rows_img.append(vstack([label_bar(f"{group} {j}", pic.shape[1], 17, bold_first=True),
                                    pic]))
            path = save_image(pic, images / f"ranked_{tag}.png")
            page.raw('<div class="query">')
            page.raw(page.img(path, f"{group} {j}: " + ", ".join(_query_caption(query, fs.dataset)),
                              picture=pic))
            if runner is not None:
                shown = [query.q] + [g for g, _ in query.ranked[:attention_matches]]
                titles = [["query", _query_caption(query, fs.dataset)[0]]]
                titles += [[f"match #{r}" + (" (same id)" if g.pid == query.q.pid else
                                             " (other id)"),
                            f"id {pid_label(g)} · cam {camera_label(fs.dataset, g.camid)}"]
                           for r, g in enumerate(shown[1:], start=1)]
                pictures = runner.pictures(shown, titles)
                if not any(names for _, names in pictures):  # say it once, draw nothing
                    page.p(f"no attention pictures: model {run.cfg.model.name} "
                           f"{run.cfg.model.args} returns no attention maps", "note")
                    runner = None
                    pictures = []
                for k, (img, names) in enumerate(pictures):
                    name = "query" if k == 0 else f"match{k}"
                    p = save_image(img, images / f"attention_{tag}_{name}.png")
                    page.raw(page.img(p, f"attention, {titles[k][0]}: {', '.join(names)}",
                                      "att", picture=img, maps=names))
                    summary["attention_pictures"] += 1
            page.raw("</div>")
            summary["queries"] += 1
    if rows_img:
        combined = save_image(vstack(rows_img, gap=16), run.dir / "ranked_results.png")
        summary["ranked_results"] = combined.name
    if runner is not None:
        summary["checkpoint"] = str(runner.checkpoint)
    return summary


# --------------------------------------------------------------------------- entry point


def write_report(
    run_dir: str | Path,
    *,
    queries: int = 2,
    topk: int = 5,
    attention_matches: int = 2,
    num_frames: int = 4,
    device: str = "cpu",
) -> Path:
    """Write ``RUN_DIR/report.html`` and its pictures (see the module docstring).

    Args:
        run_dir: a run directory of ``videoreid train`` / ``videoreid demo``.
        queries: queries shown per group (best, median, worst).
        topk: gallery tracklets shown per query.
        attention_matches: top matches drawn with attention besides each query (0: the
            query only; -1: no attention pictures).
        num_frames: frames per tracklet in the ranked lists.
        device: where the model runs for the attention pictures.

    Returns:
        the path of ``report.html``.

    Raises:
        ReportError: no ``config.yaml`` / ``features.npz`` (or unreadable ones).
    """
    from videoreid.evaluation.chance import chance_metrics
    from videoreid.evaluation.protocol import default_protocol

    run_dir = Path(run_dir)
    run = _load_run(run_dir)
    fs = run.splits[0].fs
    main = run.cfg.eval.protocol or fs.protocol or default_protocol(fs.dataset)
    protocols = report_protocols(fs.dataset, main)
    page = _Page(run_dir)
    _settings_section(page, run)
    results = _metrics_section(page, run, protocols)
    _cmc_section(page, run, results)
    _camera_section(page, run, results.get(main), main)
    chance_map = chance_metrics(fs, main)["mAP"] if main in results else None
    _training_section(page, run, chance_map, main)
    summary = {}
    if main in results:
        summary = _queries_section(page, run, main, queries=queries, topk=topk,
                                   attention_matches=attention_matches, num_frames=num_frames,
                                   device=device)
    title = f"videoreid report: {run.cfg.model.name} on {fs.dataset}"
    nav = "".join(f'<a href="#{a}">{t}</a>' for a, t in (
        ("run", "run"), ("metrics", "metrics"), ("cmc", "CMC"), ("cameras", "cameras"),
        ("training", "training"), ("queries", "queries")))
    doc = (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
           f"<title>{_esc(title)}</title><style>{CSS}</style></head><body>"
           f"<h1>{_esc(title)}</h1><p class=\"muted\">{_esc(run_dir)}</p><nav>{nav}</nav>"
           + "".join(page.parts) + "</body></html>\n")
    out = run_dir / "report.html"
    atomic_write_text(out, doc)
    log.info("report: %s (%d pictures, %.0f kB; %d queries, %d attention pictures)", out,
             len(page.images), out.stat().st_size / 1024, summary.get("queries", 0),
             summary.get("attention_pictures", 0))
    return out
