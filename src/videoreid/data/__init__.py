"""Datasets, temporal sampling, batching and clip loading."""
