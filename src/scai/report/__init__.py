"""scai.report."""
