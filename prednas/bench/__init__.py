"""Benchmarks behind ``prednas bench``: each prints figures and can write JSON."""
