"""What the benchmark scripts share: servers, prompts, machine info, the in-process engine.

The scripts run as files (`python benchmarks/X.py`, from any directory, with or without the
repo root on PYTHONPATH): each puts the repo root first on `sys.path` before importing
`benchmarks.lib`. No module here imports `mlx_manager` at import time, so a script can still
choose where `mlx_manager` comes from (`environment.use_source`, single_stream.py's `--src`).
"""
