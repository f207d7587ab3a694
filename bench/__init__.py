"""Benchmarks of orchestration against baselines measured in the same run: ``python -m bench``."""
