"""Character-level review openings conditioned on sentiment: one-to-many (issue 8)."""
