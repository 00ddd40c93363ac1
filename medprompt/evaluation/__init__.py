"""Scoring predictions against ground truth: metrics in millimetres, per-case tables, overlay pictures."""
