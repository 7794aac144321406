"""Conditional character generator (filled in by issue 8)."""
