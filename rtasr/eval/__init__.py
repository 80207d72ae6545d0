"""Measuring rtasr, for tests and benchmarks (the server never imports it): the yardstick each
stream is held against, and word error rate scoring."""
