"""Locust scenarios and the benchmark harness (not part of the test suite)."""
