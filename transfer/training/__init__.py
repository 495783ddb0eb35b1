"""Training: the LightningModule (label loss + the enabled techniques), Lightning Trainers from the recipe."""
