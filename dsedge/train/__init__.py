"""Training: focal loss, the paper's recipe, metrics, plots, checkpoints."""
