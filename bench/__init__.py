"""Load and scaling benchmarks: `make bench` (see bench/run.py)."""
