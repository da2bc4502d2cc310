"""Evaluation: distances, CMC/mAP/mINP under named protocols, re-ranking, score
normalisation, feature files. See ``docs/evaluation.md``."""

from videoreid.evaluation.distance import METRICS, compute_distance
from videoreid.evaluation.features import FeatureSet, load_feature_sets
from videoreid.evaluation.normalization import score_normalize
from videoreid.evaluation.protocol import (
    DEFAULT_PROTOCOLS,
    build_sets,
    default_protocol,
    evaluate_features,
    evaluate_split,
    evaluate_splits,
    format_table,
)
from videoreid.evaluation.rank import PROTOCOLS, evaluate
from videoreid.evaluation.rerank import re_ranking, re_ranking_features

__all__ = [
    "DEFAULT_PROTOCOLS",
    "METRICS",
    "PROTOCOLS",
    "FeatureSet",
    "build_sets",
    "compute_distance",
    "default_protocol",
    "evaluate",
    "evaluate_features",
    "evaluate_split",
    "evaluate_splits",
    "format_table",
    "load_feature_sets",
    "re_ranking",
    "re_ranking_features",
    "score_normalize",
]
