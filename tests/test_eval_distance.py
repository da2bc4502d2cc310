"""Blocked distance matrices against direct formulas."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

from videoreid.evaluation.distance import compute_distance


@pytest.mark.parametrize("block_size", [1, 3, 4096])
def test_euclidean_and_cosine_match_scipy(block_size):
    rng = np.random.default_rng(0)
    q, g = rng.standard_normal((7, 5)).astype(np.float32), rng.standard_normal((11, 5)).astype(np.float32)
    d = compute_distance(q, g, "euclidean", block_size=block_size)
    assert isinstance(d, np.ndarray) and d.dtype == np.float32 and d.shape == (7, 11)
    np.testing.assert_allclose(d, cdist(q, g), rtol=1e-5, atol=1e-5)
    sq = compute_distance(q, g, "euclidean", block_size=block_size, squared=True)
    np.testing.assert_allclose(sq, cdist(q, g, "sqeuclidean"), rtol=1e-5, atol=1e-5)
    c = compute_distance(q, g, "cosine", block_size=block_size)
    np.testing.assert_allclose(c, cdist(q, g, "cosine"), rtol=1e-5, atol=1e-5)


def test_identical_vectors_give_zero_not_nan():
    x = np.full((3, 4), 1e3, dtype=np.float32)
    d = compute_distance(x, x)
    assert np.isfinite(d).all() and (d >= 0).all() and d.max() < 1.0


def test_torch_in_torch_out_float64_kept():
    q = torch.randn(4, 6, dtype=torch.float64)
    d = compute_distance(q, q.clone(), "euclidean")
    assert isinstance(d, torch.Tensor) and d.dtype == torch.float64
    np.testing.assert_allclose(d.numpy(), cdist(q.numpy(), q.numpy()), atol=1e-6)


def test_errors():
    with pytest.raises(ValueError, match="unknown metric"):
        compute_distance(np.zeros((2, 3)), np.zeros((2, 3)), "manhattan")
    with pytest.raises(ValueError, match="dimensions differ"):
        compute_distance(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="2-D"):
        compute_distance(np.zeros(3), np.zeros((2, 3)))
