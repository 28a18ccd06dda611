"""scai.cli."""
