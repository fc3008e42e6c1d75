"""Who is asking, and what is kept secret: principals (accounts, API keys and their checks come
with the auth work) and secret_box, upstream keys encrypted at rest (AES-256-GCM, key ids,
rotation)."""
