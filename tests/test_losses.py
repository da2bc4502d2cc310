"""Loss terms against hand-computed values on small constructed batches."""

from __future__ import annotations

import math

import pytest
import torch

from videoreid.losses import (
    AdaptiveWeightedTripletLoss,
    BatchHardTripletLoss,
    ConcentrationLoss,
    CrossEntropyLoss,
    DiversityLoss,
    FrameCrossEntropyLoss,
    MarginRankingLoss,
    Objective,
    OIMLoss,
    build_objective,
)
from videoreid.losses.attention import stripe_assignment
from videoreid.models.output import ReIDOutput


def close(t: torch.Tensor, value: float, tol: float = 1e-5) -> None:
    v = float(t.detach())
    assert abs(v - value) < tol, (v, value)


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


# Four points on a line: ids 0 at 0 and 1, id 1 at 3 and 7.
POINTS = torch.tensor([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0], [7.0, 0.0]])
LABELS = torch.tensor([0, 0, 1, 1])


def metric_out(feat: torch.Tensor) -> ReIDOutput:
    return ReIDOutput(embedding=feat, metric_feature=feat)


# ------------------------------------------------------------------------- cross-entropy
def test_cross_entropy_label_smoothing():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]])
    pids = torch.tensor([0, 1])
    eps = 0.1
    expected = 0.0
    for row, y in zip(logits.tolist(), pids.tolist(), strict=True):
        z = sum(math.exp(v) for v in row)
        logp = [v - math.log(z) for v in row]
        # target (1 - eps)·onehot + eps/C
        expected += -sum(((1 - eps) * (c == y) + eps / 3) * lp for c, lp in enumerate(logp))
    expected /= 2
    loss = CrossEntropyLoss(label_smoothing=eps)(
        ReIDOutput(torch.zeros(2, 1), logits=logits), {"pids": pids}
    )
    close(loss, expected)
    plain = CrossEntropyLoss()(ReIDOutput(torch.zeros(2, 1), logits=logits), {"pids": pids})
    close(
        plain,
        -0.5
        * sum(
            row[y] - math.log(sum(math.exp(v) for v in row))
            for row, y in zip(logits.tolist(), pids.tolist(), strict=True)
        ),
    )


def test_cross_entropy_needs_logits():
    with pytest.raises(ValueError, match="logits"):
        CrossEntropyLoss()(
            ReIDOutput(torch.zeros(2, 1)), {"pids": torch.zeros(2, dtype=torch.long)}
        )


def test_frame_cross_entropy_masks_padded_frames():
    logits = torch.zeros(2, 3, 4)
    logits[0, 0, 1] = 2.0  # correct class for clip 0 (pid 1)
    logits[1, 2, 0] = 5.0  # padded frame: must not count
    pids = torch.tensor([1, 3])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]], dtype=torch.bool)
    out = ReIDOutput(torch.zeros(2, 1), frame_logits=logits)
    l_hit = -(2.0 - math.log(math.exp(2.0) + 3))
    uniform = math.log(4)
    close(
        FrameCrossEntropyLoss()(out, {"pids": pids, "frame_mask": mask}), (l_hit + 4 * uniform) / 5
    )
    l_pad = -(0.0 - math.log(math.exp(5.0) + 3))
    close(FrameCrossEntropyLoss()(out, {"pids": pids}), (l_hit + 4 * uniform + l_pad) / 6)


# ------------------------------------------------------------------------------ triplets
def test_batch_hard_triplet_margin_and_soft():
    # hardest (d_ap, d_an): anchor 0: (1, 3); 1: (1, 2); 3: (4, 2); 7: (4, 6)
    batch = {"pids": LABELS}
    close(BatchHardTripletLoss(margin=0.3)(metric_out(POINTS), batch), (0 + 0 + 2.3 + 0) / 4)
    soft = (softplus(-2) + softplus(-1) + softplus(2) + softplus(-2)) / 4
    close(BatchHardTripletLoss(soft=True)(metric_out(POINTS), batch), soft)


