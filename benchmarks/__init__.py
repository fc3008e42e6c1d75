"""MLX Manager's benchmarks: a small shared library (`benchmarks.lib`) and thin scripts over it."""
