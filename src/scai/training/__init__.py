"""scai.training."""