def test_triplet_skips_anchors_without_positive():
    feat = torch.cat([POINTS, torch.tensor([[20.0, 0.0]])])
    labels = torch.cat([LABELS, torch.tensor([2])])
    close(BatchHardTripletLoss(margin=0.3)(metric_out(feat), {"pids": labels}), 2.3 / 4)
    lonely = BatchHardTripletLoss()(metric_out(POINTS[:2]), {"pids": torch.tensor([0, 1])})
    close(lonely, 0.0)


def test_adaptive_weighted_triplet():
    d = torch.cdist(POINTS, POINTS).tolist()
    labels = LABELS.tolist()
    total = 0.0
    for a in range(4):
        pos = [i for i in range(4) if labels[i] == labels[a] and i != a]
        neg = [j for j in range(4) if labels[j] != labels[a]]
        zp = sum(math.exp(d[a][i]) for i in pos)
        zn = sum(math.exp(-d[a][j]) for j in neg)
        sp = sum(math.exp(d[a][i]) / zp * d[a][i] for i in pos)
        sn = sum(math.exp(-d[a][j]) / zn * d[a][j] for j in neg)
        total += softplus(sp - sn)
    feat = POINTS.clone().requires_grad_(True)
    loss = AdaptiveWeightedTripletLoss()(metric_out(feat), {"pids": LABELS})
    close(loss, total / 4)
    loss.backward()
    assert torch.isfinite(feat.grad).all()
    # Anchor 0 by hand: one positive at 1; negatives at 3 and 7 weighted e^-3 : e^-7.
    sn0 = (3 * math.exp(-3) + 7 * math.exp(-7)) / (math.exp(-3) + math.exp(-7))
    assert abs(softplus(1 - sn0) - softplus(d[0][1] - sn0)) < 1e-12


def test_margin_ranking_batch_hard_and_all():
    batch = {"pids": LABELS}
    close(MarginRankingLoss(margin=0.3)(metric_out(POINTS), batch), 2.3 / 4)
    # all 8 triplets: only anchor 3 (p=7, d=4) violates: n=0 (d=3) → 1.3, n=1 (d=2) → 2.3
    close(MarginRankingLoss(margin=0.3, mining="batch_all")(metric_out(POINTS), batch), 3.6 / 8)
    with pytest.raises(ValueError, match="batch_hard"):
        MarginRankingLoss(mining="semi_hard")


