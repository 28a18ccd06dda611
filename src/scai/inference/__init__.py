"""scai.inference."""
