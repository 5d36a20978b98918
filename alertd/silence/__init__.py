"""Silences and maintenance windows: what operators use to keep pages quiet on purpose."""
