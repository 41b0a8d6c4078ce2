"""The change feed: events read by other systems, with cursors."""
