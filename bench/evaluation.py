"""Evaluation and re-ranking at true MARS size, against plain per-query reference loops.

Labels (pids, cameras, query rows) are the official MARS test metadata
(``../shared/data/mars-official-info``); features are synthetic and identity-correlated
(one centre per identity, a per-camera offset and per-tracklet noise; distractors and junk
get features of their own), tuned so that the ranking looks like a trained model's
(rank-1 ≈ 0.9, mAP ≈ 0.75 under `market`). Reported:

- ``evaluate`` per protocol (official 1,980 × 12,180; market 1,980 × 9,330;
  query_in_gallery 1,980 × 11,310): best and median wall time of several runs, CPU time,
  peak extra memory (RSS sampled every 2 ms by a thread);
- the same metrics from plain per-query loops written in this file (torchreid-style for
  ``market``, a transcription of the MARS authors' ``compute_AP.m`` for ``official``), timed
  on a subset of queries and extrapolated linearly (the full loops take tens of seconds);
  their numbers on that subset are checked against ``evaluate``'s;
- k-reciprocal re-ranking of the 11,310 tracklets (``re_ranking`` from precomputed
  distances and ``re_ranking_features``) with peak extra memory, and the plain dense
  implementation's time at a smaller size (it needs ~3 GB at MARS size) next to ours there.

Peak extra memory is resident memory above the value at the start of the measured call,
sampled every 2 ms, measured in a child process with a fixed glibc mmap threshold so that
freed buffers are not silently reused (see ``_measure_memory_in_child``). CPU time is the
process's user+system time over the call (all threads); on an otherwise idle machine a
CPU-bound call's wall time does not exceed it.

Also reported (this section added with the speed work):

- torchreid's Cython ``evaluate_rank`` (``rank_cylib``) on the same ``market`` matrix, with
  the ratio and whether the numbers agree, when a torchreid installation with its compiled
  extension imports here or ``--torchreid-src`` names a torchreid source checkout whose
  ``rank_cy.pyx`` is then compiled with Cython (neither is a dependency; nothing is fetched);
  skipped with the reason otherwise;
- one plain pass over the matrix (``D.min(axis=1)``: every element read once), the floor of
  any exact evaluation, and ``evaluate``'s time as a multiple of it, with a ``cProfile`` of
  ``evaluate`` (``--profile``) showing where the rest goes;
- ``evaluate(..., backend="torch")`` (the path for a distance matrix on the GPU) on the same
  matrix, numbers identical;
- a 100,000-tracklet gallery (the MARS gallery plus synthetic distractors, pid 0): time and
  peak extra memory of ``evaluate`` on its 1,980 × 100,000 float32 matrix (792 MB, the
  caller's); evaluate's own memory stays bounded by its row blocks.

Run: ``.venv/bin/python bench/evaluation.py`` (``--threads`` sets the threads of torch and of
``evaluate``; default 2; ``--json FILE`` also writes the figures).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import scipy.io as sio
import torch

from videoreid.evaluation.distance import compute_distance
from videoreid.evaluation.protocol import build_sets
from videoreid.evaluation.rank import evaluate
from videoreid.evaluation.rerank import re_ranking, re_ranking_features
from videoreid.utils.shared import shared_dir


class PeakRSS:
    """Peak resident memory above the value at entry, sampled by a background thread."""

    def __enter__(self) -> PeakRSS:
        self.base = self.peak = _rss()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss())
            time.sleep(0.002)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, _rss())

    @property
    def extra_mib(self) -> float:
        return (self.peak - self.base) / 2**20


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def timed(fn, repeats: int = 1):
    """(result, best wall s, median wall s, CPU s of the best run)."""
    walls, cpus, out = [], [], None
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    best = int(np.argmin(walls))
    return out, walls[best], float(np.median(walls)), cpus[best]


# --------------------------------------------------------------------------- data


def load_mars_labels(info: Path):
    track = sio.loadmat(info / "tracks_test_info.mat")["track_test_info"]
    query_idx = sio.loadmat(info / "query_IDX.mat")["query_IDX"].ravel().astype(np.int64) - 1
    pids = track[:, 2].astype(np.int64)
    camids = track[:, 3].astype(np.int64) - 1
    subsets = np.full(track.shape[0], "gallery", dtype=object)
    subsets[query_idx] = "query"
    return pids, camids, subsets


def synthetic_features(pids, camids, dim=128, noise=1.2, cam_shift=0.35, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    uniq, inv = np.unique(pids, return_inverse=True)
    centres = rng.standard_normal((uniq.shape[0], dim))
    feats = centres[inv] + cam_shift * rng.standard_normal((camids.max() + 1, dim))[camids]
    own = pids <= 0  # distractors (0) and junk (-1) are not one identity each
    feats[own] = rng.standard_normal((int(own.sum()), dim))
    feats += noise * rng.standard_normal(feats.shape)
    return feats.astype(np.float32)


# --------------------------------------------------------------------------- references


def reference_market(dist, q_pids, g_pids, q_camids, g_camids, max_rank=50):
    """Per-query loop, torchreid ``eval_market1501`` style (gallery without pid -1)."""
    cmcs, aps = [], []
    for i in range(dist.shape[0]):
        order = np.argsort(dist[i], kind="stable")
        keep = ~((g_pids[order] == q_pids[i]) & (g_camids[order] == q_camids[i]))
        raw = (g_pids[order] == q_pids[i])[keep].astype(np.int64)
        if not raw.any():
            continue
        cum = raw.cumsum()
        cmcs.append(np.minimum(cum, 1)[:max_rank])
        aps.append(((cum / np.arange(1, raw.size + 1)) * raw).sum() / raw.sum())
    return np.mean(cmcs, axis=0), float(np.mean(aps))


def reference_official(dist, label_gallery, label_query, cam_gallery, cam_query):
    """Per-query loop transcribing the MARS authors' evaluation_mars.m + compute_AP.m."""
    junk0 = np.flatnonzero(label_gallery == -1)
    aps, cmcs = [], []
    for k in range(dist.shape[0]):
        pos = np.flatnonzero(label_gallery == label_query[k])
        good = set(pos[cam_gallery[pos] != cam_query[k]].tolist())
        junk = set(np.concatenate([junk0, pos[cam_gallery[pos] == cam_query[k]]]).tolist())
        index = np.argsort(dist[k], kind="stable")
        cmc = np.zeros(index.shape[0])
        ngood, old_r, old_p, ap, inter, j, good_now, njunk = len(good), 0.0, 1.0, 0.0, 0, 0, 0, 0
        for n, idx in enumerate(index.tolist()):
            flag = idx in good
            if flag:
                cmc[n - njunk :] = 1
                good_now += 1
            if idx in junk:
                njunk += 1
                continue
            inter += flag
            recall, precision = inter / ngood, inter / (j + 1)
            ap += (recall - old_r) * (old_p + precision) / 2
            old_r, old_p, j = recall, precision, j + 1
            if good_now == ngood:
                break
        aps.append(ap)
        cmcs.append(cmc)
    return np.mean(cmcs, axis=0), float(np.mean(aps))


