"""scai.preprocessing."""
