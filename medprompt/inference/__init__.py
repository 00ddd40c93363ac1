"""Segmenting without boxes: the passes over slices, the `predict` inputs, the predictions store, volumes in the source geometry."""
