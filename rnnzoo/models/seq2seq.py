"""Encoder-decoder sequence-to-sequence model (filled in by issue 8)."""
