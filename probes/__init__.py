"""Probe heads, losses, metrics and the fit/evaluate loop; usable with torch alone."""
