"""Where observations come from: the broker's event stream and periodic broker/worker samples."""
