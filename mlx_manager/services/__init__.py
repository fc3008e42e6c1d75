"""Services beside text generation that run on the engine thread: embeddings."""
