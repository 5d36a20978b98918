"""Periodic tasks checked from the beat schedule itself: missed, late, failed, overran, never finished.

schedules: when an entry is due (beat's rules); beat: entries from a Celery app's beat_schedule;
runs: task events matched to entries; checks: the per-entry state and the gauges rules read.
"""
