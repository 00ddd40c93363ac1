"""Training a method from boxes: the trainer, box losses, mask targets, augmentation, collapse recovery, box-only selection."""
