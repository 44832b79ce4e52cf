"""context module."""
