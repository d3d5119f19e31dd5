"""Benchmarks run by `make bench`: each module has run(report) and prints `name: value` lines."""