def reference_rerank(q_g_dist, q_q_dist, g_g_dist, k1=20, k2=6, lambda_value=0.3):
    """The usual open-source dense k-reciprocal re-ranking (Zhong et al.)."""
    original_dist = np.concatenate(
        [np.concatenate([q_q_dist, q_g_dist], axis=1), np.concatenate([q_g_dist.T, g_g_dist], axis=1)], axis=0
    )
    original_dist = np.power(original_dist, 2).astype(np.float32)
    original_dist = np.transpose(1.0 * original_dist / np.max(original_dist, axis=0))
    V = np.zeros_like(original_dist).astype(np.float32)
    initial_rank = np.argsort(original_dist).astype(np.int32)
    nq, n = q_g_dist.shape[0], original_dist.shape[0]
    half = int(np.around(k1 / 2.0)) + 1
    for i in range(n):
        fwd = initial_rank[i, : k1 + 1]
        kr = fwd[np.where(initial_rank[fwd, : k1 + 1] == i)[0]]
        exp = kr
        for c in kr:
            cf = initial_rank[c, :half]
            ckr = cf[np.where(initial_rank[cf, :half] == c)[0]]
            if len(np.intersect1d(ckr, kr)) > 2.0 / 3 * len(ckr):
                exp = np.append(exp, ckr)
        exp = np.unique(exp)
        w = np.exp(-original_dist[i, exp])
        V[i, exp] = w / np.sum(w)
    original_dist = original_dist[:nq]
    if k2 != 1:
        V = np.stack([V[initial_rank[i, :k2]].mean(axis=0) for i in range(n)])
    inv = [np.where(V[:, i] != 0)[0] for i in range(n)]
    jac = np.zeros_like(original_dist)
    for i in range(nq):
        tmin = np.zeros((1, n), dtype=np.float32)
        nz = np.where(V[i] != 0)[0]
        for j in nz:
            tmin[0, inv[j]] += np.minimum(V[i, j], V[inv[j], j])
        jac[i] = 1 - tmin / (2.0 - tmin)
    return (jac * (1 - lambda_value) + original_dist * lambda_value)[:, nq:]


