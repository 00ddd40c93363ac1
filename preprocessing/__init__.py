"""Dataset pipelines: raw ACDC / CAMUS / HC18 (and synthetic phantoms) to the preprocessed contract."""
