"""Observation: what the Celery deployment is doing, derived from events and samples."""
