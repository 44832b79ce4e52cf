"""catalog module."""
