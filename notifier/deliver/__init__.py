"""Deliver: the sink port, renderers (pure) and one adapter module per destination kind."""