# ----------------------------------------------------------------------------------- OIM
def test_oim_value_and_update():
    oim = OIMLoss(num_classes=3, feat_dim=2, scalar=30.0, momentum=0.5)
    oim.lut.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]))
    feat = torch.tensor([[3.0, 4.0], [0.0, 2.0], [-1.0, 0.0]], requires_grad=True)
    pids = torch.tensor([0, 0, 2])
    normed = [[0.6, 0.8], [0.0, 1.0], [-1.0, 0.0]]
    lut = [[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]
    expected = 0.0
    for x, y in zip(normed, pids.tolist(), strict=True):
        logits = [30 * (x[0] * v[0] + x[1] * v[1]) for v in lut]
        expected += -(logits[y] - math.log(sum(math.exp(z) for z in logits)))
    loss = oim.train()(metric_out(feat), {"pids": pids})
    close(loss, expected / 3, tol=1e-4)
    loss.backward()  # the update must not break the graph (logits used the old table)
    assert feat.grad is not None and torch.isfinite(feat.grad).all()
    # class 0: two sequential updates; class 2: from zero; class 1 untouched
    v = [0.5 * 1 + 0.5 * 0.6, 0.5 * 0 + 0.5 * 0.8]
    n = math.hypot(*v)
    v = [v[0] / n, v[1] / n]
    v = [0.5 * v[0] + 0.5 * 0.0, 0.5 * v[1] + 0.5 * 1.0]
    n = math.hypot(*v)
    expected_lut = torch.tensor([[v[0] / n, v[1] / n], [0.0, 1.0], [-1.0, 0.0]])
    torch.testing.assert_close(oim.lut, expected_lut)
    assert "lut" in oim.state_dict()
    before = oim.lut.clone()
    oim.eval()(metric_out(feat.detach()), {"pids": pids})
    torch.testing.assert_close(oim.lut, before)  # no update outside training


def test_oim_checks_feature_size():
    with pytest.raises(ValueError, match="feat_dim"):
        OIMLoss(3, 4)(metric_out(torch.randn(2, 5)), {"pids": torch.tensor([0, 1])})


# ----------------------------------------------------------------------------- attention
def one_hot_maps(positions: list[int], h: int = 2, w: int = 2) -> torch.Tensor:
    a = torch.zeros(len(positions), h * w)
    a[torch.arange(len(positions)), torch.tensor(positions)] = 1.0
    return a.reshape(len(positions), h, w)


def att_out(maps: torch.Tensor, key: str = "spatial/mam") -> ReIDOutput:
    return ReIDOutput(torch.zeros(1, 1), attention={key: maps})


def test_hellinger_disjoint_and_identical_one_hot():
    div = DiversityLoss("spatial/mam")
    k = 3
    close(div(att_out(one_hot_maps([0, 1, 2])[None, None]), {}), 0.0)
    close(div(att_out(one_hot_maps([2, 2, 2])[None, None]), {}), k * (k - 1))


def test_hellinger_partial_overlap_and_q_prime():
    s = torch.tensor([[0.5, 0.5, 0.0, 0.0], [0.0, 0.5, 0.5, 0.0]])
    # √S√Sᵀ off-diagonal = √(.5·.5) = .5 → Q = 2·.25
    close(DiversityLoss("a", spatial_dims=1)(att_out(s[None], "a"), {}), 0.5)
    # SSᵀ = [[.5, .25], [.25, .5]] → Q' = 2·.25 + 2·.0625
    q_prime = DiversityLoss("a", variant="q_prime", spatial_dims=1)
    close(q_prime(att_out(s[None], "a"), {}), 0.625)
    uniform = torch.full((2, 4), 0.25)  # SSᵀ = .25 everywhere → 2·.75² + 2·.25²
    close(q_prime(att_out(uniform[None], "a"), {}), 1.25)
    close(q_prime(att_out(one_hot_maps([0, 3]).flatten(1)[None], "a"), {}), 0.0)


def test_diversity_mean_skips_padded_frames_and_has_finite_grad():
    maps = torch.stack([one_hot_maps([0, 1, 2]), one_hot_maps([1, 1, 1])])[None]  # (1, 2, 3, 2, 2)
    div = DiversityLoss("spatial/mam")
    close(div(att_out(maps), {}), 3.0)  # mean of 0 and 6
    close(div(att_out(maps), {"frame_mask": torch.tensor([[True, False]])}), 0.0)
    soft = (
        torch.softmax(torch.randn(2, 3, 3, 4), dim=-1).reshape(2, 3, 3, 2, 2).requires_grad_(True)
    )
    div(att_out(soft), {}).backward()
    assert torch.isfinite(soft.grad).all()


def test_diversity_missing_key_lists_available():
    with pytest.raises(KeyError, match="spatial/mam"):
        DiversityLoss("spatial/other")(att_out(torch.zeros(1, 2, 2, 2)), {})


def test_stripe_assignment_even_split():
    # 5 rows into 2 stripes: rows 0-2 and 3-4 (whole rows)
    a = stripe_assignment((5, 2), 2)
    assert a.argmax(1).tolist() == [0] * 6 + [1] * 4
    # K divides H: contiguous segments of length h·w/K (eq. 9 literally)
    assert stripe_assignment((4, 3), 2).argmax(1).tolist() == [0] * 6 + [1] * 6
    # flattened positions, and H < K
    assert stripe_assignment((5,), 2).argmax(1).tolist() == [0, 0, 0, 1, 1]
    assert stripe_assignment((1, 6), 3).argmax(1).tolist() == [0, 0, 1, 1, 2, 2]


def test_concentration_hand_value_and_minimum():
    con = ConcentrationLoss("m")
    maps = torch.zeros(2, 4, 2)  # K=2, H=4, W=2: stripes are rows {0,1} and {2,3}
    maps[0] = 1 / 8  # uniform → Â00 = .5
    maps[1, 0, 0] = 0.25
    maps[1, 3, 1] = 0.75  # Â11 = .75
    close(con(att_out(maps[None], "m"), {}), -math.log(0.5) - math.log(0.75))
    best = torch.zeros(2, 4, 2)
    best[0, :2] = 0.25
    best[1, 2, 0] = 1.0  # each submodule's mass inside its own stripe
    close(con(att_out(best[None], "m"), {}), 0.0)
    torch.manual_seed(0)
    rand = torch.softmax(torch.randn(10, 2, 8), -1).reshape(10, 2, 4, 2)
    per_image = [float(con(att_out(r[None], "m"), {})) for r in rand]
    assert min(per_image) > 0.0


def test_concentration_uneven_rows_and_clamp():
    con = ConcentrationLoss("m")
    maps = torch.zeros(2, 5, 1)  # H=5 → stripes rows 0-2, 3-4
    maps[0, 2, 0] = 1.0
    maps[1, 2, 0] = 0.5
    maps[1, 4, 0] = 0.5
    close(con(att_out(maps[None], "m"), {}), math.log(2))
    maps[1] = 0.0
    maps[1, 0, 0] = 1.0  # nothing in its stripe → clamped at eps
    maps = maps.requires_grad_(True)
    loss = con(att_out(maps[None], "m"), {})
    close(loss, -math.log(1e-8), tol=1e-3)
    loss.backward()
    assert torch.isfinite(maps.grad).all()


# ----------------------------------------------------------------------------- objective
def test_objective_sums_weighted_terms():
    logits = torch.tensor([[1.0, 0.0], [0.0, 2.0], [0.3, 0.1], [1.0, 1.0]])
    out = ReIDOutput(embedding=POINTS, logits=logits, metric_feature=POINTS)
    batch = {"pids": LABELS}
    obj = build_objective(
        [
            {"name": "ce", "weight": 1.0, "label_smoothing": 0.1},
            {"name": "triplet", "weight": 0.5, "margin": 0.3},
            {"name": "adaptive_triplet", "weight": 0.0},
        ],
        num_classes=2,
        feat_dim=2,
    )
    values = obj(out, batch)
    assert set(values) == {"ce", "triplet", "adaptive_triplet", "total"}
    ce = CrossEntropyLoss(label_smoothing=0.1)(out, batch)
    close(values["ce"], float(ce))
    close(values["triplet"], 2.3 / 4)
    close(values["total"], float(ce) + 0.5 * 2.3 / 4)


def test_build_objective_injects_and_validates():
    obj = build_objective(
        [{"name": "oim", "scalar": 10.0}, {"name": "diversity", "key": "spatial/a", "weight": 2.0}],
        num_classes=7,
        feat_dim=16,
    )
    assert obj.terms[0].lut.shape == (7, 16) and obj.terms[0].scalar == 10.0
    assert obj.terms[1].name == "diversity/spatial/a" and obj.terms[1].weight == 2.0
    assert "terms.0.lut" in obj.state_dict()
    with pytest.raises(ValueError) as e:
        build_objective([{"name": "triplet", "margn": 0.3}], 2, 2)
    assert "margn" in str(e.value) and "margin" in str(e.value) and "soft" in str(e.value)
    with pytest.raises(ValueError, match="adaptive_triplet"):
        build_objective([{"name": "tripplet"}], 2, 2)
    with pytest.raises(ValueError, match="num_classes"):
        build_objective([{"name": "oim", "num_classes": 3}], 2, 2)
    with pytest.raises(ValueError, match="key"):
        build_objective([{"name": "concentration"}], 2, 2)
    with pytest.raises(ValueError, match="duplicate"):
        build_objective([{"name": "ce"}, {"name": "ce", "weight": 0.5}], 2, 2)
    with pytest.raises(ValueError, match="at least one"):
        Objective([])
