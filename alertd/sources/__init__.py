"""Where observations come from: the broker's event stream and periodic broker/worker samples."""

from alertd.sources.open import REDIS_SCHEMES, EventSource, open_event_source

__all__ = ["REDIS_SCHEMES", "EventSource", "open_event_source"]
