"""Benchmark harness for sessionactor. Run ``make bench`` or ``make bench-full``."""
