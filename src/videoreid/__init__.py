"""videoreid: video-based person re-identification on one shared, tested pipeline."""

__version__ = "0.1.0"
