"""Model downloads from the Hugging Face hub into the standard HF cache: progress, cancel,
resume after a restart (see manager.py for the shape)."""
