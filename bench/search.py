"""Gallery search at scale: IVF-PQ (+ re-ranking) against exact search, in one run.

Data: ``--n`` synthetic identity-structured vectors of dimension ``--dim`` (default
1,000,000 × 2,048 float32 = 8 GB): ``n / --per-id`` identity centres ``c ~ N(0, I)``, each
gallery vector ``c + σ ε`` (σ = ``--noise``), queries fresh samples of random identities, so a
query's true neighbours are the gallery vectors of its identity, ranked by their noise. The
gallery is generated in chunks (one generator per chunk: the same data whatever the chunk
size) into a memory-mapped ``.npy`` file under ``--workdir``, so memory stays bounded:
exact search streams the file in chunks; the IVF-PQ index holds 1-byte PQ codes (``m`` per
vector) plus 8-bit scalar codes for re-ranking (``dim`` bytes per vector, 2 GB at full size).

Measured, all in the same run and on the same queries:

- exact search (:func:`videoreid.evaluation.distance.compute_distance` per gallery chunk, the
  evaluation's own distance, top-k merged across chunks): queries/s;
- IVF-PQ (:func:`videoreid.retrieval.index.build_faiss`, ``IVF<nlist>,PQ<m>x8`` whose
  shortlist of ``refine × k`` candidates is re-ranked with SQ8 codes): build time (train +
  add), queries/s, and recall@k = |IVF-PQ top-k ∩ exact top-k| / k, averaged over queries.

Reported as ratios against exact search. Run (full size needs ~12 GB free memory and ~10 GB
of disk, tens of minutes on 2 cores)::

    python bench/search.py                       # 1,000,000 × 2,048
    python bench/search.py --n 100000            # a tenth
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from videoreid.evaluation.distance import compute_distance  # noqa: E402
from videoreid.retrieval.index import build_faiss, set_search_params  # noqa: E402


def make_gallery(path: Path, n: int, dim: int, per_id: int, noise: float, seed: int,
                 chunk: int) -> tuple[np.memmap, np.ndarray]:
    """Write the gallery chunk by chunk into ``path``; returns it (memory-mapped) and the
    identity of each row."""
    ids = n // per_id
    centres = np.random.default_rng([seed, 0]).standard_normal((ids, dim), dtype=np.float32)
    pids = np.random.default_rng([seed, 1]).integers(0, ids, n)
    data = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, dim))
    for k, a in enumerate(range(0, n, chunk)):
        b = min(n, a + chunk)
        rng = np.random.default_rng([seed, 2, k])
        block = rng.standard_normal((b - a, dim), dtype=np.float32)
        block *= noise
        block += centres[pids[a:b]]
        data[a:b] = block
    data.flush()
    return data, centres


def make_queries(centres: np.ndarray, nq: int, noise: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng([seed, 3])
    pick = rng.integers(0, centres.shape[0], nq)
    q = centres[pick] + noise * rng.standard_normal((nq, centres.shape[1]), dtype=np.float32)
    return q.astype(np.float32)


def exact_topk(gallery: np.ndarray, queries: np.ndarray, k: int, chunk: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """Exact squared-L2 top-k, streaming the gallery in chunks (ties: lower row first)."""
    nq = queries.shape[0]
    best_d = np.full((nq, k), np.inf, dtype=np.float32)
    best_i = np.full((nq, k), -1, dtype=np.int64)
    for a in range(0, gallery.shape[0], chunk):
        g = np.asarray(gallery[a: a + chunk])
        d = np.asarray(compute_distance(queries, g, "euclidean", squared=True))
        cand_d = np.concatenate([best_d, d], axis=1)
        cand_i = np.concatenate([best_i, np.arange(a, a + g.shape[0])[None, :].repeat(nq, 0)],
                                axis=1)
        part = np.argpartition(cand_d, k - 1, axis=1)[:, :k]
        pd = np.take_along_axis(cand_d, part, 1)
        pi = np.take_along_axis(cand_i, part, 1)
        order = np.lexsort((pi, pd), axis=1)  # by distance, then gallery row
        best_d = np.take_along_axis(pd, order, 1)
        best_i = np.take_along_axis(pi, order, 1)
    return best_i, best_d


def main() -> int:
    sys.stdout.reconfigure(line_buffering=True)  # progress shows up in logs as it happens
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1_000_000, help="gallery size")
    p.add_argument("--dim", type=int, default=2048)
    p.add_argument("--per-id", type=int, default=20, help="gallery vectors per identity")
    p.add_argument("--noise", type=float, default=0.6, help="within-identity spread σ")
    p.add_argument("--queries", type=int, default=200, help="queries (all used for recall)")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--nlist", type=int, default=1024)
    p.add_argument("--m", type=int, default=64, help="PQ sub-quantisers (dim/m dims each)")
    p.add_argument("--nprobe", type=int, nargs="+", default=[8, 16, 32],
                   help="lists searched; several values are measured on the same index")
    p.add_argument("--refine", type=int, default=10, help="shortlist = refine × k")
    p.add_argument("--refine-codes", default="SQ8", choices=("SQ8", "SQfp16", "Flat"))
    p.add_argument("--train", type=int, default=65536, help="IVF-PQ training vectors")
    p.add_argument("--chunk", type=int, default=32768, help="rows per generation/search chunk")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", type=Path, default=Path("runs/bench_search"))
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = p.parse_args()

    import faiss
    import torch

    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    args.workdir.mkdir(parents=True, exist_ok=True)
    path = args.workdir / f"gallery_{args.n}x{args.dim}_s{args.seed}.npy"
    t = time.perf_counter()
    gallery, centres = make_gallery(path, args.n, args.dim, args.per_id, args.noise, args.seed,
                                    args.chunk)
    gen_s = time.perf_counter() - t
    queries = make_queries(centres, args.queries, args.noise, args.seed)
    del centres
    print(f"data: {args.n:,} × {args.dim} float32 ({gallery.nbytes / 2**30:.1f} GiB, "
          f"{args.n // args.per_id:,} identities of {args.per_id}) in {gen_s:.0f} s; "
          f"{args.queries} queries; {args.threads} threads")

    t = time.perf_counter()
    exact_i, _ = exact_topk(gallery, queries, args.k, args.chunk)
    exact_s = time.perf_counter() - t
    exact_qps = args.queries / exact_s
    print(f"exact: {exact_qps:.2f} queries/s ({exact_s:.1f} s for {args.queries})")

    params = {"nlist": args.nlist, "m": args.m, "nbits": 8, "nprobe": args.nprobe[0],
              "refine": args.refine, "refine_codes": args.refine_codes}
    t = time.perf_counter()
    index = build_faiss(gallery, "ivf-pq", "euclidean", params, train_size=args.train,
                        seed=args.seed)
    build_s = time.perf_counter() - t
    mem_gb = (args.n * (args.m + (args.dim if args.refine_codes == "SQ8" else
                                  2 * args.dim if args.refine_codes == "SQfp16" else
                                  4 * args.dim))) / 2**30
    print(f"ivf-pq IVF{args.nlist},PQ{args.m}x8 + re-ranking of {args.refine}×k candidates "
          f"({args.refine_codes}): build {build_s:.0f} s (train on {min(args.train, args.n):,}), "
          f"codes {mem_gb:.2f} GiB")
    rows = []
    for nprobe in args.nprobe:
        set_search_params(index, dict(params, nprobe=nprobe))
        index.search(queries[:8], args.k)  # warm-up
        t = time.perf_counter()
        reps = 0
        while True:  # repeat until >= 1 s of searching so the rate is not a timer artefact
            _, approx_i = index.search(queries, args.k)
            reps += 1
            if time.perf_counter() - t > 1.0:
                break
        ivf_qps = args.queries * reps / (time.perf_counter() - t)
        recall = float(np.mean([len(set(a) & set(b)) / args.k
                                for a, b in zip(approx_i, exact_i, strict=True)]))
        rows.append({"nprobe": nprobe, "ivf_qps": ivf_qps, "speedup": ivf_qps / exact_qps,
                     f"recall_at_{args.k}": recall})
        print(f"  nprobe {nprobe:4d}: {ivf_qps:8.0f} queries/s = {ivf_qps / exact_qps:6.1f}× "
              f"exact, recall@{args.k} {recall:.3f}"
              f"{'  (target: >= 0.95 at >= 20x: met)' if recall >= 0.95 and ivf_qps >= 20 * exact_qps else ''}")
    if args.json:
        args.json.write_text(json.dumps({
            "n": args.n, "dim": args.dim, "queries": args.queries, "k": args.k,
            "threads": args.threads, "params": params, "generate_s": gen_s,
            "exact_qps": exact_qps, "ivf_build_s": build_s, "rows": rows}, indent=2) + "\n")
    del gallery
    path.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
