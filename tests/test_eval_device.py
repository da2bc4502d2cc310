"""evaluate() and re-ranking on torch tensors (the run's device): same numbers as numpy.

The torch ranking path sorts on the tensor's device and counts with ``torch.searchsorted``;
ranks are integers, so every metric must be *identical* to the numpy path. On a machine
with CUDA the same checks run on the GPU.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from videoreid.evaluation.rank import PROTOCOLS, evaluate
from videoreid.evaluation.rerank import re_ranking, re_ranking_features

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def labelled(seed: int = 0, nq: int = 120, ng: int = 700):
    rng = np.random.default_rng(seed)
    qp = rng.integers(1, 40, nq)
    gp = rng.integers(-1, 40, ng)
    qc = rng.integers(0, 6, nq)
    gc = rng.integers(0, 6, ng)
    D = rng.random((nq, ng)).astype(np.float32)
    D[:, ::5] = np.round(D[:, ::5], 2)  # many exact ties: the stable tie-break matters
    D[:, 3] = D[:, 4]
    return D, qp, gp, qc, gc


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_torch_ranking_equals_numpy(protocol, device):
    D, qp, gp, qc, gc = labelled()
    want = evaluate(D, qp, gp, qc, gc, protocol=protocol, per_camera=True)
    Dt = torch.from_numpy(D).to(device)
    # a small block forces several row blocks and the padded per-row search
    got = evaluate(Dt, qp, gp, qc, gc, protocol=protocol, per_camera=True, backend="torch",
                   block_elems=20_000)
    assert got["mAP"] == want["mAP"] and got["mINP"] == want["mINP"]
    assert np.array_equal(got["cmc"], want["cmc"])
    assert np.array_equal(got["ap"], want["ap"], equal_nan=True)
    assert got["num_valid"] == want["num_valid"]
    np.testing.assert_array_equal(got["per_camera"]["mAP"], want["per_camera"]["mAP"])


def test_backend_choice_and_nan():
    D, qp, gp, qc, gc = labelled(1, 30, 90)
    a = evaluate(torch.from_numpy(D), qp, gp, qc, gc)  # auto: CPU tensor → numpy path
    b = evaluate(D.astype(np.float64), qp, gp, qc, gc, backend="torch")
    assert a["mAP"] == b["mAP"]
    D[0, np.flatnonzero(gp == qp[0])[0]] = np.nan
    for backend in ("numpy", "torch"):
        with pytest.raises(ValueError, match="NaN"):
            evaluate(torch.from_numpy(D), qp, gp, qc, gc, backend=backend)
    with pytest.raises(ValueError, match="backend"):
        evaluate(D, qp, gp, qc, gc, backend="jax")


@pytest.mark.parametrize("device", DEVICES)
def test_rerank_on_tensors_equals_numpy(device):
    rng = np.random.default_rng(0)
    qf = rng.normal(size=(40, 16)).astype(np.float32)
    gf = rng.normal(size=(150, 16)).astype(np.float32)
    want = re_ranking_features(qf, gf, k1=8, k2=3)
    got = re_ranking_features(torch.from_numpy(qf).to(device), torch.from_numpy(gf).to(device),
                              k1=8, k2=3)
    assert isinstance(got, torch.Tensor) and got.device.type == device
    np.testing.assert_allclose(got.cpu().numpy(), want, rtol=1e-5, atol=1e-6)

    def dist(a, b):
        return np.sqrt(((a[:, None] - b[None]) ** 2).sum(-1)).astype(np.float32)

    dense = (dist(qf, gf), dist(qf, qf), dist(gf, gf))
    want = re_ranking(*dense, k1=8, k2=3)
    got = re_ranking(*(torch.from_numpy(d).to(device) for d in dense), k1=8, k2=3)
    np.testing.assert_allclose(got.cpu().numpy(), want, rtol=1e-5, atol=1e-6)
