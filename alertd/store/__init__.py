"""State that must survive a restart: silences, the notification log, alert state, history."""
