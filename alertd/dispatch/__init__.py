"""Alerts to groups: the route tree and the timers that decide when a group is notified."""
