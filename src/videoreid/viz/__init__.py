"""Figures: training curves (:mod:`.curves`) and ranked retrieval results (:mod:`.ranking`).

Both use matplotlib's Agg backend (no display needed) and write PNGs atomically.
"""
