"""scai.deploy."""
