"""Renderers: a notification to a destination's message, before any I/O. Pure."""