# --------------------------------------------------------------------------- main


def _measure_memory_in_child(threads: int) -> dict[str, float]:
    """Peak extra RSS of each measured call, from a child process run with glibc's mmap
    threshold fixed at 64 KiB.

    By default glibc raises the threshold after large frees and then serves big buffers from
    memory freed earlier, so a peak-RSS delta can miss them; with a fixed threshold every
    buffer ≥ 64 KiB is mapped on allocation and unmapped on free, and RSS follows live
    memory. That also makes allocation slower, hence a separate process for it.
    """
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
    out = subprocess.run([sys.executable, __file__, "--memory-child", "--threads", str(threads)],
                         env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _calls(pids, camids, subsets, feats, threads):
    """The measured calls, by name, with the data they need prepared."""
    calls = {}
    prepared = {}
    for protocol in ("market", "official", "query_in_gallery"):
        q, g, _ = build_sets(pids, subsets, protocol)
        dist = compute_distance(feats[q], feats[g])
        labels = (pids[q], pids[g], camids[q], camids[g])
        prepared[protocol] = (dist, q, g, labels)
        calls[f"evaluate_{protocol}"] = (
            lambda d=dist, lab=labels, p=protocol: evaluate(d, *lab, protocol=p, num_threads=threads)
        )
    q, g, _ = build_sets(pids, subsets, "market")
    qf, gf = feats[q], feats[g]
    dense = compute_distance(qf, gf), compute_distance(qf, qf), compute_distance(gf, gf)
    prepared["rerank"] = (qf, gf, dense)
    calls["rerank_re_ranking"] = lambda: re_ranking(*dense)
    calls["rerank_re_ranking_features"] = lambda: re_ranking_features(qf, gf)
    return calls, prepared


def _build_rank_cy(src: Path) -> Path:
    """Compile torchreid's ``rank_cy.pyx`` found under ``src``; return the built module's path.

    Built once per source hash into ``~/.cache/videoreid-bench/rank_cy/<hash>/`` with Cython
    and the system C compiler, with the compiler flags of torchreid's own ``setup.py``
    (numpy include, defaults otherwise).
    """
    import hashlib

    pyx = src if src.suffix == ".pyx" else next(iter(sorted(src.rglob("rank_cy.pyx"))), None)
    if pyx is None:
        raise FileNotFoundError(f"no rank_cy.pyx under {src} (expected a torchreid source "
                                "checkout: torchreid/metrics/rank_cylib/rank_cy.pyx)")
    digest = hashlib.sha256(pyx.read_bytes()).hexdigest()[:16]
    build = Path.home() / ".cache" / "videoreid-bench" / "rank_cy" / digest
    built = sorted(build.glob("rank_cy*.so")) if build.is_dir() else []
    if built:
        return built[0]
    build.mkdir(parents=True, exist_ok=True)
    (build / "rank_cy.pyx").write_bytes(pyx.read_bytes())
    script = (
        "import numpy as np\n"
        "from setuptools import setup, Extension\n"
        "from Cython.Build import cythonize\n"
        "setup(name='rank_cy', script_args=['build_ext', '--inplace'],\n"
        "      ext_modules=cythonize([Extension('rank_cy', ['rank_cy.pyx'],\n"
        "                                       include_dirs=[np.get_include()])],\n"
        "                            language_level=3, quiet=True))\n")
    res = subprocess.run([sys.executable, "-c", script], cwd=build, capture_output=True,
                         text=True)
    built = sorted(build.glob("rank_cy*.so"))
    if res.returncode != 0 or not built:
        raise RuntimeError(f"building {pyx} failed:\n{res.stderr[-2000:]}")
    return built[0]


def torchreid_evaluate_rank(src: Path | None = None):
    """torchreid's compiled ``evaluate_cy``, or ``(None, reason)``.

    An installed torchreid with its compiled extension is used first; otherwise, given a
    torchreid source checkout (``--torchreid-src`` or ``TORCHREID_SRC``), its ``rank_cy.pyx``
    is compiled here when Cython and a C compiler are present.
    """
    errors = []
    for mod in ("torchreid.reid.metrics.rank_cylib.rank_cy", "torchreid.metrics.rank_cylib.rank_cy"):
        try:
            module = __import__(mod, fromlist=["evaluate_cy"])
            return module.evaluate_cy, mod
        except ImportError as e:
            errors.append(f"{mod}: {e}")
    src = src or (Path(os.environ["TORCHREID_SRC"]) if os.environ.get("TORCHREID_SRC") else None)
    if src is None:
        return None, ("no torchreid installation with a compiled rank_cylib imports here (" +
                      "; ".join(errors) + "); pass --torchreid-src PATH (a torchreid source "
                      "checkout) with Cython and a C compiler installed to compare")
    try:
        import Cython  # noqa: F401
    except ImportError:
        return None, f"--torchreid-src {src} given but Cython is not installed (pip install cython)"
    import importlib.util

    try:
        so = _build_rank_cy(Path(src))
    except (FileNotFoundError, RuntimeError, OSError) as e:
        return None, str(e)
    spec = importlib.util.spec_from_file_location("rank_cy", so)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.evaluate_cy, f"rank_cy.pyx from {src}, compiled here ({so})"


def _large_gallery(pids, camids, subsets, feats, size, threads):
    """evaluate() on a ``size``-tracklet gallery: MARS gallery + synthetic distractors."""
    q, g, _ = build_sets(pids, subsets, "market")
    extra = size - g.shape[0]
    rng = np.random.default_rng(1)
    scale = float(np.linalg.norm(feats, axis=1).mean() / np.sqrt(feats.shape[1]))
    distractors = (rng.normal(size=(extra, feats.shape[1])) * scale).astype(np.float32)
    gf = np.concatenate([feats[g], distractors])
    g_pids = np.concatenate([pids[g], np.zeros(extra, np.int64)])
    g_cams = np.concatenate([camids[g], rng.integers(0, 6, extra)])
    dist = compute_distance(feats[q], gf)  # (1980, size) float32, the caller's input
    dist = dist.numpy() if isinstance(dist, torch.Tensor) else dist
    labels = (pids[q], g_pids, camids[q], g_cams)
    evaluate(dist[:50], pids[q][:50], g_pids, camids[q][:50], g_cams)  # warm-up
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        r = evaluate(dist, *labels, protocol="market", num_threads=threads)
        wall = time.perf_counter() - t0
    t0 = time.perf_counter()
    one = dist.min(axis=1)
    one_pass = time.perf_counter() - t0
    del one
    return {"gallery": int(dist.shape[1]), "queries": int(dist.shape[0]), "wall_s": wall,
            "one_pass_s": one_pass, "peak_extra_mib": mem.extra_mib,
            "matrix_mib": dist.nbytes / 2**20, "mAP": r["mAP"], "rank1": float(r["cmc"][0]),
            "loadavg": os.getloadavg()[0]}


def _speed_section(pids, camids, subsets, feats, prepared, figures, args) -> dict:
    out: dict[str, dict] = {}
    dist, q, g, labels = prepared["market"]
    D = dist.numpy() if isinstance(dist, torch.Tensor) else np.asarray(dist)
    print("\n## against torchreid's Cython evaluate_rank and one pass over the matrix (market)")
    ours = evaluate(D, *labels, protocol="market", num_threads=args.threads)
    fn, why = torchreid_evaluate_rank(args.torchreid_src)
    cases = {"evaluate (numpy)": lambda: evaluate(D, *labels, protocol="market",
                                                  num_threads=args.threads),
             "evaluate (backend='torch', this CPU)": lambda: evaluate(
                 torch.from_numpy(D), *labels, protocol="market", backend="torch"),
             "one pass: D.min(axis=1)": lambda: D.min(axis=1)}
    if fn is not None:
        cases["torchreid evaluate_cy"] = lambda: fn(D, labels[0], labels[1], labels[2],
                                                    labels[3], 50, False)
    best = dict.fromkeys(cases, float("inf"))
    results = {}
    for _ in range(args.repeats):  # interleaved rounds: all cases share the load
        for k, c in cases.items():
            t0 = time.perf_counter()
            results[k] = c()
            best[k] = min(best[k], time.perf_counter() - t0)
    same_torch = (results["evaluate (backend='torch', this CPU)"]["mAP"] == ours["mAP"]
                  and np.array_equal(results["evaluate (backend='torch', this CPU)"]["cmc"],
                                     ours["cmc"]))
    print(f"(load {os.getloadavg()[0]:.1f}; best of {args.repeats})")
    print("| call | best s | evaluate (numpy) is … faster | numbers |\n|---|---:|---:|---|")
    for k, t in best.items():
        note = ""
        if k.startswith("evaluate (backend"):
            note = "identical" if same_torch else "DIFFERENT"
        if k.startswith("torchreid"):
            cmc, mAP = results[k]
            # torchreid accumulates AP and CMC in float32, so equal up to float32 rounding
            d_map = abs(float(mAP) - ours["mAP"])
            d_cmc = float(np.abs(np.asarray(cmc[:50], np.float64) - ours["cmc"][:50]).max())
            same_tr = d_map < 1e-5 and d_cmc < 1e-5
            note = (f"same up to float32 rounding (|Δ mAP| {d_map:.1e}, max |Δ CMC| {d_cmc:.1e})"
                    if same_tr else f"DIFFERENT: mAP {mAP:.6f} vs {ours['mAP']:.6f}")
            out["torchreid_same_numbers"] = bool(same_tr)
        print(f"| {k} | {t:.4f} | {t / best['evaluate (numpy)']:.2f}× | {note} |")
    if fn is None:
        print(f"\ntorchreid comparison skipped: {why}")
    print(f"\nevaluate = {best['evaluate (numpy)'] / best['one pass: D.min(axis=1)']:.1f} × one "
          "pass over the matrix")
    out["speed_market"] = {k: v for k, v in best.items()}
    out["speed_market"]["torch_identical"] = bool(same_torch)
    out["speed_market"]["torchreid"] = why
    if fn is not None:
        out["speed_market"]["torchreid_ratio"] = (best["torchreid evaluate_cy"]
                                                  / best["evaluate (numpy)"])
    if args.profile:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        prof.enable()
        for _ in range(5):
            evaluate(D, *labels, protocol="market", num_threads=1)
        prof.disable()
        print("\ncProfile of 5 × evaluate(market), one thread (tottime):\n```")
        pstats.Stats(prof).sort_stats("tottime").print_stats(12)
        print("```")
    if args.large_gallery:
        env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
        res = subprocess.run([sys.executable, __file__, "--large-child", "--threads",
                              str(args.threads), "--large-gallery", str(args.large_gallery)],
                             env=env, capture_output=True, text=True, check=True)
        big = json.loads(res.stdout.strip().splitlines()[-1])
        print(f"\n## {big['queries']:,} queries × {big['gallery']:,}-tracklet gallery (market; "
              f"MARS gallery + synthetic distractors; load {big['loadavg']:.1f})")
        print("| evaluate s | one pass s | × one pass | distance matrix MiB (input) | "
              "peak extra MiB of evaluate | mAP | R1 |\n|---:|---:|---:|---:|---:|---:|---:|")
        print(f"| {big['wall_s']:.2f} | {big['one_pass_s']:.3f} | "
              f"{big['wall_s'] / big['one_pass_s']:.1f} | {big['matrix_mib']:.0f} | "
              f"{big['peak_extra_mib']:.0f} | {big['mAP']:.4f} | {big['rank1']:.4f} |")
        out["large_gallery"] = big
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--ref-queries", type=int, default=100, help="queries timed in the reference loops")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--large-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--large-gallery", type=int, default=100_000,
                    help="gallery size of the large case (0: skip)")
    ap.add_argument("--profile", action="store_true", help="cProfile evaluate (market)")
    ap.add_argument("--torchreid-src", type=Path, default=None,
                    help="a torchreid source checkout: its rank_cy.pyx is compiled (Cython) and "
                         "timed against evaluate (default: $TORCHREID_SRC; else an installed "
                         "torchreid, else skipped)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    torch.set_num_threads(args.threads)
    root = shared_dir()
    info = root / "data" / "mars-official-info" if root else None
    if info is None or not info.is_dir():
        print("needs ../shared/data/mars-official-info (the official MARS metadata)", file=sys.stderr)
        return 2
    pids, camids, subsets = load_mars_labels(info)
    feats = synthetic_features(pids, camids)
    if args.large_child:
        print(json.dumps(_large_gallery(pids, camids, subsets, feats, args.large_gallery,
                                        args.threads)))
        return 0
    calls, prepared = _calls(pids, camids, subsets, feats, args.threads)
    if args.memory_child:
        peaks = {}
        for name, fn in calls.items():
            fn()  # warm-up: one-time allocations (thread pools, caches) are not the call's
            with PeakRSS() as mem:
                fn()
            peaks[name] = mem.extra_mib
        print(json.dumps(peaks))
        return 0

    print(f"MARS test metadata: {pids.shape[0]} tracklets; features synthetic {feats.shape[1]}-d; "
          f"threads {args.threads}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    figures: dict[str, dict] = {}
    peaks = _measure_memory_in_child(args.threads)

    print("\n## evaluate() at MARS size")
    print("| protocol | Nq × Ng | valid | mAP | R1 | best s | median s | CPU s (best run) | peak extra MiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for protocol in ("market", "official", "query_in_gallery"):
        dist = prepared[protocol][0]
        name = f"evaluate_{protocol}"
        calls[name]()  # warm-up
        r, best, med, cpu = timed(calls[name], args.repeats)
        print(f"| {protocol} | {dist.shape[0]} × {dist.shape[1]} | {r['num_valid']} | {r['mAP']:.4f} | "
              f"{r['cmc'][0]:.4f} | {best:.3f} | {med:.3f} | {cpu:.3f} | {peaks[name]:.0f} |")
        figures[name] = {"best_s": best, "median_s": med, "cpu_s": cpu, "peak_extra_mib": peaks[name],
                         "mAP": r["mAP"], "rank1": float(r["cmc"][0]), "num_valid": r["num_valid"]}

    print(f"\n## plain per-query reference loops (first {args.ref_queries} queries, extrapolated to 1,980)")
    print("| protocol | reference s (extrapolated) | evaluate() best s | ratio | same numbers on the subset |")
    print("|---|---|---|---|---|")
    sub = slice(0, args.ref_queries)
    for protocol in ("market", "official"):
        dist, q, g, _ = prepared[protocol]
        qp, gp, qc, gc = pids[q][sub], pids[g], camids[q][sub], camids[g]
        if protocol == "market":
            (cmc_ref, map_ref), t_ref, _, _ = timed(lambda: reference_market(dist[sub], qp, gp, qc, gc))  # noqa: B023
        else:
            (cmc_ref, map_ref), t_ref, _, _ = timed(lambda: reference_official(dist[sub], gp, qp, gc, qc))  # noqa: B023
        ours = evaluate(dist[sub], qp, gp, qc, gc, protocol=protocol)
        same = abs(ours["mAP"] - map_ref) < 1e-9 and np.allclose(ours["cmc"], cmc_ref[:50], atol=1e-12)
        full = t_ref * dist.shape[0] / args.ref_queries
        best = figures[f"evaluate_{protocol}"]["best_s"]
        print(f"| {protocol} | {full:.1f} | {best:.3f} | {full / best:.0f}× | {'yes' if same else 'NO'} |")
        figures[f"reference_{protocol}"] = {"extrapolated_s": full, "subset_queries": args.ref_queries,
                                            "ratio": full / best, "agrees": bool(same)}

    print("\n## k-reciprocal re-ranking (k1=20, k2=6, λ=0.3)")
    qf, gf, dense = prepared["rerank"]
    labels = prepared["market"][3]
    print("| variant | N | best s | CPU s (best run) | peak extra MiB | mAP before → after |")
    print("|---|---|---|---|---|---|")
    base = evaluate(dense[0], *labels, protocol="market")["mAP"]
    for name, title in (("rerank_re_ranking", "re_ranking(q_g, q_q, g_g)"),
                        ("rerank_re_ranking_features", "re_ranking_features(qf, gf)")):
        out, best, _, cpu = timed(calls[name], 2 if name == "rerank_re_ranking" else 1)
        after = evaluate(out, *labels, protocol="market")["mAP"]
        n = qf.shape[0] + gf.shape[0]
        print(f"| {title} | {n} | {best:.2f} | {cpu:.2f} | {peaks[name]:.0f} | {base:.4f} → {after:.4f} |")
        figures[name] = {"best_s": best, "cpu_s": cpu, "peak_extra_mib": peaks[name],
                         "mAP_before": base, "mAP_after": after, "N": n}
        del out
    # the dense reference needs (N²) matrices several times over: compare at a smaller size
    q, g = prepared["market"][1], prepared["market"][2]
    sq, sg = q[:300], g[:1200]
    small = (compute_distance(feats[sq], feats[sg]), compute_distance(feats[sq], feats[sq]),
             compute_distance(feats[sg], feats[sg]))
    ref_out, t_ref, _, _ = timed(lambda: reference_rerank(*small))
    ours_out, t_ours, _, _ = timed(lambda: re_ranking(*small), 3)
    err = float(np.abs(ours_out - ref_out).max())
    n_small = int(sq.shape[0] + sg.shape[0])
    print(f"\ndense reference at N = {n_small}: {t_ref:.2f} s; ours {t_ours:.3f} s "
          f"({t_ref / t_ours:.0f}×); max |difference| {err:.1e}")
    figures["rerank_reference_small"] = {"N": n_small, "reference_s": t_ref, "ours_s": t_ours, "max_abs_diff": err}

    figures.update(_speed_section(pids, camids, subsets, feats, prepared, figures, args))

    ev, rr = figures["evaluate_market"], figures["rerank_re_ranking"]
    print("\n## targets")
    print(f"- market evaluate 1,980 × 9,330 < 0.1 s: best wall {ev['best_s']:.3f} s, CPU {ev['cpu_s']:.3f} s")
    print(f"- re-ranking 11,310 tracklets < 3 s, < 1 GiB extra: best wall {rr['best_s']:.2f} s, "
          f"CPU {rr['cpu_s']:.2f} s, peak extra {rr['peak_extra_mib']:.0f} MiB")
    load = os.getloadavg()[0]
    print(f"(load average {load:.1f} on {os.cpu_count()} CPUs at the end; "
          f"command: .venv/bin/python bench/evaluation.py --threads {args.threads})")
    figures["machine"] = {"threads": args.threads, "cpus": os.cpu_count(), "loadavg_end": load}
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
