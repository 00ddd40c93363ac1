"""Preprocessed datasets and what they hold: slices and manifests, source geometry, volume I/O, tight boxes."""
