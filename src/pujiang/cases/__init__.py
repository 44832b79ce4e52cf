"""cases module."""
