"""scai.models."""
