"""Benchmarks of a real gpusched daemon (see bench/README.md); never run by the tests."""
