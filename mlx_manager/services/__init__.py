"""Services beside text generation: embeddings and transcription (their asyncio side),
audio decoding."""
