"""The HTTP API: Alertmanager's API v2 for alerts and silences, alertd's own under /api/alertd/v1."""
