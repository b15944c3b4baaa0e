"""Benchmark harness for sessionactor (issue 5). Run ``make bench`` or ``make bench-full``."""
