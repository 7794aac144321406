"""Spelled-out numbers to digits and back: sequence-to-sequence (filled in by issue 8)."""
