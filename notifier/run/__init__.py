"""Run: the cycle's orchestration and the daemon around it (settings, scheduling, leadership,
health, metrics, logs). Only `notifier.cli` imports it."""
