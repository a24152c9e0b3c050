"""Side-by-side benchmarks of corral: all of them with ``python -m benchmarks --quick``, one
with ``python -m benchmarks.<name>``."""
