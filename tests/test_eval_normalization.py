"""Score normalisation (AlignNet §4.4): formulas per mode and its intended effect."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from videoreid.evaluation.normalization import score_normalize
from videoreid.evaluation.rank import evaluate


def _z(x, axis):
    return (x - x.mean(axis=axis, keepdims=True)) / x.std(axis=axis, keepdims=True)


@pytest.mark.parametrize("block_size", [2, 1024])
def test_modes_match_formulas(block_size):
    x = np.random.default_rng(0).random((9, 6))
    row, col = _z(x, 1), _z(x, 0)
    expected = {"row": row, "column": col, "symmetric": 0.5 * (row + col), "sequential": _z(row, 0)}
    for mode, ref in expected.items():
        np.testing.assert_allclose(score_normalize(x, mode, block_size=block_size), ref, atol=1e-12)


def test_dtype_kind_and_constant_rows():
    x = np.ones((3, 4), dtype=np.float32)
    x[1] = [1, 2, 3, 4]
    out = score_normalize(x, "row")
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out[0], 0)  # constant row: std replaced by 1
    t = score_normalize(torch.from_numpy(x))
    assert isinstance(t, torch.Tensor)
    np.testing.assert_allclose(t.numpy(), score_normalize(x), atol=1e-6)
    with pytest.raises(ValueError, match="unknown score normalisation mode"):
        score_normalize(x, "t-norm")


def test_demotes_a_hub_gallery_item():
    # gallery item 0 is close to every query (a "hub"); each query's true match (item q+1) is
    # slightly farther. Column statistics reveal the hub, and normalisation ranks the matches first.
    rng = np.random.default_rng(1)
    nq = 6
    d = 1.0 + 0.05 * rng.random((nq, nq + 1))
    d[:, 0] = 0.30 + 0.01 * rng.random(nq)
    d[np.arange(nq), np.arange(nq) + 1] = 0.35
    args = (np.arange(nq), np.r_[99, np.arange(nq)], np.zeros(nq), np.ones(nq + 1))
    assert evaluate(d, *args, protocol="market")["cmc"][0] == 0.0
    assert evaluate(score_normalize(d), *args, protocol="market")["cmc"][0] == 1.0
