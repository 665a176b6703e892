"""Benchmarks (see BENCHMARKS.md); run them with bench/run."""
