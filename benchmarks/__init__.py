"""Side-by-side benchmarks of corral (run one with ``python -m benchmarks.<name>``)."""
