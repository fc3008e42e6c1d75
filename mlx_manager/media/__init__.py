"""Media inputs of requests (images for vision models): fetching, validation, decoding."""
