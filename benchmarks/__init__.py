"""Benchmarks: each prints its figures as ratios against a baseline run beside it."""
