"""Benchmarks (`make bench`): medians and ratios, never in the unit tests."""
