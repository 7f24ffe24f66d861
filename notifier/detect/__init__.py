"""Detect: pure decisions over fetched runs and the saved state, with time passed in."""
