"""Benchmarks: `python -m benchmarks.<name>` prints a table and one JSON line."""
