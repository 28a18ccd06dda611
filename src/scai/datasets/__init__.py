"""scai.datasets."""
