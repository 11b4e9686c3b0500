"""training: the ResNet-18 preset estimator, its losses and the trainer (issue 4)."""
