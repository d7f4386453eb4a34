"""Core's own hook implementations: built-in behaviour registers like any third-party plugin."""

from __future__ import annotations
