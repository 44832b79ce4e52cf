"""浦江 Pujiang — an open city operating platform."""

__version__ = "0.1.0"
