"""Loss terms and the objective that weights and sums them (see docs/architecture.md, "Losses")."""

from videoreid.losses.attention import ConcentrationLoss, DiversityLoss
from videoreid.losses.cross_entropy import CrossEntropyLoss, FrameCrossEntropyLoss
from videoreid.losses.objective import TERMS, Objective, build_objective
from videoreid.losses.oim import OIMLoss
from videoreid.losses.ranking import MarginRankingLoss
from videoreid.losses.triplet import AdaptiveWeightedTripletLoss, BatchHardTripletLoss

__all__ = [
    "TERMS",
    "AdaptiveWeightedTripletLoss",
    "BatchHardTripletLoss",
    "ConcentrationLoss",
    "CrossEntropyLoss",
    "DiversityLoss",
    "FrameCrossEntropyLoss",
    "MarginRankingLoss",
    "OIMLoss",
    "Objective",
    "build_objective",
]
