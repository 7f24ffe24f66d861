"""Route: which destinations hear of a notification, when, and what waits in the outbox. Pure."""
