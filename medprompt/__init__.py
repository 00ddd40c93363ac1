"""medprompt: automate MedSAM with prompts learned from tight bounding boxes."""

__version__ = "0.1.0"
