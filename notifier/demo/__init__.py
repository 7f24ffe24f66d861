"""Demo: a Datafold simulator for `datafold-notifier demo`, tests and benchmarks."""
