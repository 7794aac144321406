"""Data sources, one module each: fetch/verify, parse, split, batch."""
