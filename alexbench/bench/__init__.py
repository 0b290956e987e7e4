"""Benchmarking: the timing loop, statistics, the roofline model and the sweep over cells."""
