"""k-reciprocal re-ranking: agreement with the authors' dense algorithm, and its effect."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from videoreid.evaluation.distance import compute_distance
from videoreid.evaluation.rank import evaluate
from videoreid.evaluation.rerank import re_ranking, re_ranking_features


def dense_reference(q_g_dist, q_q_dist, g_g_dist, k1=20, k2=6, lambda_value=0.3):
    """The usual open-source dense implementation of Zhong et al. (CVPR 2017), kept plain:
    full (q+g)² matrices, full argsort, per-item Python loops."""
    original_dist = np.concatenate(
        [np.concatenate([q_q_dist, q_g_dist], axis=1), np.concatenate([q_g_dist.T, g_g_dist], axis=1)], axis=0
    )
    original_dist = np.power(original_dist, 2).astype(np.float32)
    original_dist = np.transpose(1.0 * original_dist / np.max(original_dist, axis=0))
    V = np.zeros_like(original_dist).astype(np.float32)
    initial_rank = np.argsort(original_dist).astype(np.int32)
    query_num = q_g_dist.shape[0]
    all_num = q_g_dist.shape[0] + q_g_dist.shape[1]
    for i in range(all_num):
        forward_k_neigh_index = initial_rank[i, : k1 + 1]
        backward_k_neigh_index = initial_rank[forward_k_neigh_index, : k1 + 1]
        fi = np.where(backward_k_neigh_index == i)[0]
        k_reciprocal_index = forward_k_neigh_index[fi]
        k_reciprocal_expansion_index = k_reciprocal_index
        for j in range(len(k_reciprocal_index)):
            candidate = k_reciprocal_index[j]
            half = int(np.around(k1 / 2.0)) + 1
            candidate_forward_k_neigh_index = initial_rank[candidate, :half]
            candidate_backward_k_neigh_index = initial_rank[candidate_forward_k_neigh_index, :half]
            fi_candidate = np.where(candidate_backward_k_neigh_index == candidate)[0]
            candidate_k_reciprocal_index = candidate_forward_k_neigh_index[fi_candidate]
            if len(np.intersect1d(candidate_k_reciprocal_index, k_reciprocal_index)) > 2.0 / 3 * len(
                candidate_k_reciprocal_index
            ):
                k_reciprocal_expansion_index = np.append(k_reciprocal_expansion_index, candidate_k_reciprocal_index)
        k_reciprocal_expansion_index = np.unique(k_reciprocal_expansion_index)
        weight = np.exp(-original_dist[i, k_reciprocal_expansion_index])
        V[i, k_reciprocal_expansion_index] = 1.0 * weight / np.sum(weight)
    original_dist = original_dist[:query_num,]
    if k2 != 1:
        V_qe = np.zeros_like(V, dtype=np.float32)
        for i in range(all_num):
            V_qe[i, :] = np.mean(V[initial_rank[i, :k2], :], axis=0)
        V = V_qe
    invIndex = [np.where(V[:, i] != 0)[0] for i in range(all_num)]
    jaccard_dist = np.zeros_like(original_dist, dtype=np.float32)
    for i in range(query_num):
        temp_min = np.zeros(shape=[1, all_num], dtype=np.float32)
        indNonZero = np.where(V[i, :] != 0)[0]
        indImages = [invIndex[ind] for ind in indNonZero]
        for j in range(len(indNonZero)):
            temp_min[0, indImages[j]] = temp_min[0, indImages[j]] + np.minimum(
                V[i, indNonZero[j]], V[indImages[j], indNonZero[j]]
            )
        jaccard_dist[i] = 1 - temp_min / (2.0 - temp_min)
    final_dist = jaccard_dist * (1 - lambda_value) + original_dist * lambda_value
    return final_dist[:query_num, query_num:]


def identity_features(rng, n_ids, per_id, dim, noise, cams=3):
    pids = np.repeat(np.arange(n_ids), per_id)
    centres = rng.standard_normal((n_ids, dim))
    feats = centres[pids] + noise * rng.standard_normal((pids.shape[0], dim))
    return feats, pids, rng.integers(0, cams, pids.shape[0])


def split_matrix(feats, nq):
    """Exactly symmetric all-items distances (float64), cut into q_g, q_q, g_g."""
    d = np.sqrt(((feats[:, None, :] - feats[None, :, :]) ** 2).sum(-1))
    d = (d + d.T) / 2
    return d[:nq, nq:], d[:nq, :nq], d[nq:, nq:]


@pytest.mark.parametrize(
    "nq,ng,k1,k2,lam",
    [(30, 120, 20, 6, 0.3), (12, 40, 5, 3, 0.5), (20, 70, 7, 1, 0.0), (6, 14, 20, 6, 0.3), (25, 60, 9, 2, 1.0)],
)
def test_matches_dense_reference(nq, ng, k1, k2, lam):
    rng = np.random.default_rng(nq + ng)
    feats, _, _ = identity_features(rng, 12, (nq + ng) // 12 + 1, 16, 0.8)
    feats = feats[: nq + ng]
    qg, qq, gg = split_matrix(feats, nq)
    ref = dense_reference(qg, qq, gg, k1, k2, lam)
    out = re_ranking(qg.astype(np.float32), qq.astype(np.float32), gg.astype(np.float32), k1, k2, lam, block_size=7)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape == (nq, ng)
    np.testing.assert_allclose(out, ref, atol=1e-4, rtol=0)
    f32 = feats.astype(np.float32)
    out_f = re_ranking_features(f32[:nq], f32[nq:], k1, k2, lam, block_size=16)
    np.testing.assert_allclose(out_f, ref, atol=1e-4, rtol=0)


def test_torch_in_torch_out():
    rng = np.random.default_rng(0)
    feats, _, _ = identity_features(rng, 5, 8, 8, 0.5)
    qg, qq, gg = (torch.from_numpy(x.astype(np.float32)) for x in split_matrix(feats, 10))
    out = re_ranking(qg, qq, gg, k1=6, k2=3)
    assert isinstance(out, torch.Tensor) and out.shape == (10, 30)
    np.testing.assert_allclose(out.numpy(), re_ranking(qg.numpy(), qq.numpy(), gg.numpy(), k1=6, k2=3))


def test_reranking_improves_map_on_identity_correlated_features():
    rng = np.random.default_rng(1)
    feats, pids, cams = identity_features(rng, 40, 8, 32, 1.3, cams=4)
    feats = feats.astype(np.float32)
    is_q = np.zeros(pids.shape[0], dtype=bool)
    is_q[::8] = True  # one query per identity
    qf, gf = feats[is_q], feats[~is_q]
    args = (pids[is_q], pids[~is_q], cams[is_q], cams[~is_q])
    base = evaluate(compute_distance(qf, gf), *args, protocol="market")
    rr = evaluate(re_ranking_features(qf, gf), *args, protocol="market")
    assert rr["mAP"] > base["mAP"] + 0.02


def test_input_errors():
    z = np.zeros((2, 3), dtype=np.float32)
    with pytest.raises(ValueError, match="shapes disagree"):
        re_ranking(z, np.zeros((2, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="lambda_value"):
        re_ranking(z, np.zeros((2, 2)), np.zeros((3, 3)), lambda_value=1.5)
    with pytest.raises(ValueError, match="feature dimensions"):
        re_ranking_features(np.zeros((2, 4)), np.zeros((3, 5)))


def test_feature_path_with_cosine_matches_dense_reference():
    rng = np.random.default_rng(7)
    feats, _, _ = identity_features(rng, 8, 10, 12, 0.7)
    nq = 16
    unit = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    d = np.clip(1.0 - unit @ unit.T, 0.0, None)
    d = (d + d.T) / 2
    ref = dense_reference(d[:nq, nq:], d[:nq, :nq], d[nq:, nq:], k1=8, k2=3)
    f32 = feats.astype(np.float32)
    out = re_ranking_features(f32[:nq], f32[nq:], k1=8, k2=3, metric="cosine", block_size=13)
    np.testing.assert_allclose(out, ref, atol=1e-4, rtol=0)
