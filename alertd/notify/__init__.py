"""Notifications: the pipeline from a routed alert group to a delivered, recorded message."""
