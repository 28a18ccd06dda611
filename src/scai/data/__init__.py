"""scai.data."""
