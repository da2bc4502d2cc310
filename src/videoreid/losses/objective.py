"""The training objective: named loss terms, weighted and summed.

``build_objective`` turns the config's loss list (``[{"name": "ce", "weight": 1.0,
"label_smoothing": 0.1}, ...]``) into an :class:`Objective`, checking each spec's keys
against its term's constructor. ``num_classes`` and ``feat_dim`` are passed to the terms that
take them (OIM) and are not spec keys.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from videoreid.losses.attention import ConcentrationLoss, DiversityLoss
from videoreid.losses.cross_entropy import CrossEntropyLoss, FrameCrossEntropyLoss
from videoreid.losses.oim import OIMLoss
from videoreid.losses.ranking import MarginRankingLoss
from videoreid.losses.triplet import AdaptiveWeightedTripletLoss, BatchHardTripletLoss
from videoreid.models.output import ReIDOutput

TERMS: dict[str, type[nn.Module]] = {
    "ce": CrossEntropyLoss,
    "frame_ce": FrameCrossEntropyLoss,
    "triplet": BatchHardTripletLoss,
    "adaptive_triplet": AdaptiveWeightedTripletLoss,
    "margin_ranking": MarginRankingLoss,
    "oim": OIMLoss,
    "diversity": DiversityLoss,
    "concentration": ConcentrationLoss,
}

# Filled in by build_objective from the model, never from a spec.
INJECTED: tuple[str, ...] = ("num_classes", "feat_dim")


class Objective(nn.Module):
    """Weighted sum of loss terms.

    ``forward(out, batch)`` returns ``{term.name: value}`` (each term's *unweighted* value,
    for logging) plus ``"total" = Σ weight · value`` over terms with non-zero weight (the
    tensor to back-propagate). Stateful terms (OIM's table) are submodules, so the
    objective's ``state_dict`` checkpoints them.

    Args:
        terms: modules with ``name``, ``weight`` and ``forward(out, batch) -> Tensor``.
    """

    def __init__(self, terms: Sequence[nn.Module]) -> None:
        super().__init__()
        if not terms:
            raise ValueError("an objective needs at least one loss term")
        names = [t.name for t in terms]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate loss terms {dupes}; each term may appear once")
        self.terms = nn.ModuleList(terms)

    def forward(self, out: ReIDOutput, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        values: dict[str, Tensor] = {}
        total: Tensor | None = None
        for term in self.terms:
            value = term(out, batch)
            values[term.name] = value
            if term.weight != 0.0:
                weighted = term.weight * value
                total = weighted if total is None else total + weighted
        if total is None:  # every weight is 0
            total = torch.zeros((), device=out.embedding.device)
        values["total"] = total
        return values


def valid_term_args(name: str) -> list[str]:
    """Spec keys (besides ``name``) accepted by loss term ``name``."""
    if name not in TERMS:
        raise ValueError(f"unknown loss term {name!r}; valid: {sorted(TERMS)}")
    params = inspect.signature(TERMS[name]).parameters
    return [p for p in params if p not in INJECTED]


def build_term(spec: Mapping[str, Any], num_classes: int, feat_dim: int) -> nn.Module:
    """Build one loss term from ``{"name": kind, **constructor_args}``."""
    spec = dict(spec)
    if "name" not in spec:
        raise ValueError(f"loss spec {spec} has no 'name'; valid names: {sorted(TERMS)}")
    name = spec.pop("name")
    valid = valid_term_args(name)
    unknown = sorted(set(spec) - set(valid))
    if unknown:
        raise ValueError(f"unknown keys {unknown} for loss {name!r}; valid: {valid}")
    params = inspect.signature(TERMS[name]).parameters
    injected = {"num_classes": num_classes, "feat_dim": feat_dim}
    spec.update({k: v for k, v in injected.items() if k in params})
    try:
        return TERMS[name](**spec)
    except TypeError as e:  # e.g. a required key such as the attention key is missing
        raise ValueError(f"loss {name!r}: {e}; valid keys: {valid}") from e


def build_objective(
    specs: Sequence[Mapping[str, Any]], num_classes: int, feat_dim: int
) -> Objective:
    """Build an :class:`Objective` from loss specs.

    Args:
        specs: e.g. ``[{"name": "ce", "label_smoothing": 0.1}, {"name": "triplet",
            "weight": 1.0, "margin": 0.3}]``; names in :data:`TERMS`.
        num_classes: training identities (OIM table rows).
        feat_dim: size of ``out.metric_feature`` (OIM table columns).
    Raises:
        ValueError: unknown term name or spec key (the message lists the valid ones).
    """
    return Objective([build_term(s, num_classes, feat_dim) for s in specs])
