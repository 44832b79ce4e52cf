"""Tables of this module."""

from __future__ import annotations
