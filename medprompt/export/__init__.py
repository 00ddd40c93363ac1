"""Sharing a trained model: a self-contained folder in the Hugging Face Hub layout, its model card, the upload."""
